"""`mmbench bench`: benchmark harnesses that time the core floor (the PSA kernels in `mmbench.kernels`)
against their PyTorch references.
"""
