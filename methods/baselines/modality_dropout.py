"""modality-dropout: per-modality ResNet encoders, late fusion, trained on random modality subsets.

The simplest strong baseline of the missing-modality literature: any fusion network trained with
modalities dropped at random (mmFormer's per-sample uniform subsets; one uniform subset per batch,
which is not ShaSpec's per-batch distribution, since ShaSpec draws the subset size first; or
independent Bernoulli drops, all from `mmbench.sampling`). Missing modalities are excluded from
the fusion (`fusion: mean`, a masked mean) or zeroed (`fusion: concat`), never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import (
    FPNDecoder,
    check_sampler,
    masked_concat,
    masked_mean,
    sampled_availability,
    upsample,
)


class ModalityDropout(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {"width": 8, "fpn_channels": 16, "decoder_channels": 8}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        if config["fusion"] not in ("mean", "concat"):
            raise ConfigError(f"method.fusion={config['fusion']!r}: use mean or concat")
        check_sampler(config["sampler"], "sampler")
        if not 0.0 <= config["p_drop"] < 1.0:
            raise ConfigError(f"method.p_drop={config['p_drop']}: must be in [0, 1)")
        self.encoders = nn.ModuleDict(
            {
                name: resnet(config["backbone"], in_channels=channels, width=config["width"])
                for name, channels in modalities.items()
            }
        )
        channels = next(iter(self.encoders.values())).channels
        if config["fusion"] == "concat":
            self.merge = nn.ModuleList([nn.Conv2d(len(modalities) * c, c, 1) for c in channels])
        self.decoder = FPNDecoder(channels, config["fpn_channels"], config["decoder_channels"], num_classes)

    def encode(self, name: str, x: Tensor) -> list[Tensor]:
        return self.encoders[name](x)

    def decode(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        present = {index: features[name] for index, name in enumerate(self.modality_names) if name in features}
        levels = len(next(iter(present.values())))
        fused = []
        for level in range(levels):
            values = {index: pyramid[level] for index, pyramid in present.items()}
            if self.config["fusion"] == "mean":
                fused.append(masked_mean(values, available))
            else:
                like = next(iter(values.values()))
                fused.append(self.merge[level](masked_concat(values, available, len(self.modality_names), like)))
        size = next(iter(present.values()))[0].shape[-2:]
        return upsample(self.decoder(fused), [4 * s for s in size])

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        features = self.encode_available(inputs, available)
        return upsample(self.decode(features, available), next(iter(inputs.values())).shape[-2:])

    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        if len(self.modality_names) == 1:
            return batch["available"]
        return sampled_availability(
            self.config["sampler"],
            batch,
            info,
            len(self.modality_names),
            p_drop=self.config["p_drop"],
            include_full=self.config["include_full"],
        )

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        available = self.training_availability(batch, info)
        logits = self(batch["inputs"], available)
        ce = F.cross_entropy(logits, batch["label"], ignore_index=info.ignore_index)
        return {"loss": ce, "ce": ce.detach(), "kept": available.float().mean()}
