"""Imputation baselines: generate the missing modalities, then segment the completed input.

The AE and cGAN baselines of GEMMNet's tables ("AE and GAN reconstruct the missing modality from the
available ones", arXiv 2509.11102; docs/methods/ae.md, docs/methods/cgan.md), written for any number of modalities:

- one generator per modality m, a small U-Net (3 strided stages down, 3 up with skips) whose input is
  every other modality (zero where missing, via `torch.where`) plus one availability flag channel per
  other modality, and whose output is modality m in the normalised input space;
- a full-modality segmenter (early-fusion ResNet + FPN) on the completed input: real channels where the
  modality is available, generated ones where it is missing, chosen per sample;
- training: `sampler` draws which modalities each sample keeps; the dropped ones are generated and the
  generators learn an L1 reconstruction of the real (withheld) data on exactly those samples; with
  `detach_imputation: false` the segmentation loss also trains the generators (as in GEMMNet).

`cgan` (methods/imputation/cgan.py) is this model with pix2pix generators and conditional PatchGANs.

The conditioning and completion are the `Imputation` mixin of methods/blocks/imputation.py, shared with
`cgan` and `gemmnet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import FPNDecoder, check_sampler, conv_bn_relu, sampled_availability, upsample
from mmbench.methods.blocks.imputation import Imputation


class UNetGenerator(nn.Module):
    """3-level U-Net: strided 3x3 convs down, bilinear upsampling + conv up, skips concatenated."""

    def __init__(self, inp: int, out: int, width: int) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width]  # each down stage doubles; each up stage halves back
        self.inc = conv_bn_relu(inp, width)
        self.downs = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(2 * c),
                    nn.ReLU(inplace=True),
                )
                for c in widths
            ]
        )
        self.ups = nn.ModuleList([conv_bn_relu(2 * c + c, c) for c in reversed(widths)])
        self.out = nn.Conv2d(width, out, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            skip = skips.pop()
            y = up(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.out(y)


class AutoencoderImputation(Imputation, SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {
        "generator_width": 4,
        "width": 8,
        "fpn_channels": 16,
        "decoder_channels": 8,
    }

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        check_sampler(config["sampler"], "sampler")
        total = sum(modalities.values())
        self.generators = nn.ModuleDict(
            {name: self._generator(self.condition_channels(name), c) for name, c in modalities.items()}
        )
        self.encoder = resnet(config["backbone"], in_channels=total, width=config["width"])
        self.decoder = FPNDecoder(
            self.encoder.channels, config["fpn_channels"], config["decoder_channels"], num_classes
        )

    def _generator(self, inp: int, out: int) -> nn.Module:
        return UNetGenerator(inp, out, self.config["generator_width"])

    def _segment(self, completed: Mapping[str, Tensor]) -> Tensor:
        """Segment the completed input; with `detach_imputation` the segmentation loss stops at the generators
        (their own reconstruction losses still train them)."""
        stacked = torch.cat([completed[name] for name in self.modality_names], dim=1)
        if self.config["detach_imputation"]:
            stacked = stacked.detach()
        return upsample(self.decoder(self.encoder(stacked)), stacked.shape[-2:])

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        return self._segment(self.complete(inputs, available))

    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        return sampled_availability(self.config["sampler"], batch, info, len(self.modality_names))

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        completed = self.complete(inputs, available)
        ce = F.cross_entropy(self._segment(completed), label, ignore_index=info.ignore_index)
        reconstruction = self._reconstruction(completed, inputs, available)
        total = ce + self.config["reconstruction_weight"] * reconstruction
        return {"loss": total, "ce": ce.detach(), "l1": reconstruction.detach()}
