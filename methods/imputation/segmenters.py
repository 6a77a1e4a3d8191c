"""What segments the imputation baselines' completed input (`segmenter: early-fusion | mmformer`).

Both forms see every modality (real where available, generated where missing) and offer one interface:
`segment(completed) -> logits` and `loss_terms(completed, label, ignore_index) -> {"loss": total, ...named
terms}`.

- `early-fusion` (default, v1): the modalities concatenated on channels, a ResNet + FPN (the `early-fusion`
  network); loss: pixel cross-entropy. Our design for GEMMNet's AE/GAN baselines, whose segmenter the
  paper does not describe (docs/methods/ae.md, docs/methods/cgan.md); kept as default for continuity.
- `mmformer`: the mmFormer-2D network of methods/blocks/mmformer.py (`MmFormer`, reused, not copied), run
  as GEMMNet runs it on its completed input (methods/gemmnet/model.py): every modality encoded, decoded
  with availability all ones; loss: `MmFormer.segmentation_terms` (fused + sep + deep supervision, each
  wCE + Dice). GEMMNet's segmenter is mmFormer-2D (HyFEx + HyFMA), so `cgan` / `ae` with this form differ
  from `gemmnet` in the imputer only: our design choice for isolating the imputer. Its settings are the
  mmformer method's own keys (inherited from methods/mmformer/mmformer.yaml by ae.yaml / cgan.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import FPNDecoder, upsample
from mmbench.methods.blocks.mmformer import MmFormer

SEGMENTERS = ("early-fusion", "mmformer")


class EarlyFusionSegmenter(nn.Module):
    """Modalities concatenated on channels (dataset order) -> ResNet -> FPN; cross-entropy."""

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.modality_names = tuple(modalities)
        self.encoder = resnet(config["backbone"], in_channels=sum(modalities.values()), width=config["width"])
        self.decoder = FPNDecoder(
            self.encoder.channels, config["fpn_channels"], config["decoder_channels"], num_classes
        )

    def segment(self, completed: Mapping[str, Tensor]) -> Tensor:
        stacked = torch.cat([completed[name] for name in self.modality_names], dim=1)
        return upsample(self.decoder(self.encoder(stacked)), stacked.shape[-2:])

    def loss_terms(self, completed: Mapping[str, Tensor], label: Tensor, ignore_index: int) -> dict[str, Tensor]:
        ce = F.cross_entropy(self.segment(completed), label, ignore_index=ignore_index)
        return {"loss": ce, "ce": ce}


class MmFormerSegmenter(MmFormer):
    """The mmFormer-2D network on complete inputs: GEMMNet's `forward` / `training_loss` segmentation path."""

    def _features_and_availability(self, completed: Mapping[str, Tensor]) -> tuple[dict[str, Any], Tensor]:
        features = {name: self.encode(name, completed[name]) for name in self.modality_names}
        first = completed[self.modality_names[0]]
        available = torch.ones(first.shape[0], len(self.modality_names), dtype=torch.bool, device=first.device)
        return features, available

    def segment(self, completed: Mapping[str, Tensor]) -> Tensor:
        return self.decode(*self._features_and_availability(completed))

    def loss_terms(self, completed: Mapping[str, Tensor], label: Tensor, ignore_index: int) -> dict[str, Tensor]:
        features, available = self._features_and_availability(completed)
        return self.segmentation_terms(features, available, label, ignore_index)


def build_segmenter(
    modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]
) -> EarlyFusionSegmenter | MmFormerSegmenter:
    """The segmenter `config["segmenter"]` names; `mmformer` reads the mmformer keys of the same config."""
    form = config["segmenter"]
    if form == "early-fusion":
        return EarlyFusionSegmenter(modalities, num_classes, config)
    if form == "mmformer":
        return MmFormerSegmenter(modalities, num_classes, config)
    raise ConfigError(f"method.segmenter={form!r}: use {' or '.join(SEGMENTERS)}")
