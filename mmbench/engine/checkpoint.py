"""Checkpoints: a trained model plus everything needed to evaluate it without guessing.

A checkpoint names the method (and version), the resolved config it was built with, and the dataset
it was trained on (name, fingerprint, classes, modalities with channel counts, ignore index), so that
`mmbench eval` can rebuild the model and refuse a dataset it does not fit. Written atomically;
loaded with `weights_only=True` (plain containers and tensors only: no code runs on load).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmbench.atomic import atomic_output
from mmbench.errors import UserError

CHECKPOINT_FORMAT = "mmbench-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED = ("format", "version", "method", "config", "dataset", "model")


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, of another format, or does not fit the dataset."""


class WriteFailed(UserError):
    """A file of a run could not be written (full disk, quota, read-only folder): the user frees space or picks
    another folder. `resumable`: the run's folder keeps what it had (mmbench/runs/run_dir.py marks it
    interrupted, not failed), so `--resume` continues it."""

    resumable = True


def save_checkpoint(
    path: str | Path,
    *,
    method: Mapping[str, Any],
    config: Mapping[str, Any],
    dataset: Mapping[str, Any],
    model: torch.nn.Module,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """`method` = {name, version}; `dataset` = {name, fingerprint, classes, modalities {name: channels},
    ignore_index}; `extra` holds training state (optimizer, scheduler, step, RNG states)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "method": dict(method),
        "config": dict(config),
        "dataset": dict(dataset),
        "model": model.state_dict(),
        **dict(extra or {}),
    }
    with atomic_output(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def annotate_checkpoint(path: str | Path, key: str, value: Any) -> Path:
    """Add (or replace) one top-level entry of an existing checkpoint, atomically.

    The training engine adds `training` = {total_steps, selected_step, validation_curve} to the checkpoint it
    selected once training has ended: only then are they known, and `mmbench eval` copies them into its record
    (mmbench/runs/checkpoint_eval.py)."""
    if key in REQUIRED:
        raise ValueError(f"checkpoint entry {key!r} is written by save_checkpoint, not annotated")
    payload = load_checkpoint(path)
    payload[key] = value
    with atomic_output(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def training_facts(payload: Mapping[str, Any]) -> dict[str, Any]:
    """`total_steps`, `selected_step` and `validation_curve` of a loaded checkpoint, each null when the checkpoint
    does not say (checkpoints written before these were saved, or one not selected by a finished training)."""
    training = payload.get("training")
    training = training if isinstance(training, Mapping) else {}
    state = payload.get("state")
    step = training.get("selected_step", state.get("step") if isinstance(state, Mapping) else None)
    curve = training.get("validation_curve")
    return {
        "selected_step": int(step) if step is not None else None,
        "total_steps": int(training["total_steps"]) if training.get("total_steps") is not None else None,
        "validation_curve": [dict(point) for point in curve] if isinstance(curve, list) else None,
    }


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        inside = [name for name in ("best.ckpt", "last.ckpt") if (path / name).is_file()]
        example = f" such as {path / inside[0]}" if inside else ""
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory; give a .ckpt file{example}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; give a file written by 'mmbench run'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); it is truncated or not a "
            "checkpoint"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an mmbench checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if int(payload.get("version", -1)) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload['version']} is newer than this mmbench reads "
            f"({CHECKPOINT_VERSION}); upgrade mmbench"
        )
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}; it is incomplete")
    return payload


def check_dataset_fits(
    checkpoint: Mapping[str, Any],
    classes: list[str],
    modalities: Mapping[str, int],
    path: str | Path,
    available: Mapping[str, int] | None = None,
) -> None:
    """Refuse a dataset whose classes or modalities differ from the ones the model was trained on.

    `modalities`: those the protocol selected, with their channel counts; `available`: all of the store's. The
    message says what can fix it: `protocol.modalities` only when the store has every trained modality with
    the trained channel count (selecting them then fits), else a store like the one the model was trained on."""
    trained = checkpoint["dataset"]
    if list(trained["classes"]) != list(classes):
        raise CheckpointError(
            f"{path} was trained on {trained['name']!r} with {len(trained['classes'])} classes "
            f"({', '.join(trained['classes'])}); this dataset has {len(classes)} ({', '.join(classes)})"
        )
    wanted = {str(name): int(channels) for name, channels in dict(trained["modalities"]).items()}
    if wanted != dict(modalities):
        shown = ", ".join(f"{name}:{channels}" for name, channels in wanted.items())
        given = ", ".join(f"{name}:{channels}" for name, channels in modalities.items())
        store = dict(available if available is not None else modalities)
        lacking = [name for name in wanted if name not in store]
        other = [name for name in wanted if name in store and store[name] != wanted[name]]
        if lacking:
            fix = (
                f"this store lacks {', '.join(lacking)}, which no protocol setting can add; evaluate on a store "
                f"with {', '.join(wanted)}, like the one it was trained on ({trained['name']!r})"
            )
        elif other:
            fix = (
                f"{other[0]} has {store[other[0]]} channels in this store, {wanted[other[0]]} in training; evaluate "
                f"on a store like the one it was trained on ({trained['name']!r})"
            )
        else:
            fix = f"select them with --set protocol.modalities=[{','.join(wanted)}]"
        raise CheckpointError(
            f"{path} was trained on modalities {shown} (name:channels); the evaluation gives {given}; {fix}"
        )
