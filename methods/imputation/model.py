"""Imputation baselines: generate the missing modalities, then segment the completed input.

The AE and cGAN baselines of GEMMNet's tables ("AE and GAN reconstruct the missing modality from the
available ones", arXiv 2509.11102; docs/methods/ae.md, docs/methods/cgan.md), written for any number of modalities:

- one generator per modality m, a small U-Net (3 strided stages down, 3 up with skips) whose input is
  every other modality (zero where missing, via `torch.where`) plus one availability flag channel per
  other modality, and whose output is modality m in the normalised input space;
- a full-modality segmenter on the completed input (real channels where the modality is available,
  generated ones where it is missing, chosen per sample), chosen by `segmenter`
  (methods/imputation/segmenters.py): `early-fusion` (default, v1: ResNet + FPN over the concatenated
  modalities, cross-entropy) or `mmformer` (the mmFormer-2D network GEMMNet segments with, run as GEMMNet
  runs it, with its fused + sep + deep supervision loss): our design choice for isolating the imputer
  in a comparison with `gemmnet`;
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
from mmbench.methods.blocks.common import check_sampler, conv_bn_relu, sampled_availability
from mmbench.methods.blocks.imputation import Imputation
from mmbench.methods.blocks.mmformer import MmFormer
from mmbench.methods.imputation.segmenters import build_segmenter


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


def _load_v1_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Checkpoints written before the `segmenter` switch name the early-fusion parts `encoder.*`, `decoder.*`."""
    for key in list(state_dict):
        if key.startswith(prefix) and key[len(prefix) :].split(".", 1)[0] in ("encoder", "decoder"):
            state_dict[f"{prefix}segmenter.{key[len(prefix) :]}"] = state_dict.pop(key)


def logged(terms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A segmenter's named loss terms, detached for the log (its total, "loss", left out)."""
    return {name: value.detach() for name, value in terms.items() if name != "loss"}


class AutoencoderImputation(Imputation, SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them); the mmFormer-2D widths
    # apply to `segmenter: mmformer` only.
    tiny_config: ClassVar[dict[str, Any]] = {
        "generator_width": 4,
        "width": 8,
        "fpn_channels": 16,
        "decoder_channels": 8,
        **MmFormer.tiny_config,
    }

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        check_sampler(config["sampler"], "sampler")
        self.generators = nn.ModuleDict(
            {name: self._generator(self.condition_channels(name), c) for name, c in modalities.items()}
        )
        self.segmenter = build_segmenter(modalities, num_classes, config)
        self.register_load_state_dict_pre_hook(_load_v1_names)

    def _generator(self, inp: int, out: int) -> nn.Module:
        return UNetGenerator(inp, out, self.config["generator_width"])

    def _segmenter_input(self, completed: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        """With `detach_imputation` the segmentation loss stops at the generators (their own reconstruction
        losses still train them), whichever the segmenter."""
        if self.config["detach_imputation"]:
            return {name: x.detach() for name, x in completed.items()}
        return completed

    def _segment(self, completed: Mapping[str, Tensor]) -> Tensor:
        """Logits of the segmenter on the completed input."""
        return self.segmenter.segment(self._segmenter_input(completed))

    def _segmentation_terms(
        self, completed: Mapping[str, Tensor], label: Tensor, ignore_index: int
    ) -> dict[str, Tensor]:
        """The segmenter's loss terms: {"loss", "ce"} (early-fusion) or {"loss", "fused", "sep", "deep"} (mmformer)."""
        return self.segmenter.loss_terms(self._segmenter_input(completed), label, ignore_index)

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        return self._segment(self.complete(inputs, available))

    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        return sampled_availability(self.config["sampler"], batch, info, len(self.modality_names))

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        completed = self.complete(inputs, available)
        segmentation = self._segmentation_terms(completed, label, info.ignore_index)
        reconstruction = self._reconstruction(completed, inputs, available)
        total = segmentation["loss"] + self.config["reconstruction_weight"] * reconstruction
        return {"loss": total, **logged(segmentation), "l1": reconstruction.detach()}
