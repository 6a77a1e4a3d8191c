"""Training checkpoints and resume: what `last.ckpt`/`best.ckpt` hold beyond the model (optimiser states,
step, best validation score, every RNG state), written by rank 0 only, and restored for `--resume` so that
a resumed run continues exactly where the uninterrupted one would be. The file format is engine/checkpoint.py.
A failed write (full disk: an OSError, or torch.save's RuntimeError over one) is one line (`WriteFailed`) that
names the checkpoint still on disk, or says there is none yet.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.atomic import write_failure_reason
from mmbench.engine.checkpoint import WriteFailed, annotate_checkpoint, load_checkpoint, save_checkpoint
from mmbench.engine.train_time import TrainClock
from mmbench.engine.update import UpdateRule
from mmbench.method import SegmentationMethod
from mmbench.runtime.distributed import DistContext


@dataclass
class TrainState:
    """Where training is: the steps done, the best validation score so far (with its step) and every validation
    score so far (`curve`: [{"step", "score"}], the record's `method.checkpoint.validation_curve`)."""

    step: int = 0
    best_score: float | None = None
    best_step: int | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)


class TrainingCheckpoints:
    """Saves and restores the run's checkpoints in `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        *,
        method: Mapping[str, Any],
        config: Mapping[str, Any],
        dataset: Mapping[str, Any],
        model: SegmentationMethod,
        update: UpdateRule,
        dist: DistContext,
        protocol: Mapping[str, Any] | None = None,
    ) -> None:
        """`method`, `config` and `dataset` are the checkpoint's descriptive entries (engine/checkpoint.py);
        `protocol` ({name, version}) is saved too, so that `--resume` can check it (mmbench/runs/resume_search.py)."""
        self.run_dir = run_dir
        self.method, self.config, self.dataset = method, config, dataset
        self.protocol = dict(protocol) if protocol is not None else None
        self.model, self.update, self.dist = model, update, dist
        self.clock: TrainClock | None = None  # set by the trainer: each save notes the training time so far

    def save(self, name: str, state: TrainState) -> Path | None:
        """Write `run_dir/name` atomically on rank 0 (other ranks write nothing: None)."""
        if not self.dist.is_main:
            return None
        path = self.run_dir / name
        try:
            save_checkpoint(
                path,
                method=self.method,
                config=self.config,
                dataset=self.dataset,
                model=self.model,
                extra=self._payload(state),
            )
            if self.clock is not None:
                self.clock.save(state.step)
        except (OSError, RuntimeError) as exc:
            reason = write_failure_reason(exc)
            if reason is None:
                raise
            raise WriteFailed(f"cannot write checkpoint {path} ({reason}); {self.after_write_failure()}") from exc
        return path

    def after_write_failure(self) -> str:
        """What to do after a failed write: resume from the checkpoint still on disk, or (none written yet)
        run again. Never names a file that is not there."""
        intact = [name for name in ("last.ckpt", "best.ckpt") if (self.run_dir / name).is_file()]
        if intact:
            return f"free disk space, then continue with the same command and --resume ({intact[0]} is intact)"
        return "no checkpoint was written yet: free disk space and run the same command again"

    def annotate(self, path: Path, key: str, value: Any) -> None:
        """`annotate_checkpoint` with a failed write reported as one line (the checkpoint itself is intact)."""
        try:
            annotate_checkpoint(path, key, value)
        except (OSError, RuntimeError) as exc:
            reason = write_failure_reason(exc)
            if reason is None:
                raise
            raise WriteFailed(f"cannot write checkpoint {path} ({reason}); {self.after_write_failure()}") from exc

    def restore(self, path: Path) -> TrainState:
        """Model, optimisers, RNG states and training state from `path`."""
        payload = load_checkpoint(path)
        self.model.load_state_dict(payload["model"])
        self.update.load_state_dict(payload, path)
        restore_rng_state(payload["rng"])
        return TrainState(**payload["state"])

    def load_weights(self, path: Path) -> dict[str, Any]:
        """Only the model's weights (the checkpoint chosen for the final evaluation); returns them as read, so
        that the record's `weights_sha256` hashes what the file holds without reading it again."""
        weights = load_checkpoint(path)["model"]
        self.model.load_state_dict(weights)
        return weights

    def _payload(self, state: TrainState) -> dict[str, Any]:
        payload = {**self.update.state_dict(), "state": vars(state).copy(), "rng": rng_state()}
        if self.protocol is not None:
            payload["protocol"] = self.protocol
        return payload


def rng_state() -> dict[str, Any]:
    """Python's, numpy's, torch's (and CUDA's) global RNG states, loadable with weights_only=True."""
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return _plain(rng)


def restore_rng_state(rng: Mapping[str, Any]) -> None:
    random.setstate(_tuple(rng["python"]))
    np.random.set_state(_tuple(rng["numpy"]))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _plain(value: Any) -> Any:
    """RNG states as plain containers and tensors, loadable with weights_only=True."""
    if isinstance(value, np.ndarray):  # numpy's MT19937 key (uint32), stored as int64
        return torch.from_numpy(value.astype(np.int64))
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _tuple(value: Any) -> Any:
    """Inverse of `_plain` for python's and numpy's RNG state tuples."""
    if isinstance(value, list):
        return tuple(_tuple(item) for item in value)
    if isinstance(value, torch.Tensor):
        return value.numpy().astype(np.uint32)
    return value
