"""What `mmbench sweep` shows: the plan (`--dry-run`), the state matrix (`--status`), progress while it
runs (a rich progress bar on a terminal, one plain line per event otherwise), and the closing summary.

Cost estimates come from records this sweep already has (its own and those taken under `reuse:`): a
training's seconds per step (`timing.steps_per_s`) times the planned iterations plus the rest of that
record's time (evaluation), and an evaluation's recorded `timing.total_s`, per (dataset, method config,
protocol). A config with no record of its own borrows from other configs of the same method on the same
dataset and protocol (a redundancy level or an ablation switch: the same network, a similar step), shown
with "≈"; a method with no record at all is shown as "?", never guessed.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from mmbench.console import stderr, stdout
from mmbench.progress import bar_columns, quiet
from mmbench.sweep.driver import Reporter, SweepOutcome, summary_counts
from mmbench.sweep.jobs import JobResult
from mmbench.sweep.planning import TRAIN, Job, SweepPlan
from mmbench.sweep.state import DONE, FAILED, PENDING, RUNNING, JobStatus, resume_step

MAX_NOTES = 10
STYLES = {DONE: "green", FAILED: "bold red", PENDING: "yellow", RUNNING: "cyan"}


# -- estimates -----------------------------------------------------------------------------------------


def estimate_costs(
    plan: SweepPlan, statuses: dict[str, JobStatus], approximate: set[str] | None = None
) -> dict[str, float | None]:
    """Seconds each job is expected to take (None: no record to estimate from). The ids of jobs estimated
    from other configs of their method are added to `approximate` when it is given."""
    per_group: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for job in plan.jobs:
        status = statuses[job.id]
        timing = status.data.get("timing") or {}
        if status.state != DONE or not timing:
            continue
        for name in (job.config_name, _METHOD + job.method):  # the config's own group, and its method's
            if job.kind == TRAIN:
                rate = timing.get("steps_per_s")
                segment = timing.get("segment_train_s")  # a resumed run: this process's part of train_s
                train_s = segment if segment is not None else timing.get("train_s")
                if not rate or job.iterations is None:
                    continue
                rest = max(0.0, float(timing.get("total_s") or 0.0) - float(train_s or 0.0))
                per_group[(job.dataset, name, job.protocol)].append(1.0 / float(rate))
                per_group[(job.dataset, name, "rest:" + job.protocol)].append(rest)
            elif timing.get("total_s") is not None:
                per_group[(job.dataset, name, job.protocol)].append(float(timing["total_s"]))
    # Each job also starts a process (interpreter, imports) that its record does not time.
    startups = [
        float(status.data["child_s"]) - float(status.data["timing"]["total_s"])
        for status in statuses.values()
        if status.state == DONE and status.data.get("child_s") and (status.data.get("timing") or {}).get("total_s")
    ]
    startup = max(0.0, statistics.mean(startups)) if startups else 0.0
    costs: dict[str, float | None] = {}
    for job in plan.jobs:
        name = job.config_name
        if (job.dataset, name, job.protocol) not in per_group:
            name = _METHOD + job.method
            if (job.dataset, name, job.protocol) not in per_group:
                costs[job.id] = None
                continue
            if approximate is not None:
                approximate.add(job.id)
        seconds = statistics.mean(per_group[(job.dataset, name, job.protocol)])
        if job.kind == TRAIN:
            rest = per_group.get((job.dataset, name, "rest:" + job.protocol), [0.0])
            costs[job.id] = seconds * (job.iterations or 0) + statistics.mean(rest) + startup
        else:
            costs[job.id] = seconds + startup
    return costs


_METHOD = "method:"  # prefixes a method's name where its group stands beside the method configs' groups


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- dry run and status --------------------------------------------------------------------------------


def show_plan(plan: SweepPlan, statuses: dict[str, JobStatus], executor: str, parallel: int) -> None:
    """The plan as a table: one row per (dataset, method config), its jobs, how many are done, est. cost."""
    console = stdout()
    approximate: set[str] = set()
    costs = estimate_costs(plan, statuses, approximate)
    suite = plan.suite
    trainings, evaluations = len(plan.trainings), len(plan.evaluations)
    console.print(
        f"[bold]dry run[/bold] of suite [bold]{suite.name}[/bold] ({suite.path}): nothing is started.\n"
        f"{len(plan.jobs)} jobs = {trainings} trainings ({len(suite.datasets)} datasets x {len(suite.methods)} "
        f"method configs x {len(suite.seeds)} seeds, under {suite.train}) + {evaluations} evaluations of their "
        f"checkpoints ({', '.join(suite.evaluate) or 'none'}); output root {suite.out}; executor {executor}, "
        f"{parallel} at a time."
    )
    table = Table(title="Plan", title_justify="left")
    for column in ("dataset", "method config", "method", "seeds", "protocols", "jobs", "done", "to run", "est."):
        table.add_column(column, justify="right" if column in ("jobs", "done", "to run", "est.") else "left")
    groups: dict[tuple[str, str], list[Job]] = defaultdict(list)
    for job in plan.jobs:
        groups[(job.dataset, job.config_name)].append(job)
    total_cost, unknown = 0.0, 0
    for (dataset, name), jobs in groups.items():
        done = sum(statuses[job.id].state == DONE for job in jobs)
        remaining = [job for job in jobs if statuses[job.id].state != DONE]
        known = [costs[job.id] for job in remaining if costs[job.id] is not None]
        missing = len(remaining) - len(known)
        total_cost += sum(known)  # type: ignore[arg-type]
        unknown += missing
        cost = duration(sum(known)) if known else ("0 s" if not remaining else "?")  # type: ignore[arg-type]
        if any(job.id in approximate for job in remaining):
            cost = "≈ " + cost
        if known and missing:
            cost += f" + {missing} ?"
        table.add_row(
            dataset,
            name,
            jobs[0].method,
            ", ".join(str(seed) for seed in suite.seeds),
            " ".join([suite.train, *suite.evaluate]),
            str(len(jobs)),
            str(done),
            str(len(remaining)),
            cost,
        )
    console.print(table)
    done_total = sum(status.state == DONE for status in statuses.values())
    reused = sum(status.reused_from is not None for status in statuses.values())
    if unknown and not total_cost:
        estimate = "cost unknown (no finished records of these configs yet)"
    else:
        estimate = f"estimated {duration(total_cost)} of job time" + (
            f" + {unknown} jobs of unknown cost" if unknown else ""
        )
        estimate += " (divided by the jobs run at once)"
        if approximate:
            estimate += f"; ≈: {len(approximate)} jobs estimated from other configs of the same method"
    reused_text = f" ({reused} reused from the sweeps under 'reuse:')" if reused else ""
    console.print(
        f"{done_total} of {len(plan.jobs)} jobs already done{reused_text}; {len(plan.jobs) - done_total} to run, "
        f"{estimate}."
    )
    show_problems(statuses)


def show_status(plan: SweepPlan, statuses: dict[str, JobStatus]) -> None:
    """The matrix of states: a row per (dataset, method config, seed), a column per protocol."""
    console = stdout()
    table = Table(title=f"Suite {plan.suite.name}: job states", title_justify="left")
    several = len(plan.suite.datasets) > 1
    if several:
        table.add_column("dataset")
    table.add_column("method config")
    table.add_column("seed", justify="right")
    for protocol in plan.protocols:
        table.add_column(protocol + (" (train)" if protocol == plan.suite.train else ""))
    rows: dict[tuple[str, str, int], dict[str, JobStatus]] = defaultdict(dict)
    steps: dict[tuple[str, str, int], int | None] = {}
    for job in plan.jobs:
        rows[(job.dataset, job.config_name, job.seed)][job.protocol] = statuses[job.id]
        if job.kind == TRAIN and statuses[job.id].resumable and statuses[job.id].state != DONE:
            steps[(job.dataset, job.config_name, job.seed)] = resume_step(job)
    order = {config.name: index for index, config in enumerate(plan.suite.methods)}
    for (dataset, name, seed), cells in sorted(
        rows.items(), key=lambda item: (item[0][0], order[item[0][1]], item[0][2])
    ):
        step = steps.get((dataset, name, seed))
        labels = [
            _cell(cells[protocol]) + (f" @{step}" if step is not None and protocol == plan.suite.train else "")
            for protocol in plan.protocols
        ]
        table.add_row(*([dataset] if several else []), name, str(seed), *labels)
    console.print(table)
    counts = Counter(status.state for status in statuses.values())
    console.print(", ".join(f"{counts.get(state, 0)} {state}" for state in (DONE, FAILED, PENDING, RUNNING)))
    show_problems(statuses)
    for job in plan.jobs:
        status = statuses[job.id]
        if status.state == FAILED:
            console.print(f"[red]failed[/red] {job.id}: {status.data.get('error')} (log: {job.log_path})")


def _cell(status: JobStatus) -> str:
    label = status.state + ("*" if status.resumable and status.state != DONE else "")
    label += " (reused)" if status.reused_from is not None else ""
    return f"[{STYLES[status.state]}]{label}[/]"


def show_problems(statuses: dict[str, JobStatus]) -> None:
    problems = [status.problem for status in statuses.values() if status.problem]
    for problem in problems[:MAX_NOTES]:
        stderr().print(f"[yellow]note:[/yellow] {problem}", highlight=False, soft_wrap=True)
    if len(problems) > MAX_NOTES:
        stderr().print(
            f"[yellow]note:[/yellow] ... and {len(problems) - MAX_NOTES} more outputs not reused", highlight=False
        )
    if any(status.resumable and status.state != DONE for status in statuses.values()):
        stdout().print("* resumes from its last checkpoint (@N: saved at step N)")


# -- progress ------------------------------------------------------------------------------------------


class LineReporter(Reporter):
    """One plain line per event (no terminal: logs, CI)."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        self.total, self.count = total, 0
        self.console = console or stderr()

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def started(self, job: Job) -> None:
        self._say(f"start {job.id}")

    def finished(self, job: Job, result: JobResult) -> None:
        self.count += 1
        prefix = f"[{self.count}/{self.total}]"
        if result.status == DONE:
            resumed = " (resumed)" if result.resumed else ""
            self._say(f"{prefix} done {job.id} in {result.wall_s:.1f} s{resumed}")
        else:
            self._say(f"{prefix} {result.status.upper()} {job.id}: {result.error} (log: {result.log})")

    def blocked(self, job: Job, reason: str) -> None:
        self._say(f"not started {job.id}: {reason}")


