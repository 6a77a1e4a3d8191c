"""`mmbench bench step`: where one training step of a method spends its time, its peak memory and threads.

The step is the engine's (mmbench/bench/step_setup.py builds it with `Trainer._build`), taken as
`run_steps` takes it (mmbench/engine/loop.py): `accumulate` micro-batches from the engine's loader, then
`update.step(...)`. Nothing in the method or the engine is changed; the parts are timed from outside:

- data: `next(batches)`, the engine's DataLoader and the copy to the device (with `num_workers` > 0 only the
  wait for a batch the workers prepared).
- forward by module: forward pre/post hooks on every module of the model, each labelled by the model's
  direct child it belongs to (`encoders`, `decoder`, `translators`, ...); only the outermost hooked call is
  timed, so a child's time includes what it calls and nothing is counted twice. Hooking every descendant
  (not only the direct children) is what makes this robust: containers (`ModuleDict`, `ModuleList`) are
  never called themselves, and some methods call a child's submodules directly.
- loss & glue: the rest of the method's `training_loss` (or `adversary_loss`) call, timed by hooks on the
  engine's `LossModule`: the loss terms and the parent's own code between its children (sampling,
  concatenation, upsampling).
- backward: `Tensor.backward` (the engine's only call into autograd), wrapped for the duration.
- optimiser: `optimizer.step` of each optimiser, by the optimiser's step pre/post hooks.
- other: the rest of `update.step` (zeroing gradients, the NaN check, clipping, the scheduler, the
  adversarial update's statistics copy). By construction parts are disjoint intervals inside the step, so
  data + forward + loss & glue + backward + optimiser + other = total exactly, and other >= 0.

Backward by module needs the autograd graph, which hooks cannot see robustly; one extra step runs under
`torch.profiler` with a `record_function` label per outermost module call, and each backward node is
charged to the label of the forward op that created it (the autograd sequence number links them). Its
shares of the profiled step's backward time are applied to the measured backward time (the profiled step
itself is not counted in the timings). On CUDA the shares are of the kernels' device time under each node.

Each part has wall time (`time.perf_counter`) and process CPU time (`time.process_time`, all threads of
this process; DataLoader worker processes are not in it). On CUDA every boundary synchronises first.
Peak memory: on CPU the resident set's high-water mark (VmHWM of /proc/self/status, reset per method
through /proc/self/clear_refs; where that is not possible, `ru_maxrss` since the process started, and the
result says so); on CUDA `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmbench.bench.step_setup import PROTOCOL, StepParts, build_step

SCHEMA = "mmbench.step-bench/1"
PARTS = ("data", "forward", "loss", "backward", "optimiser", "other")
LOSS_LABEL = "loss & glue"
ACCUMULATE_LABEL = "gradient accumulation"
RECORD_PREFIX = "mmbench.module::"


@dataclass
class StepProfile:
    """One method's profile: means over the timed steps, seconds (wall and process CPU)."""

    method: str
    version: str
    device: str
    batch_size: int
    size: int
    accumulate: int
    num_workers: int
    steps: int
    warmup: int
    threads: int
    interop_threads: int
    wall: dict[str, float]  # part -> mean seconds per step; "total" too
    cpu: dict[str, float]
    forward_modules: dict[str, float]  # direct child -> mean wall seconds per step, largest first
    forward_modules_cpu: dict[str, float]
    backward_modules: dict[str, float] | None  # direct child -> wall seconds (profiler shares x backward)
    backward_shares: dict[str, float] | None
    backward_note: str
    step_wall: list[float]  # per timed step
    step_cpu: list[float]
    peak_memory_bytes: int | None
    baseline_memory_bytes: int | None
    peak_memory_source: str
    load_average: tuple[float, float, float]
    parameters: int
    children: list[str] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        return self.wall["total"]

    @property
    def steps_per_second(self) -> float:
        return 1.0 / self.wall["total"] if self.wall["total"] > 0 else float("inf")


class Clock:
    """Wall and process-CPU readings; on CUDA the device is synchronised first so work lands in its part."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def now(self) -> tuple[float, float]:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()


class Tally:
    """Per-step sums of named intervals (wall, cpu)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def add(self, name: str, start: tuple[float, float], end: tuple[float, float]) -> None:
        self.wall[name] += end[0] - start[0]
        self.cpu[name] += end[1] - start[1]


