"""Per-job state files and what "already done" means.

Each job keeps a small JSON file next to its outputs (`<job folder>/<kind>-<protocol>.state.json`, written
atomically): its digest (`mmbench.sweep.planning`), status, record path, log path, process, times. A job
is **done** only when all of these hold (else it runs again, and any mismatch is reported, never silently
reused):

1. its state says done with the digest the current suite gives it (same kind, protocol, dataset, seed and
   resolved config);
2. the record it names exists and reads as a valid record (`mmbench.records.read_record`);
3. the record's `config` equals the planned config (`run.out` aside), its seed is the job's, and for a
   store given by path its `dataset.fingerprint` is the store's current sha256;
4. for an evaluation, the checkpoint it evaluated (`method.checkpoint.sha256`) is the one its training's
   record selected.

A record without a state file (a state write lost) is adopted when it passes 2-4. Statuses: done,
failed, pending (never run, interrupted, or its outputs rejected; `resumable` when an unfinished training
left a `last.ckpt`) and running (its process is alive; a "running" state whose process on this host is
gone was interrupted, and counts as pending).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.atomic import write_json_atomic
from mmbench.errors import UserError
from mmbench.records import read_record, record_path
from mmbench.sweep.planning import EVAL, TRAIN, Job, SweepPlan

DONE, FAILED, PENDING, RUNNING = "done", "failed", "pending", "running"
STATES = (DONE, FAILED, PENDING, RUNNING)


@dataclass
class JobStatus:
    """Where a job stands. `problem` is a one-line report of outputs that were not reused."""

    state: str
    record: Path | None = None
    problem: str | None = None
    resumable: bool = False
    data: dict[str, Any] = field(default_factory=dict)


def read_state(job: Job) -> dict[str, Any] | None:
    """The job's state file, or None when there is none; a corrupt one is a `UserError` (reported)."""
    try:
        text = job.state_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"state file {job.state_path} is corrupt; it was ignored and the job runs again") from None
    if not isinstance(data, dict):
        raise UserError(f"state file {job.state_path} is corrupt; it was ignored and the job runs again")
    return data


def write_state(job: Job, **values: Any) -> dict[str, Any]:
    """Write the job's state (atomically), keeping the identity fields in every version."""
    data = {"job": job.id, "kind": job.kind, "digest": job.digest, "log": str(job.log_path), **values}
    write_json_atomic(job.state_path, data)
    return data


def record_root(job: Job) -> Path:
    """`<job folder>/<dataset>/<protocol>/<method>/`: where `mmbench run|eval --out <job folder>` writes."""
    return record_path(job.out_dir, job.dataset, job.protocol, job.method, "x").parent.parent


def unfinished_training(job: Job) -> bool:
    """A training that was stopped leaves `last.ckpt` in a run folder without `result.json`."""
    root = record_root(job)
    return job.kind == TRAIN and any(not (ckpt.parent / "result.json").exists() for ckpt in root.glob("*/last.ckpt"))


def check_record(job: Job, path: Path, fingerprints: Mapping[str, str], training: dict[str, Any] | None) -> str | None:
    """Why the record at `path` is not this job's result, or None when it is (rules 2-4 above)."""
    try:
        record = read_record(path)
    except UserError as exc:
        return f"record {path} is unreadable ({exc}); the job runs again"
    from mmbench.sweep.planning import comparable

    if comparable(record.get("config", {})) != job.expected_config():
        return f"record {path} was made with a different config; the job runs again (the old record stays)"
    if record.get("seed") != job.seed:
        return f"record {path} has seed {record.get('seed')}, not {job.seed}; the job runs again"
    expected_fingerprint = fingerprints.get(job.dataset_arg)
    if expected_fingerprint is not None and record["dataset"].get("fingerprint") != expected_fingerprint:
        return f"record {path} was made from another version of {job.dataset_arg}; the job runs again"
    if job.kind == EVAL:
        selected = ((training or {}).get("method") or {}).get("checkpoint") or {}
        evaluated = (record["method"].get("checkpoint") or {}).get("sha256")
        if not selected.get("sha256") or evaluated != selected.get("sha256"):
            return f"record {path} evaluated another checkpoint than its training selected; the job runs again"
    return None