class ProgressReporter(LineReporter):
    """A rich progress bar of the jobs (done / running / failed / remaining, elapsed, ETA); finished and
    failed jobs are still printed above it, one line each."""

    def __init__(self, total: int, progress: Any) -> None:
        super().__init__(total, progress.console)
        self.progress = progress
        self.task = progress.add_task("jobs", total=total)
        self.running = self.failed = self.done = 0
        self._update()

    def _update(self) -> None:
        remaining = self.total - self.done - self.failed - self.running
        description = f"done {self.done} · running {self.running} · failed {self.failed} · remaining {remaining}"
        self.progress.update(self.task, completed=self.done + self.failed, description=description)

    def started(self, job: Job) -> None:
        self.running += 1
        self._update()

    def finished(self, job: Job, result: JobResult) -> None:
        self.running -= 1
        if result.status == DONE:
            self.done += 1
        else:
            self.failed += 1
        super().finished(job, result)
        self._update()

    def blocked(self, job: Job, reason: str) -> None:
        self.failed += 1
        super().blocked(job, reason)
        self._update()


class QuietReporter(LineReporter):
    """`--quiet`: only the jobs that failed or were not started, each a line with its log (errors still
    print); the jobs inherit the quiet setting (mmbench/progress.py `quieted`), so their logs hold no
    progress lines either."""

    def started(self, job: Job) -> None:
        pass

    def finished(self, job: Job, result: JobResult) -> None:
        if result.status != DONE:
            super().finished(job, result)
        else:
            self.count += 1


