"""Progress of long work, on stderr so that stdout stays clean for results.

Three modes, chosen when a piece of work starts:

- stderr is a terminal: a rich progress bar (training's shows step, loss, steps/s, ETA and the best
  validation score so far: `TrainingProgress`);
- stderr is not a terminal (nohup, CI, a SLURM log, a pipe): plain lines, flushed at once. Training prints
  one every `MMBENCH_PROGRESS_STEPS` steps (default 50) or `MMBENCH_PROGRESS_SECONDS` seconds (default 30),
  whichever comes first, and at the last step; other long work (store generation and checks, evaluation,
  benchmarks) one every `MMBENCH_PROGRESS_SECONDS` seconds and one when it ends. 0 turns that trigger off;
- quiet (`--quiet`/`-q`, which sets `MMBENCH_QUIET=1` for the command and the processes it starts: sweep
  jobs, DDP workers; mmbench/cli/main.py): no bars and no lines. Errors still print.

One-off lines (a validation's score, an evaluated scenario's mIoU) go through `note`, above a live bar on a
terminal. No progress line starts with "mmbench", so none reads as a command's error line. Under DDP callers
pass `enabled=dist.is_main`: only rank 0 reports.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmbench.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

QUIET_VARIABLE = "MMBENCH_QUIET"
STEPS_VARIABLE = "MMBENCH_PROGRESS_STEPS"
SECONDS_VARIABLE = "MMBENCH_PROGRESS_SECONDS"
DEFAULT_STEPS = 50
DEFAULT_SECONDS = 30.0
WIDE_TERMINAL = 100  # columns from which the training bar draws a bar beside its count and fields
BAR_REFRESH_SECONDS = 1.0  # how often a terminal bar's loss, rate and ETA change (its count moves every step)

Clock = Callable[[], float]


# -- settings ------------------------------------------------------------------------------------------


def quiet() -> bool:
    """True under `--quiet` (or `MMBENCH_QUIET=1` set by hand)."""
    return os.environ.get(QUIET_VARIABLE, "").strip() not in ("", "0")


@contextlib.contextmanager
def quieted(on: bool) -> Iterator[None]:
    """While entered with `on`, `quiet()` is true here and in every process started from here (the variable
    is inherited); the previous value is restored after. `on=False` leaves the environment as it is."""
    if not on:
        yield
        return
    previous = os.environ.get(QUIET_VARIABLE)
    os.environ[QUIET_VARIABLE] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(QUIET_VARIABLE, None)
        else:
            os.environ[QUIET_VARIABLE] = previous


@dataclass(frozen=True)
class Cadence:
    """When a plain line is due: after `steps` steps or `seconds` seconds since the last one (0: never)."""

    steps: int = DEFAULT_STEPS
    seconds: float = DEFAULT_SECONDS

    def due(self, steps: int, seconds: float) -> bool:
        return bool(self.steps and steps >= self.steps) or bool(self.seconds and seconds >= self.seconds)


def cadence() -> Cadence:
    """The plain-line cadence from the environment; a malformed value is the user's one-line error."""
    return Cadence(
        steps=int(_number(STEPS_VARIABLE, DEFAULT_STEPS, whole=True)),
        seconds=_number(SECONDS_VARIABLE, DEFAULT_SECONDS, whole=False),
    )


def check_environment() -> None:
    """Refuse malformed progress settings before a command starts its work (mmbench/cli/main.py)."""
    cadence()


def _number(variable: str, default: float, *, whole: bool) -> float:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = -1
    if value < 0 or not math.isfinite(value):
        kind = "a whole number of steps" if whole else "a number of seconds"
        raise ConfigError(
            f"{variable}={text!r} must be {kind} >= 0 (0 turns that trigger off); unset it for the default "
            f"{default:g} or give e.g. {variable}={default:g}"
        )
    return float(value)


# -- output --------------------------------------------------------------------------------------------


