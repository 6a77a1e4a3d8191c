"""unimodal: one ResNet+FPN per modality, each trained on its own modality alone.

The lower bound every missing-modality paper compares against. The models share no parameters and
train in one run (the sum of their losses, one optimizer); close to, but not exactly, separate trainings:
the global gradient clip and the fp16 loss scaler act on all of them together (docs/methods/baselines.md).
Under a scenario each sample uses the best of its available models. "Best" is either a
fixed `order`, or (`selection: loss`) the lowest running average of each model's training
cross-entropy, kept as a buffer and so saved in checkpoints: a validation-free proxy for which
single modality carries most information on this dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import FPNDecoder, upsample


class SingleModality(nn.Module):
    def __init__(self, channels: int, num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.encoder = resnet(config["backbone"], in_channels=channels, width=config["width"])
        self.decoder = FPNDecoder(
            self.encoder.channels, config["fpn_channels"], config["decoder_channels"], num_classes
        )

    def forward(self, x: Tensor) -> Tensor:
        return upsample(self.decoder(self.encoder(x)), x.shape[-2:])


class Unimodal(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {"width": 8, "fpn_channels": 16, "decoder_channels": 8}

    @classmethod
    def trains_for_missing(cls, config: Mapping[str, Any]) -> bool:
        """Each model is trained on its own modality alone, so a missing modality never reaches one."""
        return True

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        if config["selection"] not in ("loss", "order"):
            raise ConfigError(f"method.selection={config['selection']!r}: use loss or order")
        if config["selection"] == "order" and sorted(config["order"]) != sorted(modalities):
            raise ConfigError(
                f"method.order={config['order']!r} must list every modality once: {', '.join(modalities)}"
            )
        if not 0.0 <= config["loss_momentum"] < 1.0:
            raise ConfigError(f"method.loss_momentum={config['loss_momentum']}: must be in [0, 1)")
        self.models = nn.ModuleDict(
            {name: SingleModality(channels, num_classes, config) for name, channels in modalities.items()}
        )
        # Running training CE per modality; +inf until trained, so an untrained model is never preferred.
        self.register_buffer("running_loss", torch.full((len(modalities),), float("inf")))

    def ranking(self) -> list[int]:
        """Modality indices, best first."""
        if self.config["selection"] == "order":
            return [self.modality_names.index(name) for name in self.config["order"]]
        losses = self.running_loss.tolist()
        return sorted(range(len(losses)), key=lambda index: (losses[index], index))

    def encode(self, name: str, x: Tensor) -> Tensor:
        return self.models[name](x)  # each model's logits are its "features"

    def decode(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        chosen: Tensor | None = None
        for index in reversed(self.ranking()):  # the best available model is written last and wins
            name = self.modality_names[index]
            if name not in features:
                continue
            logits = features[name]
            mask = available[:, index].view(-1, 1, 1, 1)
            chosen = torch.where(mask, logits, torch.zeros_like(logits) if chosen is None else chosen)
        if chosen is None:
            raise ValueError("no modality available")
        return chosen

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        features = self.encode_available(inputs, available)
        return self.decode(features, available)

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        total = torch.zeros((), device=batch["label"].device)
        for index, name in enumerate(self.modality_names):
            ce = F.cross_entropy(
                self.models[name](batch["inputs"][name]), batch["label"], ignore_index=info.ignore_index
            )
            total = total + ce
            terms[f"ce_{name}"] = ce.detach()
            with torch.no_grad():
                previous = self.running_loss[index]
                momentum = self.config["loss_momentum"]
                self.running_loss[index] = torch.where(
                    torch.isinf(previous), ce.detach(), momentum * previous + (1 - momentum) * ce.detach()
                )
        return {"loss": total, **terms}
