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

A record without a state file (a state write lost) is adopted when it passes 2-4. A job that is not done
here is **reused** from another sweep's output root listed in the suite's `reuse:` when a job there of the
same kind and protocol is done and its record passes 2-4 for this job, its display name (`run.label`)
aside: identical work is not run twice, and the record stays where it was made (`JobStatus.reused_from`
names the other sweep's state file). Statuses: done, failed, pending (never run, interrupted, or its
outputs rejected; `resumable` when an unfinished training left a `last.ckpt`) and running (its process is
alive; a "running" state whose process on this host is gone was interrupted, and counts as pending).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    reused_from: Path | None = None


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


def resume_step(job: Job) -> int | None:
    """The step an unfinished training's newest checkpoint was saved at, from the training-time notes beside
    it (mmbench/engine/train_time.py; no checkpoint is loaded); None when no note says (an older run)."""
    from mmbench.engine.train_time import FILENAME, read_notes

    steps = [
        int(step)
        for ckpt in record_root(job).glob("*/last.ckpt")
        if not (ckpt.parent / "result.json").exists()
        for step in read_notes(ckpt.parent / FILENAME)
        if step.isdigit()
    ]
    return max(steps) if steps else None


def check_record(
    job: Job,
    path: Path,
    fingerprints: Mapping[str, str],
    selected: str | None,
    *,
    any_label: bool = False,
    read: Callable[[Path], dict[str, Any]] = read_record,
) -> str | None:
    """Why the record at `path` is not this job's result, or None when it is (rules 2-4 above); `selected`
    is, for an evaluation, the sha256 of the checkpoint its training selected. `any_label`: the record may
    carry another display name (`run.label`, the other sweep's method config name), as a reused one does.
    `read`: how the record is read (a cached reader when many jobs check the same records)."""
    try:
        record = read(path)
    except UserError as exc:
        return f"record {path} is unreadable ({exc}); the job runs again"
    from mmbench.sweep.planning import comparable

    found, expected = comparable(record.get("config", {})), job.expected_config()
    if any_label:
        found, expected = unlabelled(found), unlabelled(expected)
    if found != expected:
        return f"record {path} was made with a different config; the job runs again (the old record stays)"
    if record.get("seed") != job.seed:
        return f"record {path} has seed {record.get('seed')}, not {job.seed}; the job runs again"
    expected_fingerprint = fingerprints.get(job.dataset_arg)
    if expected_fingerprint is not None and record["dataset"].get("fingerprint") != expected_fingerprint:
        return f"record {path} was made from another version of {job.dataset_arg}; the job runs again"
    if job.kind == EVAL:
        evaluated = (record["method"].get("checkpoint") or {}).get("sha256")
        if not selected or evaluated != selected:
            return f"record {path} evaluated another checkpoint than its training selected; the job runs again"
    return None