def job_status(job: Job, fingerprints: Mapping[str, str], training_record: dict[str, Any] | None = None) -> JobStatus:
    """The job's status from its state file and outputs (`training_record`: for an evaluation, the record
    of its training when that is done)."""
    try:
        data = read_state(job)
    except UserError as exc:
        return JobStatus(PENDING, problem=str(exc), resumable=unfinished_training(job))
    if data is None:
        adopted = _adoptable_record(job, fingerprints, training_record)
        if adopted is not None:
            return JobStatus(DONE, record=adopted)
        return JobStatus(PENDING, resumable=unfinished_training(job))
    status = data.get("status")
    if data.get("digest") != job.digest:
        return JobStatus(
            PENDING,
            problem=f"{job.state_path} is from a different config of this job; it runs again",
            resumable=False,
            data=data,
        )
    if status == DONE:
        path = Path(str(data.get("record")))
        problem = check_record(job, path, fingerprints, training_record)
        if problem is None:
            return JobStatus(DONE, record=path, data=data)
        return JobStatus(PENDING, problem=problem, resumable=unfinished_training(job), data=data)
    if status == RUNNING and _alive(data):
        return JobStatus(RUNNING, data=data)
    if status == FAILED:
        return JobStatus(FAILED, data=data, resumable=unfinished_training(job))
    return JobStatus(PENDING, resumable=unfinished_training(job), data=data)  # interrupted, or a stale "running"


def plan_status(plan: SweepPlan) -> dict[str, JobStatus]:
    """Every job's status, trainings first (an evaluation is checked against its training's record)."""
    fingerprints = dataset_fingerprints(plan)
    statuses: dict[str, JobStatus] = {}
    training_records: dict[str, dict[str, Any] | None] = {}
    for job in plan.jobs:
        training = None
        if job.kind == EVAL and job.train_id is not None:
            training = training_records.get(job.train_id)
        status = job_status(job, fingerprints, training)
        statuses[job.id] = status
        if job.kind == TRAIN:
            training_records[job.id] = _read(status.record) if status.state == DONE else None
    return statuses


def dataset_fingerprints(plan: SweepPlan) -> dict[str, str]:
    """sha256 of every store given by path that exists (`file_sha256` caches it by size and mtime)."""
    from mmbench.records.fingerprint import file_sha256

    paths = {job.dataset_arg for job in plan.trainings if os.path.isabs(job.dataset_arg)}
    return {path: file_sha256(path) for path in sorted(paths) if os.path.isfile(path)}


def find_record(job: Job, fingerprints: Mapping[str, str], training: dict[str, Any] | None) -> Path | None:
    """The newest record under the job's record folder that is this job's result (run ids sort by time)."""
    return search_records(job, fingerprints, training)[0]


def search_records(
    job: Job, fingerprints: Mapping[str, str], training: dict[str, Any] | None
) -> tuple[Path | None, list[str]]:
    """(`find_record`'s answer, why each newer record was not it)."""
    problems: list[str] = []
    for path in sorted(record_root(job).glob("*/result.json"), reverse=True):
        problem = check_record(job, path, fingerprints, training)
        if problem is None:
            return path, problems
        problems.append(problem)
    return None, problems


def _adoptable_record(job: Job, fingerprints: Mapping[str, str], training: dict[str, Any] | None) -> Path | None:
    if not record_root(job).is_dir():
        return None
    return find_record(job, fingerprints, training)


def _read(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return read_record(path)
    except UserError:
        return None


def _alive(data: Mapping[str, Any]) -> bool:
    """A running state's process is alive: checked for processes on this host; for a job on another host
    (a cluster node) trusted until its `deadline` (start + the executor's time limit) has passed."""
    if data.get("host") != socket.gethostname():
        deadline = data.get("deadline")
        return not isinstance(deadline, (int, float)) or time.time() < deadline
    pid = data.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
