"""Autoencoder imputation: generate the missing modalities, then segment the completed input.

The AE baseline of GEMMNet's tables ("AE and GAN reconstruct the missing modality from the available
ones"; reference/methods.md §4), written for any number of modalities:

- one generator per modality m, a small U-Net (3 strided stages down, 3 up with skips) whose input is
  every other modality (zero where missing, via `torch.where`) plus one availability flag channel per
  other modality, and whose output is modality m in the normalised input space;
- a full-modality segmenter (early-fusion ResNet + FPN) on the completed input: real channels where the
  modality is available, generated ones where it is missing, chosen per sample;
- training: `sampler` draws which modalities each sample keeps; the dropped ones are generated and the
  generators learn an L1 reconstruction of the real (withheld) data on exactly those samples; with
  `detach_imputation: false` the segmentation loss also trains the generators (as in GEMMNet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.backbones import resnet
from mmbench.methods.common import FPNDecoder, check_sampler, conv_bn_relu, sampled_availability, upsample


class UNetGenerator(nn.Module):
    """3-level U-Net: strided 3x3 convs down, bilinear upsampling + conv up, skips concatenated."""

    def __init__(self, inp: int, out: int, width: int) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width]  # each down stage doubles; each up stage halves back
        self.inc = conv_bn_relu(inp, width)
        self.downs = nn.ModuleList([nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False),
                                                  nn.BatchNorm2d(2 * c), nn.ReLU(inplace=True)) for c in widths])
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


class AutoencoderImputation(SegmentationMethod):
    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        check_sampler(config["sampler"], "sampler")
        total = sum(modalities.values())
        self.generators = nn.ModuleDict({
            name: UNetGenerator(total - c + len(modalities) - 1, c, config["generator_width"])
            for name, c in modalities.items()})
        self.encoder = resnet(config["backbone"], in_channels=total, width=config["width"])
        self.decoder = FPNDecoder(self.encoder.channels, config["fpn_channels"], config["decoder_channels"],
                                  num_classes)

    def _generator_input(self, target: int, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        parts = []
        for index, name in enumerate(self.modality_names):
            if index == target:
                continue
            mask = available[:, index].view(-1, 1, 1, 1)
            x = inputs[name]
            parts.append(torch.where(mask, x, 0.0))
            parts.append(mask.to(x.dtype).expand(-1, 1, *x.shape[-2:]))
        return torch.cat(parts, dim=1)

    def complete(self, inputs: Mapping[str, Tensor], available: Tensor) -> dict[str, Tensor]:
        """Each modality: the real input where available, the generated one where missing (per sample)."""
        completed = {}
        for index, name in enumerate(self.modality_names):
            present = available[:, index]
            real = inputs[name]
            if bool(present.all()):
                completed[name] = real
                continue
            generated = self.generators[name](self._generator_input(index, inputs, available))
            if self.config["detach_imputation"]:
                generated = generated.detach()
            completed[name] = torch.where(present.view(-1, 1, 1, 1), real, generated)
        return completed

    def _segment(self, completed: Mapping[str, Tensor]) -> Tensor:
        stacked = torch.cat([completed[name] for name in self.modality_names], dim=1)
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
        reconstruction = torch.zeros((), device=label.device)
        dropped_total = torch.zeros((), device=label.device)
        for index, name in enumerate(self.modality_names):
            dropped = ~available[:, index]
            if bool(dropped.any()):
                error = (completed[name] - inputs[name]).abs().flatten(1).mean(1)  # zero where the input was real
                reconstruction = reconstruction + error[dropped].sum()
                dropped_total = dropped_total + dropped.sum()
        reconstruction = reconstruction / dropped_total.clamp_min(1)
        total = ce + self.config["reconstruction_weight"] * reconstruction
        return {"loss": total, "ce": ce.detach(), "l1": reconstruction.detach()}