def unlabelled(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without its display name (`run.label`): what two sweeps' identical jobs have in common."""
    return {**config, "run": {key: value for key, value in config.get("run", {}).items() if key != "label"}}


def job_status(
    job: Job, fingerprints: Mapping[str, str], selected: str | None = None, reuse: Sequence[Path] = ()
) -> JobStatus:
    """The job's status from its state file and outputs (`selected`: for an evaluation, the sha256 of the
    checkpoint its training selected, when that training is done), or from an identical finished job of a
    sweep under one of the `reuse` roots."""
    status = _own_status(job, fingerprints, selected)
    if status.state == DONE and status.data.get("reused_from"):  # reused by an earlier run of this sweep
        status.reused_from = Path(str(status.data["reused_from"]))
    if status.state in (DONE, RUNNING) or not reuse:
        return status
    found = reusable_record(job, fingerprints, selected, reuse)
    if found is None:
        return status
    path, state_file = found
    return JobStatus(DONE, record=path, data=record_facts(path), reused_from=state_file)


def reusable_record(
    job: Job, fingerprints: Mapping[str, str], selected: str | None, roots: Sequence[Path]
) -> tuple[Path, Path] | None:
    """(record, state file) of a done job of the same kind and protocol under one of `roots` (laid out as
    `<root>/<dataset>/<config name>/seed<S>/`) whose record passes every check for this job, its display
    name (`run.label`) aside; None if none. The record's config is compared, not the state's digest, because
    the digest covers the display name, which differs between a board's row and a study's cell."""
    for root in roots:
        for state_file in sorted(Path(root).glob(f"*/*/seed{job.seed}/{job.state_path.name}")):
            try:
                data = json.loads(state_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(data, dict) or data.get("status") != DONE or not data.get("record"):
                continue
            path = Path(str(data["record"]))
            path = path if path.is_absolute() else state_file.parent / path
            if check_record(job, path, fingerprints, selected, any_label=True, read=_read_slim_record) is None:
                return path, state_file
    return None


_SLIM_RECORDS: dict[tuple[str, int, int], dict[str, Any]] = {}


def _read_slim_record(path: Path) -> dict[str, Any]:
    """The fields of a record that `check_record` reads, parsed once per (path, size, mtime): every pending
    job of a plan checks the same candidate records under `reuse:`, a few hundred kilobytes of JSON each.
    A rewritten record has a new stamp and is read again."""
    try:
        stat = path.stat()
    except OSError:
        return read_record(path)  # missing: read_record says so as a UserError
    stamp = (str(path), stat.st_size, stat.st_mtime_ns)
    if stamp not in _SLIM_RECORDS:
        record = read_record(path)
        _SLIM_RECORDS[stamp] = {
            "config": record.get("config", {}),
            "seed": record.get("seed"),
            "dataset": {"fingerprint": record["dataset"].get("fingerprint")},
            "method": {"checkpoint": {"sha256": (record["method"].get("checkpoint") or {}).get("sha256")}},
        }
    return _SLIM_RECORDS[stamp]


def _own_status(job: Job, fingerprints: Mapping[str, str], selected: str | None) -> JobStatus:
    try:
        data = read_state(job)
    except UserError as exc:
        return JobStatus(PENDING, problem=str(exc), resumable=unfinished_training(job))
    if data is None:
        adopted = _adoptable_record(job, fingerprints, selected)
        if adopted is not None:
            return JobStatus(DONE, record=adopted, data=record_facts(adopted))
        return JobStatus(PENDING, resumable=unfinished_training(job))
    status = data.get("status")
    if data.get("digest") != job.digest:
        # The state was written for another plan of this job (the suite changed, or how digests are made);
        # a record that passes every check is still this job's result.
        adopted = _adoptable_record(job, fingerprints, selected)
        if adopted is not None:
            return JobStatus(DONE, record=adopted, data=record_facts(adopted))
        return JobStatus(
            PENDING,
            problem=f"{job.state_path} is from a different config of this job; it runs again",
            resumable=unfinished_training(job),
            data=data,
        )
    if status == DONE:
        path = state_record_path(job, data)
        if _unchanged_since_checked(job, path, data, fingerprints, selected):
            return JobStatus(DONE, record=path, data=data)
        problem = check_record(job, path, fingerprints, selected)
        if problem is None:
            return JobStatus(DONE, record=path, data={**data, **record_facts(path)})
        return JobStatus(PENDING, problem=problem, resumable=unfinished_training(job), data=data)
    if status == RUNNING and _alive(data):
        return JobStatus(RUNNING, data=data)
    if status == FAILED:
        return JobStatus(FAILED, data=data, resumable=unfinished_training(job))
    return JobStatus(PENDING, resumable=unfinished_training(job), data=data)  # interrupted, or a stale "running"


def write_reused_states(plan: SweepPlan, statuses: Mapping[str, JobStatus]) -> None:
    """Give each reused job a state file of its own (done, the other sweep's record by absolute path,
    `reused_from`), so its evaluations find the checkpoint and tools reading state files find the record.
    Called when a sweep starts running, never by --status or --dry-run."""
    for job in plan.jobs:
        status = statuses[job.id]
        if status.reused_from is None or status.record is None or status.data.get("reused_from"):
            continue  # not reused, or its state file already says so
        write_state(
            job, status=DONE, record=str(status.record.resolve()), reused_from=str(status.reused_from), **status.data
        )


def plan_status(plan: SweepPlan) -> dict[str, JobStatus]:
    """Every job's status, trainings first (an evaluation is checked against its training's checkpoint)."""
    fingerprints = dataset_fingerprints(plan)
    statuses: dict[str, JobStatus] = {}
    selected: dict[str, str | None] = {}
    for job in plan.jobs:
        status = job_status(
            job, fingerprints, selected.get(str(job.train_id)) if job.kind == EVAL else None, plan.suite.reuse
        )
        statuses[job.id] = status
        if job.kind == TRAIN:
            selected[job.id] = status.data.get("checkpoint_sha256") if status.state == DONE else None
    return statuses


def record_facts(path: Path) -> dict[str, Any]:
    """What a state file keeps of its record so that later checks need not read it again: the file's size
    and mtime when it was checked, the dataset fingerprint, the checkpoint's sha256 (selected by a
    training, evaluated by an evaluation) and the timings (cost estimates)."""
    try:
        record = read_record(path)
    except UserError:
        return {}
    stat = path.stat()
    timing = record.get("timing") or {}
    return {
        "record_stat": [stat.st_size, stat.st_mtime_ns],
        "fingerprint": record["dataset"].get("fingerprint"),
        "checkpoint_sha256": (record["method"].get("checkpoint") or {}).get("sha256"),
        "timing": {key: timing.get(key) for key in ("total_s", "train_s", "segment_train_s", "steps_per_s", "eval_s")},
    }


def state_record_path(job: Job, data: Mapping[str, Any]) -> Path:
    """State files name their record relative to the job folder (a moved output root stays valid)."""
    path = Path(str(data.get("record")))
    return path if path.is_absolute() else job.out_dir / path


def _unchanged_since_checked(
    job: Job, path: Path, data: Mapping[str, Any], fingerprints: Mapping[str, str], selected: str | None
) -> bool:
    """The record was fully checked when the job finished and its file has not changed since: same size and
    mtime, the store's fingerprint and (evaluations) the training's checkpoint still those it recorded."""
    try:
        stat = path.stat()
    except OSError:
        return False
    if data.get("record_stat") != [stat.st_size, stat.st_mtime_ns]:
        return False
    expected = fingerprints.get(job.dataset_arg)
    if expected is not None and data.get("fingerprint") != expected:
        return False
    return job.kind != EVAL or (selected is not None and data.get("checkpoint_sha256") == selected)


class StoreFingerprints(Mapping[str, str]):
    """sha256 of the stores given by path, each hashed the first time a check needs it (`file_sha256`
    caches it by size and mtime): a plan with nothing done yet never reads a store."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = sorted({path for path in paths if os.path.isabs(path)})
        self._known: dict[str, str] = {}

    def __getitem__(self, path: str) -> str:
        if path not in self._known:
            if path not in self._paths or not os.path.isfile(path):
                raise KeyError(path)
            from mmbench.records.fingerprint import file_sha256

            self._known[path] = file_sha256(path)
        return self._known[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def dataset_fingerprints(plan: SweepPlan) -> StoreFingerprints:
    """The fingerprints of the plan's stores given by path (hashed when first needed)."""
    return StoreFingerprints(job.dataset_arg for job in plan.trainings)


def find_record(job: Job, fingerprints: Mapping[str, str], selected: str | None) -> Path | None:
    """The newest record under the job's record folder that is this job's result (run ids sort by time)."""
    return search_records(job, fingerprints, selected)[0]


def search_records(job: Job, fingerprints: Mapping[str, str], selected: str | None) -> tuple[Path | None, list[str]]:
    """(`find_record`'s answer, why each newer record was not it)."""
    problems: list[str] = []
    for path in sorted(record_root(job).glob("*/result.json"), reverse=True):
        problem = check_record(job, path, fingerprints, selected)
        if problem is None:
            return path, problems
        problems.append(problem)
    return None, problems


def _adoptable_record(job: Job, fingerprints: Mapping[str, str], selected: str | None) -> Path | None:
    if not record_root(job).is_dir():
        return None
    return find_record(job, fingerprints, selected)


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
