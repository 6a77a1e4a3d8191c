"""Custom Triton kernels with their PyTorch references (installed as `mmbench.kernels`, never as
top-level `kernels`, which would shadow the Hugging Face package).

- `psa`: PSA class-balanced pixel sampling, pixel gathering and the cross-modal InfoNCE loss, with a
  backend switch; only the PyTorch references (`sampling`, `infonce`) exist so far, no Triton kernel.

Kept import-light: nothing is imported here, so `import mmbench.kernels` costs nothing.
"""
