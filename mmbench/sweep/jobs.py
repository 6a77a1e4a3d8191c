"""The job function: run one planned job as the ordinary command line and record how it went.

Both executors call `run_job` (the local one in a worker thread of the sweep, submitit in its own process
on a cluster node or, for tests, in `submitit.LocalExecutor`'s subprocess), so a job behaves the same
wherever it runs. The job runs `python -m mmbench run|eval ...` as a child process, its output appended to
the job's log, with `threads` intra-op threads (OMP/MKL variables) so that parallel jobs do not
oversubscribe the cores. A training asked for more than one GPU runs under torchrun (PyTorch DDP, as
docs/training.md launches it). A training stopped earlier (a `last.ckpt` without a record) continues
with `--resume` when the project's own `find_resumable_run` accepts it for this exact config.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mmbench.atomic import write_text_atomic
from mmbench.config import to_yaml
from mmbench.errors import UserError
from mmbench.records import read_record
from mmbench.sweep.planning import EVAL, TRAIN, Job
from mmbench.sweep.state import (
    DONE,
    FAILED,
    RUNNING,
    record_facts,
    search_records,
    state_record_path,
    unfinished_training,
    write_state,
)

INTERRUPTED = "interrupted"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class JobSettings:
    """How a job runs: intra-op threads (None: leave the environment alone), GPUs (> 1: torchrun for
    trainings), the time limit of its executor (for the state's deadline), the Python to run."""

    threads: int | None = None
    gpus: int = 0
    timeout_min: int | None = None
    python: str = sys.executable


@dataclass(frozen=True)
class JobResult:
    """What the driver needs: the outcome, the record, one line of error, the log, and timings (`wall_s`:
    the job function's wall time; `record_s`: the record's own `timing.total_s`)."""

    job_id: str
    status: str
    record: str | None
    error: str | None
    log: str
    wall_s: float
    record_s: float | None = None
    resumed: bool = False
    child_s: float | None = None

    @property
    def sweep_s(self) -> float | None:
        """The sweep's own seconds for this job: state files, the resume check, finding and checking the
        record (the job function's wall time minus its child process's)."""
        return None if self.child_s is None else max(0.0, self.wall_s - self.child_s)

    @property
    def startup_s(self) -> float | None:
        """The child's seconds outside what its record measured: interpreter start, imports (torch),
        plugin loading; the same for a hand-typed `mmbench run`."""
        if self.child_s is None or self.record_s is None:
            return None
        return max(0.0, self.child_s - self.record_s)


def run_job(job: Job, settings: JobSettings) -> JobResult:
    """Run `job` to completion; never raises for a failing job (the failure is its result)."""
    clock = time.perf_counter()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + 60 * settings.timeout_min if settings.timeout_min else None
    write_state(job, status=RUNNING, pid=os.getpid(), host=socket.gethostname(), started=started, deadline=deadline)
    try:
        training = _training_record(job) if job.kind == EVAL else None
        command, resumed = _command(job, settings, training)
    except UserError as exc:
        return _finish(job, clock, FAILED, error=str(exc), started=started)
    except Exception as exc:  # a bug while preparing the job: it fails, the sweep goes on
        return _finish(job, clock, FAILED, error=f"internal error: {type(exc).__name__}: {exc}", started=started)
    with job.log_path.open("a", encoding="utf-8") as log:
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {socket.gethostname()}: {' '.join(command)}\n")
        log.flush()
        child_clock = time.perf_counter()
        returncode = _run_child(command, log, settings)
    if returncode != 0:
        status = INTERRUPTED if returncode < 0 or returncode in (130, 143) else FAILED  # 143: SIGTERM, handled
        reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        error = f"{reason}: {_last_line(job.log_path)}"
        return _finish(job, clock, status, error=error, started=started, child_s=time.perf_counter() - child_clock)
    child_s = time.perf_counter() - child_clock
    fingerprints = _fingerprints(job)
    selected = ((training or {}).get("method") or {}).get("checkpoint") or {}
    record, problems = search_records(job, fingerprints, selected.get("sha256"))
    if record is None:
        why = problems[0].removesuffix("; the job runs again") if problems else "it wrote none"
        error = f"it exited normally but left no record of the planned config: {why}"
        return _finish(job, clock, FAILED, error=error, started=started, child_s=child_s)
    return _finish(job, clock, DONE, record=record, started=started, resumed=resumed, child_s=child_s)


_CHILDREN: set[subprocess.Popen[bytes]] = set()
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by `interrupt_children`: no job starts after it, a starting one is stopped
_NOT_STARTED = 130  # what an interrupted job's process returns; a job the interruption kept from starting too


def _run_child(command: list[str], log: IO[str], settings: JobSettings) -> int:
    """Run the job's process to its end. It gets a session of its own, so a Ctrl-C on the terminal reaches
    the sweep only, which then interrupts each job exactly once (`interrupt_children`). A job whose thread
    gets here after the interruption does not start; one starting while it happens is interrupted too
    (the check and the registration share the lock `interrupt_children` takes, so exactly one SIGINT)."""
    if _STOPPING.is_set():
        log.write("# not started: the sweep was interrupted\n")
        return _NOT_STARTED
    child = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_environment(settings),
        start_new_session=True,
        preexec_fn=_die_with_parent if _PRCTL is not None else None,
    )
    with _CHILDREN_LOCK:
        _CHILDREN.add(child)
        missed = _STOPPING.is_set()  # the interruption came while this process was being started
    if missed:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
    try:
        return child.wait()
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(child)


