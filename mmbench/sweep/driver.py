"""Running a planned sweep: which jobs to run, in which order, and what happened.

Jobs already done are skipped; failed ones only with `retry_failed`; running ones (another sweep, a
cluster job) are left alone. An evaluation starts once its training is done (or was already done);
evaluations go before trainings still waiting, so finished work completes first. The evaluations of one
training that are ready together run as one batch (`next_batch`: one `mmbench eval` process, one slot of
`--jobs`); each keeps its own state and result. A failing job is
reported in one line with its log path and the others go on; evaluations of a failed training are not
started. Nothing here schedules machines: the backend runs what it is given (`mmbench.sweep.backends`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mmbench.sweep.backends import Backend
from mmbench.sweep.jobs import INTERRUPTED, JobResult
from mmbench.sweep.planning import TRAIN, Job, SweepPlan
from mmbench.sweep.state import DONE, FAILED, RUNNING, JobStatus, write_reused_states

POLL_S = 0.2


@dataclass
class SweepOutcome:
    """Counts and results of one `mmbench sweep` invocation."""

    skipped_done: int = 0
    skipped_running: int = 0
    skipped_failed: int = 0
    skipped_waiting: int = 0
    blocked: list[Job] = field(default_factory=list)
    results: list[JobResult] = field(default_factory=list)

    @property
    def failed(self) -> list[JobResult]:
        return [result for result in self.results if result.status != DONE]


def jobs_to_run(plan: SweepPlan, statuses: dict[str, JobStatus], retry_failed: bool) -> tuple[list[Job], SweepOutcome]:
    """The jobs this invocation runs, in plan order, and the counts of those it leaves alone."""
    outcome = SweepOutcome()
    selected: list[Job] = []
    for job in plan.jobs:
        state = statuses[job.id].state
        training = statuses[job.train_id].state if job.train_id is not None else None
        if state != DONE and training == FAILED and not retry_failed:
            outcome.skipped_waiting += 1  # waits on a failure left alone
        elif state == DONE:
            outcome.skipped_done += 1
        elif state == RUNNING:
            outcome.skipped_running += 1
        elif state == FAILED and not retry_failed:
            outcome.skipped_failed += 1
        else:
            selected.append(job)
    return selected, outcome


class Reporter:
    """What the driver tells the user; `mmbench.sweep.display` implements it (progress bar or lines)."""

    def started(self, job: Job) -> None: ...

    def finished(self, job: Job, result: JobResult) -> None: ...

    def blocked(self, job: Job, reason: str) -> None: ...


def run_sweep(
    plan: SweepPlan,
    statuses: dict[str, JobStatus],
    backend: Backend,
    *,
    parallel: int,
    retry_failed: bool,
    reporter: Reporter,
) -> SweepOutcome:
    """Run every job that needs running; returns when none is left or running."""
    write_reused_states(plan, statuses)
    selected, outcome = jobs_to_run(plan, statuses, retry_failed)
    chosen = {job.id for job in selected}
    training_state = {job.id: statuses[job.id].state for job in plan.trainings}
    waiting: dict[str, list[Job]] = {}  # training id -> its evaluations to run once it is done
    ready: deque[Job] = deque()
    for job in selected:
        if job.kind == TRAIN:
            ready.append(job)
        elif training_state.get(str(job.train_id)) == DONE:
            ready.appendleft(job)
        elif job.train_id in chosen:
            waiting.setdefault(str(job.train_id), []).append(job)
        else:  # its training failed earlier (not retried) or is running elsewhere
            why = "is running elsewhere" if training_state.get(str(job.train_id)) == RUNNING else "did not finish"
            outcome.blocked.append(job)
            reporter.blocked(job, f"its training {job.train_id} {why}")
    in_flight: dict[str, tuple[list[Job], Any]] = {}
    try:
        while ready or in_flight:
            while ready and len(in_flight) < parallel:
                batch = next_batch(ready)
                if len(batch) == 1:
                    in_flight[batch[0].id] = (batch, backend.submit(batch[0]))
                else:
                    in_flight[batch[0].id] = (batch, backend.submit_evaluations(batch))
                for job in batch:
                    reporter.started(job)
            finished = [key for key, (_, handle) in in_flight.items() if handle.done()]
            if not finished:
                time.sleep(POLL_S)
                continue
            for key in finished:
                batch, handle = in_flight.pop(key)
                if len(batch) == 1:
                    results = [backend.result(batch[0], handle)]
                else:
                    results = backend.evaluation_results(batch, handle)
                for job, result in zip(batch, results, strict=True):
                    outcome.results.append(result)
                    reporter.finished(job, result)
                    if job.kind != TRAIN:
                        continue
                    for evaluation in reversed(waiting.pop(job.id, [])):
                        if result.status == DONE:
                            ready.appendleft(evaluation)
                        else:
                            outcome.blocked.append(evaluation)
                            reporter.blocked(evaluation, f"its training {job.id} did not finish")
    except KeyboardInterrupt:
        backend.interrupt()
        raise
    finally:
        backend.close()
    return outcome


def next_batch(ready: deque[Job]) -> list[Job]:
    """The next job to start, taken from `ready`, with every other ready evaluation of the same training
    when it is an evaluation: they run as one `mmbench eval` process, which loads the checkpoint, the
    model and the store once (`mmbench.sweep.jobs.run_evaluations`). A training runs alone."""
    job = ready.popleft()
    if job.kind == TRAIN:
        return [job]
    batch = [job, *(other for other in ready if other.kind != TRAIN and other.train_id == job.train_id)]
    for other in batch[1:]:
        ready.remove(other)
    return batch


def summary_counts(outcome: SweepOutcome) -> dict[str, int]:
    """Counts for the closing line."""
    return {
        "done": sum(result.status == DONE for result in outcome.results),
        "failed": sum(result.status == FAILED for result in outcome.results),
        "interrupted": sum(result.status == INTERRUPTED for result in outcome.results),
        "blocked": len(outcome.blocked),
        "skipped": outcome.skipped_done,
        "left failed": outcome.skipped_failed,
        "waiting on a failed training": outcome.skipped_waiting,
        "running elsewhere": outcome.skipped_running,
    }
