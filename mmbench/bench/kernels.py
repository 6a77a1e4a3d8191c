"""`mmbench bench kernels`: time every provider of every kernel problem, side by side, in one run.

Times: on CUDA `triton.testing.do_bench` (CUDA events, L2 flushed before every repetition); on CPU
`time.perf_counter` around synchronous calls, repeated until `min_time` has passed (at least
`min_reps` times) after warm-up calls that also absorb `torch.compile`'s compilation. Reported:
median and the 20th/80th percentiles (Liger-Kernel's quantiles), bytes the operation must move, the
resulting GB/s and its share of the measured device-copy bandwidth (the practical ceiling for a
memory-bound kernel), GFLOP/s for the loss, and the peak memory of one call (CUDA: the caching
allocator's high-water mark; CPU: the running total of the profiler's per-op allocations, an
op-level peak that cannot see transients inside an op, and blind to `torch.compile`'s buffers, so
not reported for that provider). The JSON result carries machine, versions
and git state, like a run record.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mmbench.bench.kernel_cases import Problem, build_workload

SCHEMA = "mmbench.kernel-bench/1"
COPY_BYTES = 256 * 1024 * 1024


@dataclass
class Measurement:
    op: str
    size: str
    problem: str
    provider: str
    median_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    min_ms: float | None = None
    reps: int = 0
    bytes_moved: int = 0
    gbps: float | None = None
    copy_fraction: float | None = None
    gflops: float | None = None
    peak_memory_bytes: int | None = None
    error: str | None = None
    notes: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    call: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 2,
    min_reps: int = 5,
    min_time: float = 0.5,
    max_reps: int = 200,
) -> list[float]:
    """Milliseconds per call: one sample per repetition."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return [float(t) for t in do_bench(call, warmup=25, rep=100, return_mode="all")]
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - started < min_time and len(times) < max_reps):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1e3)
    return times


def peak_memory(call: Callable[[], object], device: torch.device) -> int:
    """Bytes allocated at the worst moment of one call, above what was allocated before it."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = call()
        synchronize(device)
        del result
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        result = call()
    del result
    events = sorted(profiler.events(), key=lambda event: event.time_range.start)
    running = itertools.accumulate(event.self_cpu_memory_usage for event in events)
    return int(max(running, default=0))


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side prints two trace lines per session straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def copy_bandwidth(device: torch.device) -> float:
    """GB/s of a large device-to-device copy (read + write), the measured ceiling for streaming kernels."""
    source = torch.ones(COPY_BYTES // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    times = time_call(lambda: target.copy_(source), device, min_time=0.3)
    return 2 * COPY_BYTES / (statistics.median(times) * 1e-3) / 1e9


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(
    problem: Problem,
    device: torch.device,
    providers: tuple[str, ...],
    bandwidth: float,
    on_done: Callable[[Measurement], None] | None = None,
    **timing: Any,
) -> list[Measurement]:
    """Every provider on one problem; a provider that fails is reported with its error, not dropped."""
    workload = build_workload(problem, device, providers)
    results = []
    for provider in providers:
        row = Measurement(
            problem.op,
            problem.size,
            problem.name,
            provider,
            bytes_moved=workload.bytes_moved,
            params=dict(problem.params),
            info=dict(workload.info),
        )
        call = workload.calls.get(provider)
        if call is None:
            row.error = "not available on this device"
        else:
            try:
                times = time_call(call, device, **timing)
                if device.type == "cpu" and provider == "compile":
                    # Inductor's C++ wrapper allocates its buffers outside the aten ops the profiler records.
                    row.notes = "peak memory not measurable on CPU for torch.compile"
                else:
                    row.peak_memory_bytes = peak_memory(call, device)
            except Exception as exc:  # a provider that cannot run (e.g. compile without a C++ compiler)
                row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            else:
                row.median_ms = statistics.median(times)
                row.p20_ms, row.p80_ms = _percentile(times, 0.2), _percentile(times, 0.8)
                row.min_ms, row.reps = min(times), len(times)
                row.gbps = workload.bytes_moved / (row.median_ms * 1e-3) / 1e9
                row.copy_fraction = row.gbps / bandwidth if bandwidth else None
                if workload.flops:
                    row.gflops = workload.flops / (row.median_ms * 1e-3) / 1e9
        results.append(row)
        if on_done is not None:
            on_done(row)
    return results


def _lookup(
    rows: list[Measurement], op: str, size: str, provider: str, problem: str | None = None
) -> Measurement | None:
    for row in rows:
        if (row.op, row.size, row.provider) == (op, size, provider) and problem in (None, row.problem):
            if row.median_ms is not None:
                return row
    return None


def evaluate_targets(rows: list[Measurement], device: torch.device) -> list[dict[str, Any]]:
    """The issue's targets, computed from this run; a target whose rows are missing is not reported."""
    targets = []
    if device.type == "cpu":
        for op in ("sample", "gather", "infonce"):
            naive, reference = _lookup(rows, op, "default", "naive"), _lookup(rows, op, "default", "reference")
            if naive and reference:
                speedup = naive.median_ms / reference.median_ms  # type: ignore[operator]
                targets.append(
                    {
                        "name": f"{op}: reference vs naive at default sizes (CPU)",
                        "value": speedup,
                        "threshold": 10.0,
                        "unit": "x",
                        "met": speedup >= 10.0,
                    }
                )
        return targets
    for row in rows:
        if row.op == "sample" and row.provider == "triton" and row.copy_fraction is not None:
            targets.append(
                {
                    "name": f"sample {row.problem}: triton share of copy bandwidth",
                    "value": row.copy_fraction,
                    "threshold": 0.6,
                    "unit": "",
                    "met": row.copy_fraction >= 0.6,
                }
            )
    fused = _lookup(rows, "infonce", "paper", "triton", "N8192 d256")
    eager = _lookup(rows, "infonce", "paper", "reference", "N8192 d256")
    if fused and eager:
        speedup = eager.median_ms / fused.median_ms  # type: ignore[operator]
        targets.append(
            {
                "name": "infonce N=8192: triton speed-up over eager reference",
                "value": speedup,
                "threshold": 3.0,
                "unit": "x",
                "met": speedup >= 3.0,
            }
        )
        if fused.peak_memory_bytes and eager.peak_memory_bytes:
            ratio = eager.peak_memory_bytes / fused.peak_memory_bytes
            targets.append(
                {
                    "name": "infonce N=8192: eager / triton peak memory",
                    "value": ratio,
                    "threshold": 5.0,
                    "unit": "x",
                    "met": ratio >= 5.0,
                }
            )
    return targets


def result_document(rows: list[Measurement], device: torch.device, bandwidth: float, command: str) -> dict[str, Any]:
    from mmbench.records import isoformat, utc_now
    from mmbench.records.environment import collect_environment, git_state

    return {
        "schema": SCHEMA,
        "created": isoformat(utc_now()),
        "command": command,
        "device": str(device),
        "timing": "triton.testing.do_bench (L2 flushed)" if device.type == "cuda" else "perf_counter, synchronous",
        "peak_memory": (
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "profiler per-op allocations (op-level peak)"
        ),
        "copy_bandwidth_gbps": bandwidth,
        "env": collect_environment(str(device) if device.type == "cuda" else "cpu"),
        "git": git_state(),
        "results": [asdict(row) for row in rows],
        "targets": evaluate_targets(rows, device),
    }
