"""The training engine: the step loop, optimisation (AMP, accumulation, clipping), the adversarial update,
checkpoints and resume, validation-based selection. Runs `SegmentationMethod` plugins for `mmbench run`.
"""
