"""How one training step updates the parameters, as a strategy chosen once from the method: `PlainUpdate`
steps one optimiser; `AdversarialUpdate` (methods whose `adversary_modules()` returns discriminators) first
steps the discriminators on the step's micro-batches, then the rest of the model against them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from mmbench.engine.losses import TrainingLoss
from mmbench.engine.optimisation import Optimisation, build_optimisation
from mmbench.engine.settings import adversary_settings
from mmbench.errors import UserError
from mmbench.method import SegmentationMethod


class UpdateRule(Protocol):
    """A training step's parameter update and the optimiser state it checkpoints."""

    main: Optimisation

    def step(self, step: int, batches: Sequence[Mapping[str, Any]], loss: TrainingLoss) -> dict[str, float]:
        """Update on the micro-batches of `step`; returns the terms to log."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The optimisers' states, as checkpoint payload entries."""
        ...

    def load_state_dict(self, payload: Mapping[str, Any], path: Path) -> None:
        """Restore from the payload of checkpoint `path`."""
        ...


class PlainUpdate:
    """One optimiser over every trainable parameter."""

    def __init__(self, main: Optimisation) -> None:
        self.main = main

    def step(self, step: int, batches: Sequence[Mapping[str, Any]], loss: TrainingLoss) -> dict[str, float]:
        return self.main.step(step, batches, loss)

    def state_dict(self) -> dict[str, Any]:
        return self.main.state_dict()

    def load_state_dict(self, payload: Mapping[str, Any], path: Path) -> None:
        self.main.load_state_dict(payload)


class AdversarialUpdate:
    """The alternating update of pix2pix-style training: the discriminators' optimiser steps first on the
    step's micro-batches (the generator's normalisation statistics frozen, so its extra forward leaves no
    trace), then the main optimiser on the same micro-batches, so the generator is trained against the
    discriminators just updated. The adversary's terms are logged with `adversary_` names."""

    def __init__(self, main: Optimisation, adversary: Optimisation, model: SegmentationMethod) -> None:
        self.main, self.adversary, self.model = main, adversary, model

    def step(self, step: int, batches: Sequence[Mapping[str, Any]], loss: TrainingLoss) -> dict[str, float]:
        with frozen_running_stats(self.model, exclude=self.model.adversary_modules()):
            terms = self.adversary.step(step, batches, loss)
        adversary_terms = {("adversary_loss" if name == "loss" else name): value for name, value in terms.items()}
        return {**self.main.step(step, batches, loss), **adversary_terms}

    def state_dict(self) -> dict[str, Any]:
        return {**self.main.state_dict(), "adversary": self.adversary.state_dict()}

    def load_state_dict(self, payload: Mapping[str, Any], path: Path) -> None:
        self.main.load_state_dict(payload)
        if "adversary" not in payload:
            raise UserError(
                f"{path} holds no discriminator optimizer state; it was not written by this method's "
                "adversarial training: start a new run instead of --resume"
            )
        self.adversary.load_state_dict(payload["adversary"])


def build_update_rule(
    model: SegmentationMethod, settings: Mapping[str, Any], method: str, *, amp: torch.dtype | None
) -> PlainUpdate | AdversarialUpdate:
    """The rule `model` needs: adversarial when it has adversary parameters (optimised with `train.adversary`,
    never by the main optimiser), plain otherwise."""
    adversary = model.adversary_parameters()
    held_out = {id(parameter) for parameter in adversary}
    main = [
        (name, parameter)
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and id(parameter) not in held_out
    ]
    main_optimisation = build_optimisation("main", main, settings, schedule=settings, amp=amp)
    if not adversary:
        return PlainUpdate(main_optimisation)
    section = adversary_settings(settings, method)
    named = [(name, parameter) for name, parameter in model.named_parameters() if id(parameter) in held_out]
    adversary_optimisation = build_optimisation("adversary", named, {**settings, **section}, schedule=settings, amp=amp)
    return AdversarialUpdate(main_optimisation, adversary_optimisation, model)


@contextmanager
def frozen_running_stats(model: torch.nn.Module, exclude: Sequence[torch.nn.Module] = ()) -> Iterator[None]:
    """Normalisation layers of `model` (outside `exclude`) keep their running statistics through the block.

    The adversary phase runs the generator once more in training mode; its batch statistics must not
    count twice. Buffers are restored exactly (copy back), not merely left unupdated.
    """
    excluded = {id(module) for root in exclude for module in root.modules()}
    saved = []
    for module in model.modules():
        if id(module) in excluded or not getattr(module, "track_running_stats", False):
            continue
        buffers = [getattr(module, name) for name in ("running_mean", "running_var", "num_batches_tracked")]
        saved.extend((buffer, buffer.clone()) for buffer in buffers if isinstance(buffer, torch.Tensor))
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