def interrupt_children() -> None:
    """Send SIGINT to every job process this process started: each saves its checkpoint and exits (130),
    and its state says interrupted (it resumes on the next sweep). Jobs not yet started stay unstarted."""
    with _CHILDREN_LOCK:
        _STOPPING.set()
        children = list(_CHILDREN)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)


def allow_jobs() -> None:
    """A new sweep in this process may start jobs again (after an earlier one was interrupted)."""
    _STOPPING.clear()


def _command(job: Job, settings: JobSettings, training: dict[str, Any] | None) -> tuple[list[str], bool]:
    mmbench = [settings.python, "-m", "mmbench"]
    if job.kind == TRAIN:
        resume = unfinished_training(job) and _resumable(job)
        if settings.gpus > 1:
            mmbench = [settings.python, "-m", "torch.distributed.run", "--standalone"]
            mmbench += ["--nproc_per_node", str(settings.gpus), "-m", "mmbench"]
        command = [*mmbench, "run", job.method, "--protocol", job.protocol, "--dataset", job.dataset_arg]
        command += ["--seed", str(job.seed), "--out", str(job.out_dir)]
        if job.config_file is not None:
            command += ["--config", str(job.config_file)]
        for override in job.overrides:
            command += ["--set", override]
        return [*command, "--resume"] if resume else command, resume
    return _eval_command(mmbench, [job], training), False


def _eval_command(mmbench: list[str], jobs: list[Job], training: dict[str, Any] | None) -> list[str]:
    """One `mmbench eval` of the training's checkpoint under every job's protocol; each job's run, protocol
    and dataset sections go in its own config file (`--config FILE` for one job, `--config P=FILE` each for
    several: docs/sweeps.md)."""
    first = jobs[0]
    checkpoint = ((training or {}).get("method") or {}).get("checkpoint") or {}
    if not checkpoint.get("path"):
        raise UserError(f"the record of training {first.train_id} names no checkpoint to evaluate")
    # Records hold absolute paths; next to the record is where the checkpoint is if the output root moved.
    beside = Path(str((training or {}).get(_RECORD_PATH_KEY, ""))).parent / Path(checkpoint["path"]).name
    checkpoint_path = str(beside) if beside.is_file() else checkpoint["path"]
    command = [*mmbench, "eval", checkpoint_path]
    for job in jobs:
        command += ["--protocol", job.protocol]
    command += ["--dataset", first.dataset_arg]
    for job in jobs:
        config_path = job.out_dir / f"{job.kind}-{job.protocol}.config.yaml"
        sections = job.expected_config()
        write_text_atomic(config_path, to_yaml({key: sections[key] for key in ("run", "protocol", "dataset")}))
        command += ["--config", str(config_path) if len(jobs) == 1 else f"{job.protocol}={config_path}"]
    return [*command, "--out", str(first.out_dir)]


