"""The step loop: one update per step until `iterations`, a log entry every `log_every` steps, validation and
`last.ckpt` every `val_every`, and a clean stop between steps on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from mmbench.engine.losses import TrainingLoss
from mmbench.engine.resume import TrainingCheckpoints, TrainState
from mmbench.engine.train_log import TrainLog
from mmbench.engine.update import UpdateRule
from mmbench.progress import TrainingProgress
from mmbench.runtime.distributed import DistContext
from mmbench.runtime.signals import Terminated


class Interruption:
    """While entered, SIGINT (Ctrl-C) and SIGTERM only set `requested` (and `signum`); the loop stops after the
    step in progress and the trainer saves `last.ckpt`."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for signum in self.SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_interrupt)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signum = signum

    def stop(self, step: int) -> KeyboardInterrupt:
        """The exception that ends the command once `last.ckpt` is saved: one line with the resume hint."""
        hint = "continue with the same command and --resume"
        if self.signum == signal.SIGTERM:
            return Terminated(f"terminated (SIGTERM) at step {step}; {hint}")
        return KeyboardInterrupt(f"interrupted at step {step}; {hint}")


def run_steps(
    state: TrainState,
    *,
    name: str,
    settings: Mapping[str, Any],
    update: UpdateRule,
    loss: TrainingLoss,
    batches: Iterator[dict[str, Any]],
    validate: Callable[[TrainState], None],
    checkpoints: TrainingCheckpoints,
    log: TrainLog,
    dist: DistContext,
    interruption: Interruption,
) -> TrainState:
    """Train from `state.step` to `iterations` (or until interrupted); `state` is updated in place and returned.

    `batches` yields the micro-batches of every step from `state.step` on, `accumulate` per step."""
    total = settings["iterations"]
    window_start, window_steps = time.perf_counter(), 0
    best = (state.best_score, state.best_step) if state.best_score is not None and state.best_step is not None else None
    with TrainingProgress(name, total, start_step=state.step, best=best, enabled=dist.is_main) as progress:
        while state.step < total and not interruption.requested:
            step_batches = [next(batches) for _ in range(settings["accumulate"])]
            terms = update.step(state.step, step_batches, loss)
            state.step += 1
            window_steps += 1
            if state.step % settings["log_every"] == 0 or state.step == total:
                elapsed = time.perf_counter() - window_start
                rate = window_steps / max(elapsed, 1e-9)
                entry = {
                    "event": "train",
                    "step": state.step,
                    "lr": update.main.scheduler.get_last_lr()[0],
                    "steps_per_s": round(rate, 3),
                    **{k: round(v, 6) for k, v in terms.items()},
                }
                log.write(entry)
                window_start, window_steps = time.perf_counter(), 0
            progress.step(state.step, terms["loss"])
            if state.step % settings["val_every"] == 0 or state.step == total:
                with progress.paused():
                    validate(state)
                    checkpoints.save("last.ckpt", state)
                score = state.curve[-1]["score"] if state.curve else None
                progress.validated(state.step, score, state.best_score, state.best_step)
            _inject_fault(state.step)
    return state


def _inject_fault(step: int) -> None:
    """Test hooks (environment variables, never set in normal use): a real SIGKILL, SIGINT or SIGTERM of this
    process right after `step`, to test resuming and signal handling end to end; or, with
    MMBENCH_TEST_HOLD_AT_STEP and MMBENCH_TEST_HOLD_FILE, create FILE.held and wait until FILE exists (a second
    process can then be started while this one holds its run folder: tests/test_faults_runs.py)."""
    for variable, signum in (
        ("MMBENCH_TEST_KILL_AT_STEP", signal.SIGKILL),
        ("MMBENCH_TEST_INTERRUPT_AT_STEP", signal.SIGINT),
        ("MMBENCH_TEST_TERMINATE_AT_STEP", signal.SIGTERM),
    ):
        if os.environ.get(variable) == str(step):
            os.kill(os.getpid(), signum)
    hold = os.environ.get("MMBENCH_TEST_HOLD_FILE")
    if hold and os.environ.get("MMBENCH_TEST_HOLD_AT_STEP") == str(step):
        Path(f"{hold}.held").touch()
        for _ in range(6000):  # at most 10 minutes
            if Path(hold).exists():
                break
            time.sleep(0.1)
