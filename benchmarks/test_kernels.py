"""PSA kernels under pytest-benchmark: every problem of `mmbench.bench.kernel_cases` x every provider.

Run: `pytest benchmarks/test_kernels.py --benchmark-only --benchmark-group-by=param:problem`
(`-k default` for the STARS CPU sizes only; paper-scale naive losses take seconds per call on CPU).
Same problems, inputs and references as `mmbench bench kernels`, which adds copy-bandwidth ratios,
peak memory and CUDA timing with `triton.testing.do_bench`; this file is for regressions tracked
with pytest-benchmark's storage and comparison (`--benchmark-autosave`, `--benchmark-compare`).
Each case reports `bytes_moved`, and `gbps_at_min` in `extra_info`.
"""

from __future__ import annotations

import pytest
import torch

from mmbench.bench.kernel_cases import PROBLEMS, available_providers, build_workload
from mmbench.bench.kernels import synchronize

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = [
    pytest.param(problem, provider, id=f"{problem.size}-{problem.op}-{problem.name.replace(' ', '_')}-{provider}")
    for problem in PROBLEMS
    for provider in available_providers(DEVICE)
]


@pytest.mark.parametrize(("problem", "provider"), CASES)
def test_kernel(benchmark, problem, provider):
    workload = build_workload(problem, DEVICE, (provider,))
    call = workload.calls[provider]

    def synchronous() -> object:
        result = call()
        synchronize(DEVICE)
        return result

    synchronous()  # warm-up: absorbs torch.compile and Triton compilation
    benchmark.group = f"{problem.op} {problem.name}"
    benchmark.extra_info.update(
        {
            "problem": problem.name,
            "size": problem.size,
            "provider": provider,
            "device": str(DEVICE),
            "bytes_moved": workload.bytes_moved,
            **workload.info,
        }
    )
    benchmark.pedantic(synchronous, rounds=5 if problem.size == "paper" else 20, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gbps_at_min"] = workload.bytes_moved / benchmark.stats.stats.min / 1e9
