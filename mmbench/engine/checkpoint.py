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
    checkpoint: Mapping[str, Any], classes: list[str], modalities: Mapping[str, int], path: str | Path
) -> None:
    """Refuse a dataset whose classes or modalities differ from the ones the model was trained on."""
    trained = checkpoint["dataset"]
    if list(trained["classes"]) != list(classes):
        raise CheckpointError(
            f"{path} was trained on {trained['name']!r} with {len(trained['classes'])} classes "
            f"({', '.join(trained['classes'])}); this dataset has {len(classes)} ({', '.join(classes)})"
        )
    if dict(trained["modalities"]) != dict(modalities):
        shown = ", ".join(f"{name}:{channels}" for name, channels in trained["modalities"].items())
        given = ", ".join(f"{name}:{channels}" for name, channels in modalities.items())
        raise CheckpointError(
            f"{path} was trained on modalities {shown} (name:channels); the evaluation gives "
            f"{given}; use the same dataset or set protocol.modalities"
        )
