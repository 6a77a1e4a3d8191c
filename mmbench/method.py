"""The method interface: what a segmentation method must implement to be trained and evaluated.

A method is a `torch.nn.Module` that maps a dict of modality tensors (B, C_m, H, W) and a boolean
availability mask (B, M) to logits (B, K, H, W). The availability is per sample: one batch may mix
scenarios (random-drop protocols do). The tensor of a missing modality is always present, with the
right shape, but holds no information: the engine fills it with zeros, and the tests with NaN to prove
that a method never reads it (use `torch.where(mask, x, 0)`, never `x * mask`, which keeps NaN).

Optional split interface, for speed: `encode(name, x)` runs one modality's encoder and `decode(features,
available)` fuses and predicts. When a method provides both, the evaluation engine encodes each modality
once per window and decodes once per scenario, instead of running the whole network per scenario.
`docs/adding-a-method.md` walks through a complete example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.errors import ConfigError, PluginError
from mmbench.plugins import MethodSpec

Features = Any  # a tensor, or a (nested) list/tuple/dict of tensors with the batch on dimension 0


@dataclass(frozen=True)
class TrainStep:
    """Where a training step is: methods key their own randomness (modality sampling, pixel sampling) on it."""

    step: int
    micro: int
    seed: int
    ignore_index: int
    num_classes: int


class SegmentationMethod(nn.Module):
    """Base class of every method. `modalities` maps modality name to channel count, in dataset order."""

    #: Overrides of the method's defaults that make it small enough for fast tests (narrow widths, few
    #: blocks); the registry-parametrized tests build every built-in method with them. Empty: the defaults.
    tiny_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.modalities = dict(modalities)
        self.modality_names = tuple(modalities)
        self.num_classes = int(num_classes)
        self.config = dict(config)

    def forward(self, inputs: Mapping[str, torch.Tensor], available: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, name: str, x: torch.Tensor) -> Features:
        """Features of one modality (split interface); batch on dimension 0."""
        raise NotImplementedError

    def decode(self, features: Mapping[str, Features], available: torch.Tensor) -> torch.Tensor:
        """Logits from the features of the modalities available to at least one sample of the batch.

        A modality missing for every sample is absent from `features`; rows of samples for which a present
        modality is missing hold the engine's fill value and must not be used.
        """
        raise NotImplementedError

    def encode_available(self, inputs: Mapping[str, torch.Tensor], available: torch.Tensor) -> dict[str, Features]:
        """`encode` of every modality that at least one sample of the batch has (the split interface's
        `features` argument); modalities missing for the whole batch are never run."""
        return {
            name: self.encode(name, inputs[name])
            for index, name in enumerate(self.modality_names)
            if bool(available[:, index].any())
        }

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, torch.Tensor]:
        """Loss terms of one training batch; "loss" is the total that is optimised, the others are logged.

        The default trains `forward` with pixel cross-entropy on the availability of
        `training_availability`; methods with several branches or auxiliary losses override it.
        """
        available = self.training_availability(batch, info)
        logits = self(batch["inputs"], available)
        ce = F.cross_entropy(logits, batch["label"], ignore_index=info.ignore_index)
        return {"loss": ce, "ce": ce.detach()}

    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> torch.Tensor:
        """Which modalities each training sample gets; default: all (complete data)."""
        return batch["available"]

    @classmethod
    def trains_for_missing(cls, config: Mapping[str, Any]) -> bool:
        """Whether training shows the model missing modalities: the record's `method.trained_for_missing`,
        which boards mark, so a method trained only on complete data is not ranked unmarked on
        missing-modality tables. Derived from the method's sampler (`missing_sampler` or `sampler`: any
        value but "all" draws missing patterns); without one, training uses complete data (the default
        `training_availability`). A method that is robust by construction overrides it."""
        for key in ("missing_sampler", "sampler"):
            if key in config:
                return config[key] != "all"
        return False

    # -- adversarial training (optional) -----------------------------------------------------------
    def adversary_modules(self) -> list[nn.Module]:
        """Discriminators that the engine trains by an alternating update; default: none.

        Their parameters get their own optimizer (`train.adversary`) and never enter the main one. Each
        training step first runs `adversary_loss` on every micro-batch and steps the adversary (the rest of
        the model's normalisation statistics frozen, so the generator's extra forward leaves no trace), then
        runs `training_loss` on the same micro-batches and steps everything else: the generator is trained
        against the discriminator that was just updated, as in pix2pix. The adversary's gradients from
        `training_loss` are discarded.
        """
        return []

    def adversary_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, torch.Tensor]:
        """Discriminator loss of one micro-batch: "loss" is minimised over the adversary's parameters only
        (compute the generator's output under `torch.no_grad()`); the other terms are logged."""
        raise NotImplementedError(f"{type(self).__name__} returns adversary modules but no adversary_loss")

    def adversary_parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for module in self.adversary_modules():
            for parameter in module.parameters():
                if parameter.requires_grad:
                    seen.setdefault(id(parameter), parameter)
        return list(seen.values())

    @property
    def has_split_interface(self) -> bool:
        cls = type(self)
        return cls.encode is not SegmentationMethod.encode and cls.decode is not SegmentationMethod.decode


def build_method(
    spec: MethodSpec, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]
) -> SegmentationMethod:
    """Instantiate a registered method for a dataset, checking the modalities it declares."""
    cls = spec.load()
    if not (isinstance(cls, type) and issubclass(cls, SegmentationMethod)):
        raise PluginError(f"method {spec.name!r}: {spec.target} is not a mmbench.method.SegmentationMethod subclass")
    missing = [name for name in spec.required_modalities if name not in modalities]
    if missing:
        raise ConfigError(
            f"method {spec.name!r} requires modality {missing[0]!r}, which the dataset lacks "
            f"(it has {', '.join(modalities)})"
        )
    if spec.modalities:
        unsupported = [name for name in modalities if name not in spec.modalities]
        if unsupported:
            raise ConfigError(
                f"method {spec.name!r} accepts {', '.join(spec.modalities)}; the dataset also has "
                f"{', '.join(unsupported)}: choose a dataset with a subset of its modalities"
            )
    if len(modalities) < spec.min_modalities:
        raise ConfigError(
            f"method {spec.name!r} needs at least {spec.min_modalities} modalities; the dataset has {len(modalities)}"
        )
    return cls(modalities=modalities, num_classes=num_classes, config=config)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


