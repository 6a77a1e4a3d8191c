"""Evaluation: the sliding-window engine that scores a model under a protocol, confusion-matrix metrics,
window tiling and protocol loading. Knows nothing about training.
"""
