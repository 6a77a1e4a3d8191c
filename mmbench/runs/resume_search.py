"""Which run `--resume` continues, and from which checkpoint.

A run folder is a candidate when it has no record, its status (mmbench/runs/run_dir.py) is not `failed` or
`finished`, and it holds a checkpoint. A candidate is continued only when its checkpoint was made by the same
method (name and version), protocol (name and version; checkpoints from before protocols were saved skip this),
store (fingerprint) and resolved config (all but the `run` section, seed included) as the run asked for:
anything else would silently mix two trainings in one record. When no candidate matches, the error names
what differs for the nearest one (fewest differences, then newest).

Unreadable checkpoints (a disk that filled up, a truncated copy) never block the search: a candidate's
`last.ckpt` that cannot be read is replaced by its `best.ckpt` (the newest intact checkpoint; `note` says so,
and the training log is cut back to its step by mmbench/engine/train_log.py), and a candidate with no readable
checkpoint is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbench.context import RunPlan
from mmbench.engine.checkpoint import CheckpointError, load_checkpoint
from mmbench.errors import UserError
from mmbench.records import RECORD_FILENAME, record_path
from mmbench.runs.run_dir import CHECKPOINTS, read_status


@dataclass(frozen=True)
class ResumePoint:
    """The run folder to continue, the checkpoint to restore, and a note when it is not `last.ckpt`."""

    run_dir: Path
    checkpoint: Path
    note: str | None = None


def runs_root(plan: RunPlan) -> Path:
    """`<out>/<dataset>/<protocol>/<method>`: where this plan's runs are."""
    settings = plan.run_settings
    return record_path(settings["out"], plan.dataset.name, plan.protocol.name, plan.method.name, "x").parent.parent


def find_resume_point(plan: RunPlan, fingerprint: str | None) -> ResumePoint:
    """The newest unfinished run that matches `plan` (and the store's `fingerprint`, when known)."""
    root = runs_root(plan)
    folders = sorted((path for path in root.glob("*") if path.is_dir()), reverse=True) if root.is_dir() else []
    nearest: tuple[int, Path, list[str]] | None = None
    unreadable: list[str] = []
    failed: list[str] = []
    for folder in folders:
        if (folder / RECORD_FILENAME).exists() or not any((folder / name).is_file() for name in CHECKPOINTS):
            continue
        status = read_status(folder) or {}
        if status.get("state") in ("failed", "finished"):
            if status.get("state") == "failed":
                failed.append(f"{folder.name}: {str(status.get('error') or 'failed').split(';')[0]}")
            continue
        loaded = _readable_checkpoint(folder)
        if isinstance(loaded, str):
            unreadable.append(loaded)
            continue
        checkpoint, payload, note = loaded
        differences = differences_from(plan, payload, fingerprint)
        if not differences:
            return ResumePoint(folder, checkpoint, note)
        if nearest is None or len(differences) < nearest[0]:
            nearest = (len(differences), folder, differences)
    if nearest is not None:
        _, folder, differences = nearest
        raise UserError(
            f"cannot resume {folder}: it differs from this run in {'; '.join(differences)}; resume with the "
            "settings it was started with, or run without --resume to start a new run"
        )
    reasons = []
    if failed:
        reasons.append(f"the unfinished runs there failed ({failed[0]}), and a failed run is not resumed")
    if unreadable:
        reasons.append(f"no checkpoint of {unreadable[0]} can be read")
    why = "; ".join(reasons) or "no unfinished run with this exact config"
    raise UserError(f"nothing to resume under {root}: {why}; run without --resume")


def _readable_checkpoint(folder: Path) -> tuple[Path, dict[str, Any], str | None] | str:
    """(checkpoint, payload, note) of the newest readable checkpoint of `folder`, or why none is readable."""
    problems = []
    for name in CHECKPOINTS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            payload = load_checkpoint(path)
        except CheckpointError as exc:
            problems.append((name, " ".join(str(exc).split())))
            continue
        note = None
        if problems:
            step = payload.get("state", {}).get("step") if isinstance(payload.get("state"), Mapping) else None
            note = (
                f"{folder / problems[0][0]} cannot be read; resuming from {name} (step {step}), the newest intact "
                "checkpoint: the steps after it are trained again"
            )
        return path, payload, note
    return f"{folder} ({problems[0][1]})" if problems else str(folder)


def differences_from(plan: RunPlan, payload: Mapping[str, Any], fingerprint: str | None) -> list[str]:
    """What about a checkpoint differs from `plan`, each as one readable phrase (empty: it matches)."""
    found = []
    method = payload.get("method") or {}
    if method.get("name") != plan.method.name:
        found.append(f"method {method.get('name')!r} (now {plan.method.name!r})")
    elif str(method.get("version")) != str(plan.method.version):
        found.append(f"method version {method.get('version')} (now {plan.method.version})")
    protocol = payload.get("protocol")
    if isinstance(protocol, Mapping):
        if protocol.get("name") != plan.protocol.name:
            found.append(f"protocol {protocol.get('name')!r} (now {plan.protocol.name!r})")
        elif str(protocol.get("version")) != str(plan.protocol.version):
            found.append(f"protocol version {protocol.get('version')} (now {plan.protocol.version})")
    trained = (payload.get("dataset") or {}).get("fingerprint")
    if fingerprint is not None and trained is not None and trained != fingerprint:
        where = plan.dataset.path if plan.dataset.path is not None else plan.dataset.name
        found.append(
            f"the store: it was trained on fingerprint {_short(trained)}, {where} has {_short(fingerprint)} "
            "(another store under the same name)"
        )
    then, now = _flat(comparable(payload.get("config") or {})), _flat(comparable(plan.config.data))
    keys = [key for key in sorted(set(then) | set(now)) if then.get(key, _MISSING) != now.get(key, _MISSING)]
    for key in keys[:3]:
        found.append(f"config {key}: {_show(then.get(key, _MISSING))} in the run, {_show(now.get(key, _MISSING))} now")
    if len(keys) > 3:
        found.append(f"{len(keys) - 3} more config keys")
    return found


_MISSING = object()


def _short(fingerprint: Any) -> str:
    """`sha256:0123456789ab` of a long fingerprint: enough to tell two stores apart."""
    algorithm, _, digest = str(fingerprint).rpartition(":")
    return f"{algorithm}:{digest[:12]}" if algorithm else digest[:12]


def _show(value: Any) -> str:
    return "(not set)" if value is _MISSING else repr(value) if isinstance(value, str) else str(value)


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config without its `run` section (output folder, device: where and how, not what), seed kept."""
    return {section: values for section, values in config.items() if section != "run"} | {
        "run": {"seed": (config.get("run") or {}).get("seed")}
    }


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
