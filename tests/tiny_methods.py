"""Test-only methods for the evaluation engine (registered per test through a temporary dist-info).

`TinyFusion` encodes each modality with its own small CNN and averages the features of the available
modalities (masked with `torch.where`, so NaN-filled missing inputs never leak); it has the split
interface. `TinyFusionPlain` is the same network without it, to compare the engine's two paths.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbench.method import SegmentationMethod
from mmbench.plugins import MethodSpec

SPEC = MethodSpec(
    name="tiny-fusion",
    summary="Test-only late fusion by masked feature averaging.",
    version="1",
    target="tiny_methods:TinyFusion",
    defaults={"width": 8, "kernel": 3},
)
PLAIN_SPEC = MethodSpec(
    name="tiny-fusion-plain",
    summary="tiny-fusion without the split interface.",
    version="1",
    target="tiny_methods:TinyFusionPlain",
    defaults={"width": 8, "kernel": 3},
)


class TinyFusion(SegmentationMethod):
    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        width, kernel = config["width"], config["kernel"]
        self.encoders = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Conv2d(channels, width, kernel, padding=kernel // 2),
                    nn.ReLU(),
                    nn.Conv2d(width, width, kernel, padding=kernel // 2),
                    nn.ReLU(),
                )
                for name, channels in modalities.items()
            }
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def encode(self, name, x):
        return self.encoders[name](x)

    def decode(self, features, available):
        total, count = 0, 0
        for index, name in enumerate(self.modality_names):
            if name not in features:
                continue
            mask = available[:, index].view(-1, 1, 1, 1)
            total = total + torch.where(mask, features[name], 0.0)
            count = count + mask.float()
        return self.head(total / torch.as_tensor(count).clamp_min(1))

    def forward(self, inputs, available):
        features = {name: self.encode(name, inputs[name]) for name in self.modality_names}
        return self.decode(features, available)


class TinyFusionPlain(TinyFusion):
    """Without `encode` the engine cannot use the split interface and runs `forward` per scenario."""

    encode = SegmentationMethod.encode

    def forward(self, inputs, available):
        features = {name: self.encoders[name](inputs[name]) for name in self.modality_names}
        return self.decode(features, available)


TRAIN_DEFAULTS = {
    "iterations": 12,
    "batch_size": 4,
    "crop_size": 32,
    "lr": 0.01,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "warmup_iterations": 2,
    "warmup_start_factor": 0.1,
    "poly_power": 0.9,
    "min_lr": 0.0,
    "grad_clip": 1.0,
    "accumulate": 1,
    "amp": "off",
    "val_every": 4,
    "val_tiles": None,
    "num_workers": 0,
    "augment": True,
    "log_every": 2,
}
TRAINABLE_SPEC = MethodSpec(
    name="tiny-trainable",
    summary="tiny-fusion with a training recipe.",
    version="1",
    target="tiny_methods:TinyFusion",
    defaults={"width": 8, "kernel": 3, "train": TRAIN_DEFAULTS},
)


class TinyDiverging(TinyFusion):
    """Its loss turns NaN at the step named by its config, to test divergence handling."""

    def training_loss(self, batch, info):
        terms = super().training_loss(batch, info)
        if info.step + 1 >= self.config["nan_at_step"]:
            terms["ce"] = terms["loss"] * float("nan")
            terms["loss"] = terms["ce"]
        return terms


DIVERGING_SPEC = MethodSpec(
    name="tiny-diverging",
    summary="Test-only: the loss becomes NaN.",
    version="1",
    target="tiny_methods:TinyDiverging",
    defaults={"width": 8, "kernel": 3, "nan_at_step": 3, "train": TRAIN_DEFAULTS},
)


class TinyAdversarial(TinyFusion):
    """TinyFusion with a discriminator on its class-probability maps (adversarial segmentation), to test
    the engine's alternating update. Each phase logs the sum of the discriminator's weights it saw."""

    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        self.critic = nn.Sequential(
            nn.Conv2d(num_classes, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1)
        )
        self.generator_norm = nn.BatchNorm2d(num_classes)  # running stats: must not move in the adversary phase

    def adversary_modules(self):
        return [self.critic]

    def _probabilities(self, batch):
        logits = self.generator_norm(self(batch["inputs"], batch["available"]))
        return logits, logits.softmax(1)

    def _critic_sum(self):
        return sum(p.detach().sum() for p in self.critic.parameters())

    def adversary_loss(self, batch, info):
        with torch.no_grad():
            _, fake = self._probabilities(batch)
        real = nn.functional.one_hot(batch["label"].clamp(0, self.num_classes - 1), self.num_classes)
        real = real.permute(0, 3, 1, 2).float()
        bce = nn.functional.binary_cross_entropy_with_logits
        real_score, fake_score = self.critic(real), self.critic(fake)
        loss = 0.5 * (bce(real_score, torch.ones_like(real_score)) + bce(fake_score, torch.zeros_like(fake_score)))
        return {"loss": loss, "critic_seen_by_adversary": self._critic_sum()}

    def training_loss(self, batch, info):
        logits, probabilities = self._probabilities(batch)
        ce = nn.functional.cross_entropy(logits, batch["label"], ignore_index=info.ignore_index)
        score = self.critic(probabilities)
        adversarial = nn.functional.binary_cross_entropy_with_logits(score, torch.ones_like(score))
        return {
            "loss": ce + self.config["adversarial_weight"] * adversarial,
            "ce": ce.detach(),
            "critic_seen_by_generator": self._critic_sum(),
        }


ADVERSARIAL_SPEC = MethodSpec(
    name="tiny-adversarial",
    summary="Test-only: adversarial segmentation with an alternating update.",
    version="1",
    target="tiny_methods:TinyAdversarial",
    defaults={
        "width": 8,
        "kernel": 3,
        "adversarial_weight": 0.1,
        "train": {**TRAIN_DEFAULTS, "adversary": {"lr": 0.005, "betas": [0.5, 0.999], "weight_decay": 0.0}},
    },
)