class StepInstruments:
    """The hooks and wrappers that time a step's parts; installed for the lifetime of a `with` block."""

    def __init__(self, parts: StepParts, clock: Clock) -> None:
        self.parts, self.clock = parts, clock
        self.tally = Tally()
        self.modules = Tally()
        self.profiling = False
        self._handles: list[Any] = []
        self._depth = 0  # nesting of hooked module calls inside the current loss call
        self._outer_start: tuple[float, float] | None = None
        self._loss_start: tuple[float, float] | None = None
        self._optimiser_start: tuple[float, float] | None = None
        self._record: Any = None
        self.labels = {id(module): name.split(".")[0] for name, module in parts.model.named_modules() if name}
        self.children = [name for name, _ in parts.model.named_children()]

    def reset(self) -> None:
        self.tally, self.modules = Tally(), Tally()

    # -- forward: outermost module calls, by direct child ----------------------------------------------------
    def _module_pre(self, module: torch.nn.Module, args: Any) -> None:
        if self._loss_start is None:
            return
        if self._depth == 0:
            self._outer_start = self.clock.now()
            if self.profiling:
                self._record = torch.autograd.profiler.record_function(RECORD_PREFIX + self.labels[id(module)])
                self._record.__enter__()
        self._depth += 1

    def _module_post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._loss_start is None or self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0 and self._outer_start is not None:
            if self._record is not None:
                self._record.__exit__(None, None, None)
                self._record = None
            self.modules.add(self.labels[id(module)], self._outer_start, self.clock.now())
            self._outer_start = None

    # -- the loss call: forward + loss terms ------------------------------------------------------------------
    def _loss_pre(self, module: torch.nn.Module, args: Any) -> None:
        self._depth, self._outer_start = 0, None
        self._loss_start = self.clock.now()

    def _loss_post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._loss_start is not None:
            self.tally.add("forward+loss", self._loss_start, self.clock.now())
        self._loss_start = None

    # -- optimiser ----------------------------------------------------------------------------------------------
    def _optimiser_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._optimiser_start = self.clock.now()

    def _optimiser_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._optimiser_start is not None:
            self.tally.add("optimiser", self._optimiser_start, self.clock.now())
        self._optimiser_start = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StepInstruments]:
        model = self.parts.model
        for name, module in model.named_modules():
            if not name:
                continue
            self._handles.append(module.register_forward_pre_hook(self._module_pre))
            self._handles.append(module.register_forward_hook(self._module_post, always_call=True))
        loss_module = self.parts.loss.module
        self._handles.append(loss_module.register_forward_pre_hook(self._loss_pre))
        self._handles.append(loss_module.register_forward_hook(self._loss_post, always_call=True))
        for optimisation in self._optimisations():
            self._handles.append(optimisation.optimizer.register_step_pre_hook(self._optimiser_pre))
            self._handles.append(optimisation.optimizer.register_step_post_hook(self._optimiser_post))
        original = torch.Tensor.backward
        clock = self.clock

        def timed_backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            start = clock.now()
            try:
                original(tensor, *args, **kwargs)
            finally:
                self.tally.add("backward", start, clock.now())

        torch.Tensor.backward = timed_backward  # type: ignore[method-assign]
        try:
            yield self
        finally:
            torch.Tensor.backward = original  # type: ignore[method-assign]
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def _optimisations(self) -> list[Any]:
        update = self.parts.update
        return [opt for opt in (getattr(update, "main", None), getattr(update, "adversary", None)) if opt is not None]


def _take_step(parts: StepParts, batches: Iterator[dict[str, Any]], step: int, tally: Tally, clock: Clock) -> None:
    """One step as `run_steps` takes it (mmbench/engine/loop.py), its data and update timed."""
    start = clock.now()
    step_batches = [next(batches) for _ in range(parts.settings["accumulate"])]
    loaded = clock.now()
    parts.update.step(step, step_batches, parts.loss)
    end = clock.now()
    tally.add("data", start, loaded)
    tally.add("total", start, end)


