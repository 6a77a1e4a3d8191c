"""ShaSpec 2-D: shared and specific encoders, composition, and shared features standing in for missing ones.

Following github.com/billhhh/ShaSpec (`DualNet_SS.py`, `loss_Dual.py`) with 2-D ResNets:
- one *shared* encoder applied to every modality (per-modality stems map the channel counts), and
  one *specific* encoder per modality;
- composition (`composition: bottleneck`, the authors' `CompositionalLayer` used once): at the deepest
  level, available m -> shared_m + Conv3x3(concat(shared_m, specific_m)); at the other levels available
  m -> shared_m as is (the authors' decoder skips are the shared encoder's layers); missing m -> the
  shared feature of the first available modality at every level (`missing_feature: mean` averages them).
  `composition: all_levels` (version 2) runs one conv per level;
- decoder: the M composed maps concatenated per level, 1x1, FPN;
- losses: CE + alpha * L1 between deepest shared features of consecutive modalities (cyclic) + beta * CE
  of a linear modality classifier on pooled specific features. `alignment: authors` sums the per-pair
  mean L1 over every sample, missing modalities encoded from zero-filled inputs (train_SS.py);
  `available_pairs` (version 2) averages over (sample, pair) with both available.
  `modality_classification_on: all` classifies every modality (zero-filled ones too), `available` only
  the available ones (version 2).
Trained on random subsets (one per batch by default, as ShaSpec's `mode=random`). Per-sample
patterns at evaluation are handled row by row with `torch.where`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.common import FPNDecoder, check_sampler, masked_mean, sampled_availability, upsample
from mmbench.methods.blocks.shared_encoder import (
    SHARED_NORMS,
    build_shared_specific,
    encode_shared_specific,
)

CHOICES = {
    "composition": ("bottleneck", "all_levels"),
    "alignment": ("authors", "available_pairs"),
    "modality_classification_on": ("all", "available"),
}


class ShaSpec(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {"width": 8, "specific_width": 4, "fpn_channels": 16, "decoder_channels": 8}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        if len(modalities) < 2:
            raise ConfigError("ShaSpec needs at least two modalities (shared features stand in for missing ones)")
        if config["missing_feature"] not in ("first", "mean"):
            raise ConfigError(f"method.missing_feature={config['missing_feature']!r}: use first or mean")
        check_sampler(config["sampler"], "sampler")
        for key, allowed in CHOICES.items():
            if config[key] not in allowed:
                raise ConfigError(f"method.{key}={config[key]!r}: use one of {', '.join(allowed)}")
        if config["shared_norm"] not in SHARED_NORMS:
            raise ConfigError(f"method.shared_norm={config['shared_norm']!r}: use one of {', '.join(SHARED_NORMS)}")
        self.stems, self.shared, self.specific, self.shared_encoder = build_shared_specific(modalities, config)
        shared_channels = self.shared.channels
        specific_channels = next(iter(self.specific.values())).channels
        # `bottleneck` (the authors'): one compositional conv, at the deepest level; `all_levels` (version 2):
        # one per level. Keyed by level, so all_levels keeps version 2's parameter names (compose.0 ... compose.3).
        last = len(shared_channels) - 1
        composed_levels = range(len(shared_channels)) if config["composition"] == "all_levels" else [last]
        self.compose = nn.ModuleDict(
            {
                str(level): nn.Conv2d(
                    shared_channels[level] + specific_channels[level], shared_channels[level], 3, padding=1
                )
                for level in composed_levels
            }
        )
        self.merge = nn.ModuleList([nn.Conv2d(len(modalities) * c, c, 1) for c in shared_channels])
        self.decoder = FPNDecoder(shared_channels, config["fpn_channels"], config["decoder_channels"], num_classes)
        self.modality_classifier = nn.Linear(specific_channels[-1], len(modalities))

    def encode(self, name: str, x: Tensor) -> dict[str, list[Tensor]]:
        return {
            "shared": self.shared_encoder.forward_one(name, self.stems[name](x)),
            "specific": self.specific[name](x),
        }

    def encode_available(self, inputs: Mapping[str, Tensor], available: Tensor) -> dict[str, Any]:
        """With `shared_norm: joint` the shared encoder runs once on every present modality together."""
        return encode_shared_specific(
            self.modality_names, inputs, available, self.stems, self.shared_encoder, self.specific
        )

    def _stand_in(self, features: Mapping[str, Any], available: Tensor, level: int) -> Tensor:
        """Per sample, the shared feature of the first (or the mean of every) available modality."""
        values = {
            index: features[name]["shared"][level] for index, name in enumerate(self.modality_names) if name in features
        }
        if self.config["missing_feature"] == "mean":
            return masked_mean(values, available)
        chosen: Tensor | None = None
        for index in sorted(values, reverse=True):  # the first available modality is written last and wins
            mask = available[:, index].view(-1, 1, 1, 1)
            value = values[index]
            chosen = torch.where(mask, value, torch.zeros_like(value) if chosen is None else chosen)
        assert chosen is not None
        return chosen

    def decode(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        levels = len(self.shared.channels)
        merged = []
        for level in range(levels):
            stand_in = self._stand_in(features, available, level)
            composed = []
            for index, name in enumerate(self.modality_names):
                if name in features:
                    shared = features[name]["shared"][level]
                    value = shared  # without a conv at this level: the shared feature as is (authors' skips)
                    if str(level) in self.compose:
                        specific = features[name]["specific"][level]
                        value = shared + self.compose[str(level)](torch.cat([shared, specific], dim=1))
                    value = torch.where(available[:, index].view(-1, 1, 1, 1), value, stand_in)
                else:
                    value = stand_in
                composed.append(value)
            merged.append(self.merge[level](torch.cat(composed, dim=1)))
        size = merged[0].shape[-2:]
        return upsample(self.decoder(merged), [4 * s for s in size])

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        features = self.encode_available(inputs, available)
        return upsample(self.decode(features, available), next(iter(inputs.values())).shape[-2:])

    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        return sampled_availability(self.config["sampler"], batch, info, len(self.modality_names))

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        if self.config["alignment"] == "authors" or self.config["modality_classification_on"] == "all":
            # The authors' losses see every modality: missing inputs zero-filled and encoded with the rest
            # (DualNet_SS.py zeroes them and folds all modalities into one shared-encoder batch).
            inputs = {
                name: torch.where(available[:, index].view(-1, 1, 1, 1), inputs[name], 0.0)
                for index, name in enumerate(self.modality_names)
            }
            features = self.encode_available(inputs, torch.ones_like(available))
        else:
            features = self.encode_available(inputs, available)
        logits = upsample(self.decode(features, available), label.shape[-2:])
        ce = F.cross_entropy(logits, label, ignore_index=info.ignore_index)
        alignment = self._shared_alignment(features, available)
        classification = self._modality_classification(features, available)
        total = ce + self.config["alpha"] * alignment + self.config["beta"] * classification
        return {
            "loss": total,
            "ce": ce.detach(),
            "shared_l1": alignment.detach(),
            "modality_ce": classification.detach(),
        }

    def _shared_alignment(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        if self.config["alignment"] == "authors":
            return self._alignment_authors(features)
        return self._alignment_available_pairs(features, available)

    def _cyclic_pairs(self) -> list[tuple[int, int]]:
        count = len(self.modality_names)
        return [(i, (i + 1) % count) for i in range(count)] if count > 2 else [(0, 1)]

    def _alignment_authors(self, features: Mapping[str, Any]) -> Tensor:
        """train_SS.py's `term_shared`: the sum over cyclic pairs of nn.L1Loss() (mean over every element of
        the batch) between deepest shared features, every sample counted whatever its availability (a
        missing modality's feature is the shared encoder's response to its zero-filled input)."""
        names = self.modality_names
        total = features[names[0]]["shared"][-1].new_zeros(())
        for a, b in self._cyclic_pairs():
            total = total + F.l1_loss(features[names[a]]["shared"][-1], features[names[b]]["shared"][-1])
        return total

    def _alignment_available_pairs(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        """Version 2: mean L1 between deepest shared features of consecutive modalities (cyclic), both available."""
        names = self.modality_names
        pairs = self._cyclic_pairs()
        total = torch.zeros((), device=available.device)
        weight = torch.zeros((), device=available.device)
        for a, b in pairs:
            if names[a] not in features or names[b] not in features:
                continue
            both = (available[:, a] & available[:, b]).to(total.dtype)
            difference = (features[names[a]]["shared"][-1] - features[names[b]]["shared"][-1]).abs()
            per_sample = torch.where(both.bool().view(-1, 1, 1, 1), difference, 0.0).flatten(1).mean(1)
            total = total + (per_sample * both).sum()
            weight = weight + both.sum()
        return total / weight.clamp_min(1)

    def _modality_classification(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        """CE of predicting each modality's id from its pooled deepest specific feature: mean over every
        (sample, modality) with `all` (train_SS.py's DomainClsLoss on all N*M rows, zero-filled ones
        included), over the available ones with `available` (version 2)."""
        logits, targets, keep = [], [], []
        for index, name in enumerate(self.modality_names):
            if name not in features:
                continue
            pooled = F.adaptive_avg_pool2d(features[name]["specific"][-1], 1).flatten(1)
            logits.append(self.modality_classifier(pooled))
            targets.append(torch.full((pooled.shape[0],), index, dtype=torch.long, device=pooled.device))
            keep.append(available[:, index])
        ce = F.cross_entropy(torch.cat(logits), torch.cat(targets), reduction="none")
        mask = torch.cat(keep)
        if self.config["modality_classification_on"] == "all":
            mask = torch.ones_like(mask)
        return torch.where(mask, ce, 0.0).sum() / mask.sum().clamp_min(1)
