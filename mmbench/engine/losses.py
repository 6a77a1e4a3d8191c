"""Where a training micro-batch meets the model: the module DDP wraps (the whole loss is its forward), the
`TrainStep` a method keys its randomness on, the autocast and gradient-sync contexts, and the NaN/inf check
that stops a diverging run naming the step and the loss term.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from mmbench.errors import UserError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.runtime.distributed import DistContext
from mmbench.runtime.global_norm import use_global_batch_norm


class TrainingDiverged(UserError):
    """A loss became NaN/inf: the message names the step and the loss term."""


class LossModule(torch.nn.Module):
    """Routes a training batch through `training_loss` (or `adversary_loss`) inside `forward`, where DDP
    expects the work."""

    def __init__(self, model: SegmentationMethod) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Any], info: TrainStep, phase: str = "main") -> dict[str, torch.Tensor]:
        if phase == "adversary":
            return self.model.adversary_loss(batch, info)
        return self.model.training_loss(batch, info)


class TrainingLoss:
    """The loss terms of one micro-batch, computed on this rank (DDP-wrapped when distributed)."""

    def __init__(
        self,
        model: SegmentationMethod,
        *,
        dist: DistContext,
        device: str,
        amp_dtype: torch.dtype | None,
        seed: int,
        ignore_index: int,
        num_classes: int,
        last_checkpoint: Path,
        sync_batch_norm: bool = False,
    ) -> None:
        self.dist = dist
        self.amp_dtype = amp_dtype
        self.seed, self.ignore_index, self.num_classes = seed, ignore_index, num_classes
        self.last_checkpoint = last_checkpoint
        # DDP must see the whole training computation in its forward: wrap the loss, not the network.
        self.module: torch.nn.Module = LossModule(model)
        if dist.enabled:
            if sync_batch_norm:  # statistics over the global batch, as in one process (docs/distributed.md)
                use_global_batch_norm(model)
            device_ids = [dist.local_rank] if device.startswith("cuda") else None
            self.module = torch.nn.parallel.DistributedDataParallel(
                self.module, device_ids=device_ids, find_unused_parameters=True
            )

    def __call__(
        self, batch: Mapping[str, Any], *, step: int, micro: int, accumulate: int, phase: str
    ) -> dict[str, torch.Tensor]:
        """Terms of micro-batch `micro` of `step`; gradients are synchronised across ranks on the last one only."""
        autocast: AbstractContextManager[Any] = (
            torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()
        )
        sync: AbstractContextManager[Any] = nullcontext()
        if self.dist.enabled and micro < accumulate - 1:
            sync = self.module.no_sync()
        info = TrainStep(
            step=step, micro=micro, seed=self.seed, ignore_index=self.ignore_index, num_classes=self.num_classes
        )
        with sync, autocast:
            terms = self.module(batch, info, phase)
        for name, value in terms.items():
            if not bool(torch.isfinite(value.detach())):
                label = name if phase == "main" else f"{phase} {name}"
                raise TrainingDiverged(
                    f"loss term {label!r} is {float(value.detach())} at step {step + 1}; lower "
                    "method.train.lr or check the data ('mmbench data verify'); "
                    f"{self._last_checkpoint_note()}"
                )
        return terms

    def _last_checkpoint_note(self) -> str:
        """Name the last checkpoint only if it really is on disk: a run diverging before its first
        `val_every` steps has none, and a message pointing at a missing file sends users looking for it."""
        if self.last_checkpoint.is_file():
            return f"the last good checkpoint is {self.last_checkpoint}"
        return (
            f"no checkpoint was written before it diverged ({self.last_checkpoint.name} is first saved after "
            "method.train.val_every steps)"
        )