def _rss_reset() -> bool:
    """Reset this process's resident-set high-water mark (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _vmhwm() is not None


def _vmhwm() -> int | None:
    return _status_bytes("VmHWM")


def _vmrss() -> int | None:
    return _status_bytes("VmRSS")


def _status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (kB there) in bytes; None where the file or field is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """The step's memory high-water mark on the device profiled, and what it was measured with."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.source = ""
        self.baseline: int | None = None

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            self.source = "torch.cuda.max_memory_allocated (reset per method)"
        elif _rss_reset():
            self.baseline = _vmrss()
            self.source = "resident set high-water mark (VmHWM, reset per method)"
        else:
            self.baseline = _vmrss()
            self.source = "ru_maxrss: resident set high-water mark since the process started (could not reset)"

    def peak(self) -> int | None:
        if self.cuda:
            return int(torch.cuda.max_memory_allocated())
        if self.source.startswith("resident set"):
            return _vmhwm()
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def backward_by_module(events: Any, children: list[str], device_time: bool = False) -> dict[str, float]:
    """Microseconds of each top-level autograd node, charged to the label of the forward op that created it.

    Forward ops carry the autograd sequence number of the node they recorded; the backward's
    `evaluate_function` events carry the same number. Nodes of ops outside every labelled module call go to
    `loss & glue`, gradient accumulation into the parameters (no sequence number) to its own entry.
    `device_time`: charge the CUDA kernel time under each node (`device_time_total`) instead of its CPU span."""
    label_of_sequence: dict[int, str] = {}
    backward: list[Any] = []
    for event in events:
        if event.name.startswith("autograd::engine::evaluate_function"):
            parent = event.cpu_parent
            if parent is None or not parent.name.startswith("autograd::engine::evaluate_function"):
                backward.append(event)
            continue
        if event.sequence_nr < 0 or event.sequence_nr in label_of_sequence:
            continue
        label, ancestor = LOSS_LABEL, event.cpu_parent
        while ancestor is not None:
            if ancestor.name.startswith(RECORD_PREFIX):
                label = ancestor.name[len(RECORD_PREFIX) :]
            ancestor = ancestor.cpu_parent
        label_of_sequence[event.sequence_nr] = label
    totals: dict[str, float] = defaultdict(float)
    for event in backward:
        if event.sequence_nr < 0:
            label = ACCUMULATE_LABEL
        else:
            label = label_of_sequence.get(event.sequence_nr, LOSS_LABEL)
        totals[label] += event.device_time_total if device_time else event.time_range.elapsed_us()
    return dict(totals)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints a line to file descriptor 2 when it starts and stops; hide those two."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profiled_step(
    parts: StepParts, instruments: StepInstruments, batches: Iterator[dict[str, Any]], step: int, clock: Clock
) -> dict[str, float]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if clock.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = torch.profiler.profile(activities=activities)
    instruments.profiling = True
    try:
        with _quiet_stderr():
            profiler.__enter__()
        try:
            _take_step(parts, batches, step, Tally(), clock)
        finally:
            with _quiet_stderr():
                profiler.__exit__(None, None, None)
    finally:
        instruments.profiling = False
    return backward_by_module(profiler.events(), instruments.children, device_time=clock.cuda)


def _mean(values: dict[str, float], count: int) -> dict[str, float]:
    return {name: value / count for name, value in values.items()}


def profile_parts(parts: StepParts, *, steps: int, warmup: int, batch_size: int, size: int) -> StepProfile:
    """Warm up, time `steps` steps part by part, then one profiled step for backward by module."""
    clock = Clock(parts.device)
    instruments = StepInstruments(parts, clock)
    batches = parts.batches(warmup + steps + 1)
    memory = PeakMemory(parts.device)
    step_wall: list[float] = []
    step_cpu: list[float] = []
    with instruments.installed():
        for step in range(warmup):
            _take_step(parts, batches, step, Tally(), clock)
        instruments.reset()
        memory.start()
        for step in range(warmup, warmup + steps):
            before_wall, before_cpu = instruments.tally.wall["total"], instruments.tally.cpu["total"]
            _take_step(parts, batches, step, instruments.tally, clock)
            step_wall.append(instruments.tally.wall["total"] - before_wall)
            step_cpu.append(instruments.tally.cpu["total"] - before_cpu)
        peak = memory.peak()
        timed, timed_modules = instruments.tally, instruments.modules
        instruments.reset()  # the profiled step's own times are not part of the means
        try:
            backward_us = _profiled_step(parts, instruments, batches, warmup + steps, clock)
            note = "shares of autograd node time in one torch.profiler step, applied to the measured backward"
        except Exception as exc:  # the breakdown is a detail: report why it is missing, keep the timings
            backward_us, note = {}, f"not measured: torch.profiler failed ({type(exc).__name__}: {exc})"
    wall = _split(timed.wall, timed_modules.wall, steps)
    cpu = _split(timed.cpu, timed_modules.cpu, steps)
    forward_modules = _ordered(_mean(timed_modules.wall, steps))
    forward_modules_cpu = _ordered(_mean(timed_modules.cpu, steps))
    backward_shares = backward_modules = None
    total_us = sum(backward_us.values())
    if total_us > 0:
        backward_shares = _ordered({name: value / total_us for name, value in backward_us.items()})
        backward_modules = {name: share * wall["backward"] for name, share in backward_shares.items()}
    return StepProfile(
        method=parts.name,
        version=parts.version,
        device=parts.device,
        batch_size=batch_size,
        size=size,
        accumulate=int(parts.settings["accumulate"]),
        num_workers=int(parts.settings["num_workers"]),
        steps=steps,
        warmup=warmup,
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        wall=wall,
        cpu=cpu,
        forward_modules=forward_modules,
        forward_modules_cpu=forward_modules_cpu,
        backward_modules=backward_modules,
        backward_shares=backward_shares,
        backward_note=note,
        step_wall=[round(value, 6) for value in step_wall],
        step_cpu=[round(value, 6) for value in step_cpu],
        peak_memory_bytes=peak,
        baseline_memory_bytes=memory.baseline,
        peak_memory_source=memory.source,
        load_average=os.getloadavg(),
        parameters=sum(p.numel() for p in parts.model.parameters() if p.requires_grad),
        children=instruments.children,
    )


