"""Test-only methods that each break one rule of the method contract (docs/checking.md), plus one that keeps
it, and a protocol whose scenario names a modality the dataset lacks. Registered per test through a temporary
dist-info (tests/test_contracts.py, tests/test_plugin_errors.py), so errors can be checked to name the plugin's
distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.method import SegmentationMethod
from mmbench.plugins import MethodSpec, ProtocolSpec
from mmbench.protocol import Protocol, Scenario, scenario_name, summary

TRAIN = {
    "iterations": 4,
    "batch_size": 2,
    "crop_size": 32,
    "lr": 0.01,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "warmup_iterations": 1,
    "warmup_start_factor": 0.1,
    "poly_power": 0.9,
    "min_lr": 0.0,
    "grad_clip": 1.0,
    "accumulate": 1,
    "amp": "off",
    "val_every": 2,
    "val_tiles": 1,
    "num_workers": 0,
    "augment": False,
    "log_every": 2,
}


class Keeper(SegmentationMethod):
    """Keeps the contract: per-modality convolutions, missing inputs masked with torch.where."""

    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        self.encoders = nn.ModuleDict({name: nn.Conv2d(c, 4, 3, padding=1) for name, c in modalities.items()})
        self.head = nn.Conv2d(4, self.head_classes(num_classes), 1)

    def head_classes(self, num_classes):
        return num_classes

    def features(self, inputs, available):
        total = 0
        for index, name in enumerate(self.modality_names):
            mask = available[:, index].view(-1, 1, 1, 1)
            total = total + torch.where(mask, self.encoders[name](torch.where(mask, inputs[name], 0.0)), 0.0)
        return total

    def forward(self, inputs, available):
        return self.head(self.features(inputs, available))


class WrongSize(Keeper):
    def forward(self, inputs, available):
        return F.avg_pool2d(super().forward(inputs, available), 2)  # forgot to upsample


class Labels(Keeper):
    def forward(self, inputs, available):
        return super().forward(inputs, available).argmax(1)  # labels, not logits


class WrongClasses(Keeper):
    def head_classes(self, num_classes):
        return 3  # a hard-coded class count


class NanLogits(Keeper):
    def forward(self, inputs, available):
        logits = super().forward(inputs, available)
        return logits / torch.zeros_like(logits)  # 0/0 and x/0: NaN and inf


class Leaky(Keeper):
    def features(self, inputs, available):
        total = 0
        for index, name in enumerate(self.modality_names):
            mask = available[:, index].view(-1, 1, 1, 1).float()
            total = total + self.encoders[name](inputs[name] * mask)  # NaN * 0 is NaN: the missing input leaks
        return total


class Noisy(Keeper):
    def forward(self, inputs, available):
        logits = super().forward(inputs, available)
        return logits + torch.rand_like(logits)  # samples in eval mode too


class Raising(Keeper):
    def forward(self, inputs, available):
        raise ValueError("plugin bug in forward")


class RaisingInTraining(Keeper):
    def training_loss(self, batch, info):
        return {"loss": batch["no such key"]}  # KeyError inside the plugin, after the contract check passed


class UnusedBranch(Keeper):
    """Keeps the contract, but one of its parameters never gets a gradient: a warning, not a failure."""

    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        self.unused = nn.Conv2d(4, 4, 1)


class CountsCalls(Keeper):
    """Changes a buffer on every forward, in eval mode too."""

    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, inputs, available):
        self.calls += 1
        return super().forward(inputs, available)


class UnsavedScale(Keeper):
    """Uses a random tensor that is neither a parameter nor a buffer: a checkpoint does not restore it."""

    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        self.scale = torch.rand(()) + 0.5

    def forward(self, inputs, available):
        return super().forward(inputs, available) * self.scale


def _spec(name: str, target: str) -> MethodSpec:
    return MethodSpec(
        name=name,
        summary=f"Test-only: {name}.",
        version="1",
        target=f"broken_methods:{target}",
        defaults={"train": TRAIN},
    )


KEEPER = _spec("keeper", "Keeper")
WRONG_SIZE = _spec("wrong-size", "WrongSize")
LABELS = _spec("labels", "Labels")
WRONG_CLASSES = _spec("wrong-classes", "WrongClasses")
NAN_LOGITS = _spec("nan-logits", "NanLogits")
LEAKY = _spec("leaky", "Leaky")
NOISY = _spec("noisy", "Noisy")
RAISING = _spec("raising", "Raising")
RAISING_IN_TRAINING = _spec("raising-in-training", "RaisingInTraining")
UNUSED_BRANCH = _spec("unused-branch", "UnusedBranch")
COUNTS_CALLS = _spec("counts-calls", "CountsCalls")
UNSAVED_SCALE = _spec("unsaved-scale", "UnsavedScale")

#: registered name -> (entry point value, the rule `mmbench check` must report broken)
BROKEN = {
    "wrong-size": ("broken_methods:WRONG_SIZE", "logits-shape"),
    "labels": ("broken_methods:LABELS", "logits-type"),
    "wrong-classes": ("broken_methods:WRONG_CLASSES", "class-count"),
    "nan-logits": ("broken_methods:NAN_LOGITS", "finite-logits"),
    "leaky": ("broken_methods:LEAKY", "no-leak"),
    "noisy": ("broken_methods:NOISY", "eval-determinism"),
    "raising": ("broken_methods:RAISING", "forward"),
}


class WithLidar(Protocol):
    """Every modality, then a scenario for a modality whatever the dataset has: 'lidar only'."""

    name = "with-lidar"

    def scenarios(self, modalities, context):
        return [
            Scenario(scenario_name(tuple(modalities)), tuple(modalities)),
            Scenario("lidar only", ("lidar",), missing=len(modalities)),
        ]

    def aggregate(self, results, modalities, context):
        return {"mean": summary([entry["metrics"]["miou"] for entry in results])["mean"]}


WITH_LIDAR = ProtocolSpec(
    name="with-lidar",
    summary="Test-only: a scenario naming a modality the dataset lacks.",
    version="1",
    target="broken_methods:WithLidar",
    defaults="mmbench.protocols:_base_protocol.yaml",
)

ENTRY_POINTS = {
    "mmbench.methods": {
        "keeper": "broken_methods:KEEPER",
        "raising-in-training": "broken_methods:RAISING_IN_TRAINING",
        **{name: value for name, (value, _) in BROKEN.items()},
    },
    "mmbench.protocols": {"with-lidar": "broken_methods:WITH_LIDAR"},
}