def run_evaluations(jobs: list[Job], settings: JobSettings) -> list[JobResult]:
    """Run evaluations of one training as ONE `mmbench eval` process (the checkpoint, the model and the store
    loaded once: mmbench/runs/checkpoint_eval.py); one job is `run_job` itself. Each job keeps its own state
    file and outcome: done when its record is found, else failed (interrupted when the process was) with the
    process's error and the shared log, `eval-P1+P2....log`; each job's own log points to it. Never raises."""
    if len(jobs) == 1:
        return [run_job(jobs[0], settings)]
    clock = time.perf_counter()
    first = jobs[0]
    first.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + 60 * settings.timeout_min if settings.timeout_min else None
    log_path = first.out_dir / f"{EVAL}-{'+'.join(job.protocol for job in jobs)}.log"
    for job in jobs:
        write_state(
            job, status=RUNNING, pid=os.getpid(), host=socket.gethostname(), started=started, deadline=deadline,
            log=str(log_path),
        )  # fmt: skip
    try:
        training = _training_record(first)
        command = _eval_command([settings.python, "-m", "mmbench"], jobs, training)
    except UserError as exc:
        return [_finish(job, clock, FAILED, error=str(exc), started=started, log=log_path) for job in jobs]
    except Exception as exc:  # a bug while preparing the jobs: they fail, the sweep goes on
        error = f"internal error: {type(exc).__name__}: {exc}"
        return [_finish(job, clock, FAILED, error=error, started=started, log=log_path) for job in jobs]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for job in jobs:
        with job.log_path.open("a", encoding="utf-8") as own:
            own.write(f"# {stamp}: evaluated with {len(jobs) - 1} other protocol(s) in one process; see {log_path}\n")
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"# {stamp} {socket.gethostname()}: {' '.join(command)}\n")
        log.flush()
        start = log.tell()
        child_clock = time.perf_counter()
        returncode = _run_child(command, log, settings)
    child_s = time.perf_counter() - child_clock
    fingerprints = _fingerprints(first)
    selected = ((training or {}).get("method") or {}).get("checkpoint") or {}
    if returncode == 0:
        status, reason = FAILED, "it exited normally but left no record of the planned config"
    else:
        status = INTERRUPTED if returncode < 0 or returncode in (130, 143) else FAILED  # 143: SIGTERM, handled
        reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    results = []
    shared: dict[str, Any] = {"log": log_path, "share": len(jobs)}
    for job in jobs:
        record, problems = search_records(job, fingerprints, selected.get("sha256"))
        if record is not None:
            result = _finish(job, clock, DONE, record=record, started=started, child_s=child_s, **shared)
        else:
            why = (
                problems[0].removesuffix("; the job runs again") if problems else _protocol_error(log_path, job, start)
            )
            error = f"{reason}: {why}"
            result = _finish(job, clock, status, error=error, started=started, child_s=child_s, **shared)
        results.append(result)
    return results


_RECORD_PATH_KEY = "__sweep_record_path__"


def _training_record(job: Job) -> dict[str, Any]:
    """The record of the training an evaluation evaluates, from the training's state file (with where it
    was read from under `_RECORD_PATH_KEY`)."""
    data = _read_json(job.out_dir / f"{TRAIN}-{_train_protocol(job)}.state.json")
    if not data or data.get("status") != DONE or not data.get("record"):
        raise UserError(f"training {job.train_id} is not done; its evaluation {job.id} cannot run")
    path = state_record_path(job, data)
    return {**read_record(path), _RECORD_PATH_KEY: str(path)}


