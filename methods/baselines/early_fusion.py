"""early-fusion: the modalities' channels concatenated into one ResNet+FPN, trained on complete data.

The "no robustness" reference (CMNeXt's role in modality-agnostic tables): nothing in training
prepares it for a missing modality, so its drop under `last1` or `subsets` measures how much the
other methods' robustness machinery buys. A missing modality's channels are replaced per sample by
`fill` — the training mean (0 in mmbench's normalised inputs) or a constant — with `torch.where`, so
the engine's fill (or NaN in the tests) is never read. There is no learned fill: the model trains on
complete data only, so a learned value would never receive a gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import FPNDecoder, upsample

FILLS = ("mean", "constant")


class EarlyFusion(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {"width": 8, "fpn_channels": 16, "decoder_channels": 8}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        if config["fill"] not in FILLS:
            raise ConfigError(f"method.fill={config['fill']!r}: use one of {', '.join(FILLS)}")
        self.fill_tokens = nn.ParameterDict(
            {
                name: nn.Parameter(torch.zeros(1, channels, 1, 1), requires_grad=False)  # the mean: 0
                for name, channels in modalities.items()
            }
        )
        self.encoder = resnet(config["backbone"], in_channels=sum(modalities.values()), width=config["width"])
        self.decoder = FPNDecoder(
            self.encoder.channels, config["fpn_channels"], config["decoder_channels"], num_classes
        )

    def _filled(self, name: str, x: Tensor, present: Tensor) -> Tensor:
        if self.config["fill"] == "constant":
            value = torch.full((1, x.shape[1], 1, 1), float(self.config["fill_value"]), dtype=x.dtype, device=x.device)
        else:  # "mean": the token holds the training mean, 0 in normalised units (kept for checkpoints)
            value = self.fill_tokens[name].to(x.dtype)
        return torch.where(present.view(-1, 1, 1, 1), x, value.expand(x.shape[0], -1, *x.shape[-2:]))

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        stacked = torch.cat(
            [self._filled(name, inputs[name], available[:, index]) for index, name in enumerate(self.modality_names)],
            dim=1,
        )
        return upsample(self.decoder(self.encoder(stacked)), stacked.shape[-2:])