@contextmanager
def reporter(total: int) -> Iterator[Reporter]:
    """A progress bar on a terminal, plain lines otherwise, failures only under --quiet."""
    console = stderr()
    if quiet():
        yield QuietReporter(total, console)
        return
    if not console.is_terminal:
        yield LineReporter(total, console)
        return
    from rich.progress import Progress

    columns = bar_columns()
    with Progress(*columns, console=console, transient=False) as progress:
        yield ProgressReporter(total, progress)


def show_summary(outcome: SweepOutcome, plan: SweepPlan, started: float) -> None:
    counts = summary_counts(outcome)
    parts = [f"{value} {key}" for key, value in counts.items() if value]
    own = [result.sweep_s for result in outcome.results if result.sweep_s is not None]
    startup = [result.startup_s for result in outcome.results if result.startup_s is not None]
    line = f"sweep {plan.suite.name}: " + (", ".join(parts) or "nothing to do")
    line += f" in {time.monotonic() - started:.1f} s; records under {plan.suite.out}"
    if own:
        line += f"; per job: sweep bookkeeping {statistics.mean(own):.2f} s"
    if startup:
        line += f", process start + imports {statistics.mean(startup):.1f} s (as for a hand-typed mmbench run)"
    stderr().print(line, highlight=False, soft_wrap=True)
