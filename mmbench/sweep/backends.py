"""Where jobs run: worker threads of the sweep on this machine (each runs its job as a child process), or
submitit (Slurm on a cluster; its local executor, same job function in subprocesses, for tests).

No scheduling is done here: a backend only starts a job and reports when it ended. Slurm queues and
places the jobs; the driver (`mmbench.sweep.driver`) only decides which jobs are ready (an evaluation
after its training).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from mmbench.errors import UserError
from mmbench.sweep.jobs import (
    INTERRUPTED,
    JobResult,
    JobSettings,
    allow_jobs,
    interrupt_children,
    run_evaluations,
    run_job,
)
from mmbench.sweep.planning import TRAIN, Job
from mmbench.sweep.state import FAILED, RUNNING, read_state, write_state
from mmbench.sweep.suite import ExecutorSettings

EXECUTORS = ("local", "slurm", "submitit-local")


class Handle(Protocol):
    def done(self) -> bool: ...


class Backend(Protocol):
    """Starts jobs; `result(handle)` is the job's result once `handle.done()`."""

    name: str

    def submit(self, job: Job) -> Any: ...

    def result(self, job: Job, handle: Any) -> JobResult: ...

    def submit_evaluations(self, jobs: list[Job]) -> Any: ...

    def evaluation_results(self, jobs: list[Job], handle: Any) -> list[JobResult]: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the platform reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores_note(load: float | None = None, machine_cores: int | None = None) -> str | None:
    """One line when the cores a local sweep is about to fill already look busy, else None.

    Why: a sweep gives its jobs every core it may use (`available_cores`), and nothing tells it about other
    work on them. Two unpinned sweeps on one 2-core machine ran 2 OpenMP threads each there and trained at a
    fifth of the speed each had pinned to its own core (docs/sweeps.md, "Running locally"). The machine's
    1-minute load average (`load`) counts the runnable processes on all its cores: when fewer cores than
    this sweep will use are left free, the note names the fix. It lags by about a minute, so it is a note,
    not a refusal."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
            return None
    machine_cores = machine_cores or os.cpu_count() or 1
    wanted = available_cores()
    free = machine_cores - load
    if wanted <= free + 0.5:
        return None
    threads = f"{wanted} thread{'' if wanted == 1 else 's'}"
    return (
        f"the 1-minute load average is {load:.1f} on this machine's {machine_cores} cores, and this sweep's jobs "
        f"will run {threads} in all; if another sweep or job is using these cores, stop this one and pin "
        "each to its own cores (taskset -c), or run both parts in one sweep with --jobs N (docs/sweeps.md)"
    )


class LocalBackend:
    """`jobs` worker threads; each runs `run_job`, whose child process does the work with
    cores // jobs threads."""

    name = "local"

    def __init__(self, jobs: int, gpus: int = 0) -> None:
        self.jobs = jobs
        self.settings = JobSettings(threads=max(1, available_cores() // jobs), gpus=min(gpus, 1))
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mmbench-sweep")
        allow_jobs()

    def submit(self, job: Job) -> Future[JobResult]:
        return self._pool.submit(run_job, job, self.settings)

    def result(self, job: Job, handle: Future[JobResult]) -> JobResult:
        try:
            return handle.result()
        except Exception as exc:  # a bug in the job function: the job fails, the sweep goes on
            return JobResult(job.id, FAILED, None, f"{type(exc).__name__}: {exc}", str(job.log_path), 0.0)

    def submit_evaluations(self, jobs: list[Job]) -> Future[list[JobResult]]:
        """Evaluations of one training, run as one `mmbench eval` process (`run_evaluations`)."""
        return self._pool.submit(run_evaluations, jobs, self.settings)

    def evaluation_results(self, jobs: list[Job], handle: Future[list[JobResult]]) -> list[JobResult]:
        try:
            return handle.result()
        except Exception as exc:  # a bug in the job function: the jobs fail, the sweep goes on
            error = f"{type(exc).__name__}: {exc}"
            return [JobResult(job.id, FAILED, None, error, str(job.log_path), 0.0) for job in jobs]

    def interrupt(self) -> None:
        """Ctrl-C: each running job saves its checkpoint and stops; `close` then waits for them."""
        interrupt_children()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class SubmititBackend:
    """submitit's AutoExecutor: `cluster="slurm"` submits with sbatch (the suite's `executor:` section gives
    partition, GPUs per job, time limit and extra sbatch options); `cluster="local"` runs the same job
    function in local subprocesses (tests, no cluster)."""

    def __init__(self, cluster: str, folder: Path, settings: ExecutorSettings, suite_name: str) -> None:
        import submitit

        self.name = "slurm" if cluster == "slurm" else "submitit-local"
        self.settings = settings
        self._executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self._common: dict[str, Any] = {"name": f"mmbench-{suite_name}", "timeout_min": settings.timeout_min}
        if settings.cpus_per_task is not None:
            self._common["cpus_per_task"] = settings.cpus_per_task
        if settings.mem_gb is not None:
            self._common["mem_gb"] = settings.mem_gb
        if cluster == "slurm":
            if settings.partition is not None:
                self._common["slurm_partition"] = settings.partition
            if settings.slurm_additional_parameters:
                self._common["slurm_additional_parameters"] = dict(settings.slurm_additional_parameters)
            if settings.setup:
                self._common["slurm_setup"] = list(settings.setup)

    def submit(self, job: Job) -> Any:
        # A training gets the section's GPUs (> 1: DDP under torchrun inside the job); an evaluation one.
        gpus = self.settings.gpus_per_node if job.kind == TRAIN else min(1, self.settings.gpus_per_node)
        self._executor.update_parameters(**self._common, gpus_per_node=gpus, nodes=1, tasks_per_node=1)
        threads = self.settings.cpus_per_task // max(1, gpus) if self.settings.cpus_per_task and gpus > 1 else None
        settings = JobSettings(threads=threads, gpus=gpus, timeout_min=self.settings.timeout_min)
        return self._executor.submit(run_job, job, settings)

    def result(self, job: Job, handle: Any) -> JobResult:
        try:
            return handle.result()
        except Exception as exc:  # the job process died or was cancelled: submitit's error, in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logs = f"{job.log_path} and {handle.paths.stderr}" if hasattr(handle, "paths") else str(job.log_path)
            error = f"{type(exc).__name__}: {first}"
            _mark_interrupted(job, error)
            return JobResult(job.id, FAILED, None, error, logs, 0.0)

    def submit_evaluations(self, jobs: list[Job]) -> Any:
        """Evaluations of one training: one submitted function (`run_evaluations`), one GPU at most."""
        gpus = min(1, self.settings.gpus_per_node)
        self._executor.update_parameters(**self._common, gpus_per_node=gpus, nodes=1, tasks_per_node=1)
        settings = JobSettings(threads=None, gpus=gpus, timeout_min=self.settings.timeout_min)
        return self._executor.submit(run_evaluations, jobs, settings)

    def evaluation_results(self, jobs: list[Job], handle: Any) -> list[JobResult]:
        try:
            return handle.result()
        except Exception as exc:  # the batch's process died or was cancelled: each job, as `result` says
            return [self.result(job, _Failed(exc, handle)) for job in jobs]

    def interrupt(self) -> None:
        """Ctrl-C: jobs submitted through submitit keep running (on Slurm, `scancel` stops them); their
        states say running until they finish or their time limit passes."""

    def close(self) -> None:
        return None


def check_executor(name: str) -> None:
    """A Slurm sweep needs submitit and `sbatch`: refuse before anything starts, saying how to get them."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if name in ("slurm", "submitit-local") and importlib.util.find_spec("submitit") is None:
        raise UserError(f"--executor {name} needs submitit; install it with: pip install 'mmbench[slurm]'")
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None] if name == "slurm" else []
    if missing:
        raise UserError(
            f"--executor slurm needs Slurm's {' and '.join(missing)}, not found on PATH; run the sweep on a cluster "
            "login node (or use --executor local)"
        )


def make_backend(name: str, jobs: int, folder: Path, settings: ExecutorSettings, suite_name: str) -> Backend:
    check_executor(name)
    if name == "local":
        return LocalBackend(jobs, gpus=settings.gpus_per_node)
    return SubmititBackend("slurm" if name == "slurm" else "local", folder, settings, suite_name)


def _mark_interrupted(job: Job, error: str) -> None:
    """A job killed under submitit (time limit, preemption, scancel) left its state at running: say it
    was interrupted, so the next sweep resumes it instead of waiting for its deadline."""
    with contextlib.suppress(UserError, OSError):
        data = read_state(job)
        if data is not None and data.get("status") == RUNNING and data.get("digest") == job.digest:
            kept = {key: value for key, value in data.items() if key not in ("job", "kind", "digest", "log")}
            write_state(job, **{**kept, "status": INTERRUPTED, "error": error})


class _Failed:
    """A failed submitit job seen as one of its batch's jobs: `result` raises its error again."""

    def __init__(self, error: Exception, handle: Any) -> None:
        self._error = error
        if hasattr(handle, "paths"):
            self.paths = handle.paths

    def result(self) -> Any:
        raise self._error
