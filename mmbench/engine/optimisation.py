"""One optimiser and its update: AdamW without weight decay on norms and biases, linear warm-up then
polynomial decay, the AMP loss scaler, gradient accumulation over micro-batches, clipping, and the logged
terms averaged over ranks. The update rules of engine/update.py own one of these (two for adversarial methods).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmbench.engine.losses import TrainingLoss
from mmbench.engine.speed import fused_optimizer
from mmbench.errors import ConfigError


def lr_factor(step: int, settings: Mapping[str, Any]) -> float:
    """Linear warm-up from `warmup_start_factor`, then polynomial decay to `min_lr`/`lr` at the end."""
    warmup, total = settings["warmup_iterations"], settings["iterations"]
    floor = settings["min_lr"] / settings["lr"] if settings["lr"] else 0.0
    if step < warmup:
        start = settings["warmup_start_factor"]
        return start + (1 - start) * step / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return floor + (1 - floor) * (1 - min(progress, 1.0)) ** settings["poly_power"]


def amp_dtype(device: str, amp: str) -> torch.dtype | None:
    """The autocast dtype of `method.train.amp` on `device`; None: full precision (`amp: off`).

    Mixed precision is CUDA only (engine/losses.py autocasts on CUDA): on another device bf16 or fp16 would
    train in full precision while the record's config said otherwise, so it is refused before training."""
    if amp == "off":
        return None
    if not device.startswith("cuda"):
        raise ConfigError(
            f"method.train.amp={amp!r}: mixed precision is CUDA only and this run is on {device}; set "
            "method.train.amp=off, or run on a GPU (--device cuda)"
        )
    return torch.bfloat16 if amp == "bf16" else torch.float16


@dataclass
class Optimisation:
    """One optimiser with its schedule, loss scaler and parameters, for one phase ("main" or "adversary")."""

    phase: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    parameters: list[torch.nn.Parameter]
    grad_clip: float

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    def step(self, step: int, batches: Sequence[Mapping[str, Any]], loss: TrainingLoss) -> dict[str, float]:
        """One optimiser step over the micro-batches of `step`; returns each term's mean (over micro-batches
        and ranks)."""
        accumulate = len(batches)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            terms = loss(batch, step=step, micro=micro, accumulate=accumulate, phase=self.phase)
            value = terms["loss"] / accumulate
            if not value.requires_grad:  # nothing to learn here (say, no sample had a modality withheld), but every
                # rank must run backward for DDP: a zero gradient through this phase's parameters
                value = value + sum(parameter.sum() for parameter in self.parameters) * 0.0
            self.scaler.scale(value).backward() if self.scaler.is_enabled() else value.backward()
            for name, term in terms.items():
                totals[name] = totals.get(name, 0.0) + float(term.detach()) / accumulate
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if loss.dist.enabled:
            reduced = loss.dist.all_reduce_sum(torch.tensor(list(totals.values()), dtype=torch.float64))
            totals = dict(zip(totals, (reduced / loss.dist.world_size).tolist(), strict=True))
        return totals


def build_optimisation(
    phase: str,
    named: Sequence[tuple[str, torch.nn.Parameter]],
    settings: Mapping[str, Any],
    *,
    schedule: Mapping[str, Any],
    amp: torch.dtype | None,
) -> Optimisation:
    """AdamW over `named` with `settings`' lr, betas and weight decay; the schedule's shape (warm-up, decay,
    length), the clipping norm and the AdamW kernel (`fused_optimizer`) come from `schedule`, the main
    `method.train` section, whatever the phase."""
    decay, no_decay = [], []
    for name, parameter in named:
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": settings["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=settings["lr"], betas=tuple(settings["betas"]), fused=fused_optimizer(schedule)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, schedule))
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    parameters = [parameter for _, parameter in named]
    return Optimisation(phase, optimizer, scheduler, scaler, parameters, schedule["grad_clip"])
