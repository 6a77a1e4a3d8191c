"""Custom Triton kernels with their PyTorch references (installed as `mmbench.kernels`, never as
top-level `kernels`, which would shadow the Hugging Face package). None ship yet.
"""
