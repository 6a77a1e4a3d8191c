"""Custom Triton kernels with their PyTorch references (installed as `mmbench.kernels`, never as
top-level `kernels`, which would shadow the Hugging Face package).

- `psa`: the dispatcher STARS calls (class-balanced sampling, pixel gather, cross-modal InfoNCE),
  `backend="auto" | "torch" | "triton"`.
- references: `sampling` (sampler specification, fast reference, naive loop), `infonce`;
  baselines for benchmarks: `naive`.
- Triton: `sampling_triton`, `gather_triton`, `infonce_triton`, `confusion_triton` (the evaluation
  engine's fused argmax + confusion update); `triton_runtime` decides where they may run.
- Their benchmark cases (problems and providers shared by `mmbench bench kernels`, pytest-benchmark and tests)
  live in the harness, `mmbench/bench/kernel_cases.py`: the core floor imports nothing above it.

Kept import-light: nothing is imported here, so `import mmbench.kernels` costs nothing, and
triton is imported only when a Triton implementation is first chosen.
"""