BUDGET_PROBE_SIZE = 64  # px: divisible by every built-in method's output stride (32)


def parameter_budget(
    model: SegmentationMethod, channels: Mapping[str, int], scenarios: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """What a record needs to compare methods at matched budgets: trainable parameters, the
    discriminators' share (`adversary_modules`, trained but never used at inference), and per scenario
    the parameters *used at inference*: those that receive a non-zero gradient from that scenario's
    logits on a seeded random probe (two 64-px samples, evaluation mode, missing modalities filled with
    zeros, which methods never read). Leaves the weights, statistics and train/eval mode as they were and
    the global RNG untouched; clears gradients (call it outside a training step).
    """
    adversaries = {id(p) for module in model.adversary_modules() for p in module.parameters()}
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    names = list(channels)
    was_training = model.training
    model.eval()
    used: dict[str, int] = {}
    try:
        for scenario in scenarios:
            present = set(scenario["available"])
            inputs = {
                name: (
                    torch.randn(2, c, BUDGET_PROBE_SIZE, BUDGET_PROBE_SIZE, generator=generator)
                    if name in present
                    else torch.zeros(2, c, BUDGET_PROBE_SIZE, BUDGET_PROBE_SIZE)
                ).to(device)
                for name, c in channels.items()
            }
            available = torch.tensor([[name in present for name in names]] * 2, device=device)
            model.zero_grad(set_to_none=True)
            model(inputs, available).float().sum().backward()
            used[scenario["name"]] = sum(
                p.numel() for p in model.parameters() if p.grad is not None and bool(p.grad.ne(0).any())
            )
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {
        "trainable": count_parameters(model),
        "adversary": sum(p.numel() for p in model.parameters() if id(p) in adversaries and p.requires_grad),
        "used_at_inference": used,
    }