def say(line: str) -> None:
    """One plain progress line on stderr, flushed now (a log read while the job runs shows it)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def note(line: str, *, enabled: bool = True, console: Console | None = None) -> None:
    """A one-off progress line (a validation, an evaluated scenario): above the bar on a terminal, a plain line
    otherwise, nothing when quiet or not `enabled`."""
    if not enabled or quiet():
        return
    console = console or _stderr()
    if console.is_terminal:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        say(line)


def duration(seconds: float) -> str:
    """Compact duration for progress lines: 0.4s, 42s, 8m40s, 2h05m."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def percent(fraction: float | None) -> str:
    """A score or mIoU stored as a fraction (the records' scale), shown in percent."""
    return "n/a" if fraction is None or not math.isfinite(fraction) else f"{100 * fraction:.1f}%"


def _stderr() -> Console:
    from mmbench.console import stderr

    return stderr()


def _mode(enabled: bool, console: Console) -> str | None:
    """ "bar", "lines" or None (nothing to show)."""
    if not enabled or quiet():
        return None
    return "bar" if console.is_terminal else "lines"


# -- generic bars --------------------------------------------------------------------------------------


def bar_columns() -> tuple:
    """The columns every mmbench bar shows: description, bar, done/total, elapsed, time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class _Lines:
    """The plain-line form of a bar: a line when `cadence.seconds` have passed since the last, and one at the
    end when there was work (a store scan skipped as already done says nothing) and it ended normally (an
    error's line stays the last)."""

    def __init__(self, description: str, total: int | None, clock: Clock, every: Cadence) -> None:
        self.base, self.description, self.total = description, description, total
        self.clock, self.every = clock, every
        self.started = self.last_time = clock()
        self.completed = self.last_completed = 0
        self.advanced = False

    def advance_to(self, completed: int, total: int | None = None, description: str | None = None) -> None:
        self.completed, self.advanced = completed, True
        self.total = total if total is not None else self.total
        self.description = description if description is not None else self.description
        now = self.clock()
        if self.every.seconds and now - self.last_time >= self.every.seconds:
            rate = (completed - self.last_completed) / max(now - self.last_time, 1e-9)
            line = f"{self._head()}: {self._count()}"
            if rate > 0:
                line += f" {rate:.2f}/s"
                if self.total:
                    line += f" eta {duration((self.total - completed) / rate)}"
            say(line)
            self.last_time, self.last_completed = now, completed

    def finish(self) -> None:
        if self.advanced:
            say(f"{self.base}: {self._count()} done in {duration(self.clock() - self.started)}")

    def _head(self) -> str:
        return self.base if self.description == self.base else f"{self.base} ({self.description})"

    def _count(self) -> str:
        return f"{self.completed}/{self.total}" if self.total else f"{self.completed}"


@contextlib.contextmanager
def progress_bar(
    description: str,
    total: int | None,
    *,
    enabled: bool = True,
    console: Console | None = None,
    clock: Clock = time.monotonic,
) -> Iterator[Callable[..., None]]:
    """Yields `advance_to(completed, total=None, description=None)`: a rich bar with rate and time left on a
    terminal, plain lines otherwise (module docstring), nothing when quiet or not `enabled`."""
    console = console or _stderr()
    mode = _mode(enabled, console)
    if mode == "lines":
        lines = _Lines(description, total, clock, cadence())
        yield lines.advance_to
        lines.finish()
        return
    from rich.progress import Progress

    with Progress(*bar_columns(), console=console, transient=False, disable=mode is None) as progress:
        task = progress.add_task(description, total=total)

        def advance_to(completed: int, total: int | None = None, description: str | None = None) -> None:
            changes = {"total": total, "description": description}
            progress.update(task, completed=completed, **{k: v for k, v in changes.items() if v is not None})

        yield advance_to


# -- training ------------------------------------------------------------------------------------------


class TrainingProgress:
    """Progress of the step loop (mmbench/engine/loop.py): `step` after every update, `paused` around work
    that is not a training step (validation, checkpoints: left out of steps/s and the ETA), `validated` after
    each validation. Loss is the mean over the steps since the last line (or bar refresh), steps/s the rate
    over the same steps, ETA the remaining steps at that rate."""

    def __init__(
        self,
        name: str,
        total: int,
        *,
        start_step: int = 0,
        best: tuple[float, int] | None = None,
        enabled: bool = True,
        console: Console | None = None,
        clock: Clock = time.monotonic,
        every: Cadence | None = None,
    ) -> None:
        self.name, self.total, self.start_step, self.best = name, total, start_step, best
        self.console = console or _stderr()
        self.clock = clock
        self.mode = _mode(enabled, self.console)
        self.every = every or (cadence() if self.mode == "lines" else Cadence(steps=0, seconds=BAR_REFRESH_SECONDS))
        self._progress: Any = None
        self._task: Any = None
        self._stats: dict[str, str] = {}
        self._reset(clock(), start_step)

    def _reset(self, now: float, step: int) -> None:
        self._since, self._since_step, self._paused = now, step, 0.0
        self._loss_sum, self._losses = 0.0, 0

    # -- lifecycle

    def __enter__(self) -> TrainingProgress:
        if self.mode == "lines":
            start = f", from step {self.start_step}" if self.start_step else ""
            say(f"train {self.name}: {self.total} steps{start}")
        elif self.mode == "bar":
            self._start_bar()
        self._reset(self.clock(), self.start_step)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _start_bar(self) -> None:
        """Count first, then one text of fields: on a narrow terminal rich cuts the text's tail (the best
        score), never the count or the loss; the bar itself only where there is room for it."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = (BarColumn(bar_width=20),) if self.console.width >= WIDE_TERMINAL else ()
        self._progress = Progress(
            TextColumn("{task.description}"),
            *bar,
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._stats = {"loss": "-", "rate": "-", "eta": "-"}
        self._task = self._progress.add_task(
            f"train {self.name}", total=self.total, completed=self.start_step, stats=self._bar_stats()
        )

    def _bar_stats(self) -> str:
        text = f"loss {self._stats['loss']} {self._stats['rate']} steps/s eta {self._stats['eta']}"
        if self.best is not None:
            score, step = self.best
            text += f" best val {percent(score)} @{step}"
        return text

    # -- events

    def step(self, step: int, loss: float) -> None:
        """After the update of `step` (1-based), whose loss was `loss`."""
        if self.mode is None:
            return
        self._loss_sum += loss
        self._losses += 1
        now = self.clock()
        last = step >= self.total
        first_refresh = self.mode == "bar" and self._since_step == self.start_step
        if not (last or first_refresh or self.every.due(step - self._since_step, now - self._since)):
            if self._progress is not None:
                self._progress.update(self._task, completed=step)
            return
        active = max(now - self._since - self._paused, 1e-9)
        rate = (step - self._since_step) / active
        loss_mean = self._loss_sum / max(self._losses, 1)
        eta = duration((self.total - step) / rate) if rate > 0 else "?"
        if self._progress is not None:
            self._stats = {"loss": f"{loss_mean:.4f}", "rate": f"{rate:.2f}", "eta": eta}
            self._progress.update(self._task, completed=step, stats=self._bar_stats())
        else:
            line = f"train {self.name} step {step}/{self.total} loss {loss_mean:.4f} {rate:.2f} steps/s eta {eta}"
            if self.best is not None:
                line += f" {self._best_text()}"
            say(line)
        self._reset(now, step)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside is not training time: it is left out of steps/s and the ETA."""
        started = self.clock()
        try:
            yield
        finally:
            self._paused += self.clock() - started

    def validated(self, step: int, score: float | None, best_score: float | None, best_step: int | None) -> None:
        """One line per validation: its score, and whether it is the best so far."""
        if best_score is not None and best_step is not None:
            self.best = (best_score, best_step)
        if self.mode is None:
            return
        if score is None:
            verdict = "no score (no scenario has a defined mIoU)"
        elif best_step == step:
            verdict = f"score {percent(score)} (best)"
        else:
            verdict = f"score {percent(score)}" + (f" (best {self._best_text(short=True)})" if self.best else "")
        note(f"val step {step}: {verdict}", console=self.console)
        if self._progress is not None:
            self._progress.update(self._task, stats=self._bar_stats())

    def _best_text(self, short: bool = False) -> str:
        if self.best is None:
            return ""
        score, step = self.best
        return f"{percent(score)} at step {step}" if short else f"best val {percent(score)} (step {step})"