def _train_protocol(job: Job) -> str:
    return str(job.train_id).rsplit("/", 1)[-1].removeprefix(f"{TRAIN}-")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _resumable(job: Job) -> bool:
    """Whether `mmbench run --resume` will find this job's unfinished run (same method, protocol, dataset,
    seed and resolved config, and the same store bytes when the store is given by path), asked of the
    project's own `find_resumable_run`: a checkpoint trained on a since-rewritten store is not resumed, the
    job trains afresh."""
    from mmbench.context import RunOptions
    from mmbench.runs.execution import find_resumable_run
    from mmbench.runs.planning import RunRequest, plan_run

    request = RunRequest(
        method=job.method,
        protocol=job.protocol,
        dataset=job.dataset_arg,
        command="",
        config_file=job.config_file,
        overrides=job.overrides,
        flags={"run.seed": job.seed, "run.out": str(job.out_dir)},
        options=RunOptions(resume=True),
    )
    try:
        find_resumable_run(plan_run(request), _fingerprints(job).get(job.dataset_arg))
    except UserError:
        return False
    return True


def _fingerprints(job: Job) -> Mapping[str, str]:
    from mmbench.sweep.state import StoreFingerprints

    return StoreFingerprints([job.dataset_arg])


def _environment(settings: JobSettings) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if settings.threads is not None:
        env.update({name: str(settings.threads) for name in THREAD_VARIABLES})
    return env


def _load_prctl() -> Any:
    """libc's prctl, looked up once in the parent: the child, forked from a threaded process, must run as
    little Python as possible before exec (no imports, no locks)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGKILL when the thread that started it ends (with the sweep), so a killed
    sweep leaves no orphan training behind."""
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _protocol_error(log: Path, job: Job, start: int) -> str:
    """The one-line error `mmbench eval` printed for this job's protocol (mmbench/cli/run_command.py) after
    byte `start` of the log (this run's output), else the log's last line (the process stopped earlier)."""
    marker = f"mmbench eval: protocol {job.protocol} failed: "
    with contextlib.suppress(OSError):
        with log.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
        found = [line.strip() for line in text.splitlines() if line.startswith(marker)]
        if found:
            return found[-1].removeprefix(marker)[:500]
    return _last_line(log)


def _last_line(log: Path) -> str:
    """The last non-empty line of the log: the one-line error every mmbench failure ends with."""
    with contextlib.suppress(OSError):
        with log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
            if lines:
                return lines[-1][:500]
    return "(empty log)"


def _finish(
    job: Job,
    clock: float,
    status: str,
    *,
    started: float,
    record: Path | None = None,
    error: str | None = None,
    resumed: bool = False,
    child_s: float | None = None,
    log: Path | None = None,
    share: int = 1,
) -> JobResult:
    """Write the job's final state and return its result; `log`: the log its output went to when that is
    not its own, `share`: how many jobs that process ran (several evaluations in one process: its wall and
    child times are shared evenly, so that the per-job means of the sweep's closing line stay per job)."""
    log = log if log is not None else job.log_path
    facts = record_facts(record) if record is not None else {}
    record_s = (facts.get("timing") or {}).get("total_s")
    wall = (time.perf_counter() - clock) / share
    child_s = child_s / share if child_s is not None else None
    write_state(
        job,
        status=status,
        record=os.path.relpath(record, job.out_dir) if record is not None else None,
        error=error,
        host=socket.gethostname(),
        started=started,
        finished=time.time(),
        wall_s=round(wall, 3),
        child_s=round(child_s, 3) if child_s is not None else None,
        resumed=resumed,
        log=str(log),
        **facts,
    )
    return JobResult(
        job_id=job.id,
        status=status,
        record=str(record) if record is not None else None,
        error=error,
        log=str(log),
        wall_s=wall,
        record_s=record_s,
        resumed=resumed,
        child_s=child_s,
    )