def _split(tally: dict[str, float], modules: dict[str, float], steps: int) -> dict[str, float]:
    """Mean seconds per step of each part; `other` is what the named parts leave of the total."""
    forward = sum(modules.values())
    parts = {
        "data": tally["data"],
        "forward": forward,
        "loss": tally["forward+loss"] - forward,
        "backward": tally["backward"],
        "optimiser": tally["optimiser"],
    }
    parts["other"] = tally["total"] - sum(parts.values())
    parts["total"] = tally["total"]
    return _mean(parts, steps)


def _ordered(values: dict[str, float]) -> dict[str, float]:
    return dict(sorted(values.items(), key=lambda item: -item[1]))


def profile_method(
    method: str,
    *,
    store: tuple[str, Path],
    batch_size: int = 8,
    size: int = 96,
    steps: int = 5,
    warmup: int = 2,
    device: str = "cpu",
) -> StepProfile:
    """Build `method` as `mmbench run` would (mmbench/bench/step_setup.py) and profile its step."""
    with tempfile.TemporaryDirectory(prefix="mmbench-step-") as folder:
        torch.manual_seed(0)
        parts = build_step(method, store=store, batch_size=batch_size, size=size, device=device, run_dir=Path(folder))
        return profile_parts(parts, steps=steps, warmup=warmup, batch_size=batch_size, size=size)


def check_counts(*, batch_size: int, size: int, steps: int, warmup: int, threads: int | None) -> None:
    """One-line errors for counts that cannot mean what they say, before anything is built."""
    from mmbench.errors import UserError

    for flag, value, least in (
        ("--batch-size", batch_size, 1),
        ("--size", size, 1),
        ("--steps", steps, 1),
        ("--warmup", warmup, 0),
    ):
        if value < least:
            raise UserError(f"{flag} {value}: must be at least {least}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads}: must be at least 1 (leave it out for torch's default)")


def result_document(profiles: list[StepProfile], *, device: str, command: str, store: Path) -> dict[str, Any]:
    """The JSON result: every profile, with machine, versions and git state (like `mmbench bench kernels`)."""
    from mmbench.records import isoformat, utc_now
    from mmbench.records.environment import collect_environment, git_state

    return {
        "schema": SCHEMA,
        "created": isoformat(utc_now()),
        "command": command,
        "device": device,
        "protocol": PROTOCOL,
        "store": str(store),
        "timing": "means over the timed steps; wall: time.perf_counter, cpu: time.process_time (this process, all "
        "threads)" + ("; CUDA synchronised at every part boundary" if device.startswith("cuda") else ""),
        "parts": list(PARTS),
        "load_average": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "env": collect_environment(device if device.startswith("cuda") else "cpu"),
        "git": git_state(),
        "results": [
            {**asdict(profile), "seconds_per_step": profile.seconds_per_step, "steps_per_s": profile.steps_per_second}
            for profile in profiles
        ],
        "median_step_wall": {p.method: statistics.median(p.step_wall) for p in profiles},
    }
