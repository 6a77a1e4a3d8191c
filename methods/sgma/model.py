"""SGMA: semantic-guided fusion (SGF) and modality-aware sampling (MAS), reconstructed.

Wen et al. describe SGF as multi-scale class-wise prototypes -> a per-modality robustness score from
prototype-feature alignment -> robustness-weighted fusion, and MAS as re-weighting training towards
fragile modalities. There is no public code; mmbench's reading (every constant is a config option):

- per-modality ResNet encoders (the same family as STARS) and an FPN decoder on the fused pyramid;
- prototypes: per level, modality and class, the EMA (`prototype_momentum`) of the GT-masked average
  feature over the training batch's available samples (buffers, saved in checkpoints);
- robustness r[b, m, level] = mean over pixels of max over classes of cos(feature, prototype) — how
  well the modality's features match some class; fusion weights = softmax of r / `fusion_temperature`
  over the sample's *available* modalities (renormalised per sample, so any pattern works);
- semantic guidance: an auxiliary 1x1 head per modality on its stride-4 features, CE weighted by
  `aux_weight`, so that features and prototypes are class-aligned;
- MAS: an EMA of each modality's mean stride-4 robustness (`robustness_momentum`); a `focus_probability` share
  of training samples is given a single modality drawn from softmax(-robustness / `focus_temperature`)
  (fragile modalities more often), the rest follow the base `sampler`. Draws are keyed on the
  sample's (seed, step, micro-batch, slot), like the shared samplers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import FPNDecoder, check_sampler, sampled_availability, upsample

_MAS_STREAM = 7  # a seed word of its own, so MAS draws never coincide with the base sampler's


class Sgma(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {"width": 8, "fpn_channels": 16, "decoder_channels": 8}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        check_sampler(config["sampler"], "sampler")
        for key in ("prototype_momentum", "robustness_momentum"):
            if not 0.0 <= config[key] < 1.0:
                raise ConfigError(f"method.{key}={config[key]}: must be in [0, 1)")
        if not 0.0 <= config["focus_probability"] <= 1.0:
            raise ConfigError(f"method.focus_probability={config['focus_probability']}: must be in [0, 1]")
        for key in ("fusion_temperature", "focus_temperature"):
            if config[key] <= 0:
                raise ConfigError(f"method.{key}={config[key]}: must be positive")
        self.encoders = nn.ModuleDict(
            {name: resnet(config["backbone"], in_channels=c, width=config["width"]) for name, c in modalities.items()}
        )
        channels = next(iter(self.encoders.values())).channels
        self.levels = len(channels)
        self.decoder = FPNDecoder(channels, config["fpn_channels"], config["decoder_channels"], num_classes)
        self.aux_heads = nn.ModuleDict({name: nn.Conv2d(channels[0], num_classes, 1) for name in modalities})
        count = len(modalities)
        for level, c in enumerate(channels):
            self.register_buffer(f"prototypes_{level}", torch.zeros(count, num_classes, c))
        self.register_buffer("prototype_seen", torch.zeros(self.levels, count, num_classes, dtype=torch.bool))
        self.register_buffer("mean_robustness", torch.zeros(count))

    # -- semantic-guided fusion --------------------------------------------------------------------
    def robustness(self, feature: Tensor, modality: int, level: int) -> Tensor:
        """(B,) mean over pixels of the best class-prototype cosine; 0 while no prototype exists."""
        seen = self.prototype_seen[level, modality]
        if not bool(seen.any()):
            return feature.new_zeros(feature.shape[0])
        prototypes = F.normalize(getattr(self, f"prototypes_{level}")[modality][seen], dim=1)  # (K', C)
        similarity = torch.einsum("bchw,kc->bkhw", F.normalize(feature, dim=1), prototypes.to(feature.dtype))
        return similarity.max(dim=1).values.flatten(1).mean(1)

    def fusion_weights(self, pyramids: Mapping[int, list[Tensor]], available: Tensor, level: int) -> Tensor:
        """(B, M) softmax of robustness over each sample's available modalities (zero elsewhere)."""
        reference = next(iter(pyramids.values()))[level]
        scores = reference.new_full((reference.shape[0], len(self.modality_names)), float("-inf"))
        for index, pyramid in pyramids.items():
            score = (
                self.robustness(torch.where(available[:, index].view(-1, 1, 1, 1), pyramid[level], 0.0), index, level)
                / self.config["fusion_temperature"]
            )
            scores[:, index] = torch.where(available[:, index], score, float("-inf"))
        return torch.softmax(scores, dim=1).nan_to_num(0.0)

    def encode(self, name: str, x: Tensor) -> list[Tensor]:
        return self.encoders[name](x)

    def _fuse(self, features: Mapping[str, Any], available: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        pyramids = {index: features[name] for index, name in enumerate(self.modality_names) if name in features}
        fused, weights = [], []
        for level in range(self.levels):
            w = self.fusion_weights(pyramids, available, level)
            total = None
            for index, pyramid in pyramids.items():
                value = torch.where(available[:, index].view(-1, 1, 1, 1), pyramid[level], 0.0)
                term = value * w[:, index].view(-1, 1, 1, 1).to(value.dtype)
                total = term if total is None else total + term
            assert total is not None
            fused.append(total)
            weights.append(w)
        return fused, weights

    def decode(self, features: Mapping[str, Any], available: Tensor) -> Tensor:
        fused, _ = self._fuse(features, available)
        size = fused[0].shape[-2:]
        return upsample(self.decoder(fused), [4 * s for s in size])

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        features = self.encode_available(inputs, available)
        return upsample(self.decode(features, available), next(iter(inputs.values())).shape[-2:])

    # -- training ------------------------------------------------------------------------------------
    def training_availability(self, batch: Mapping[str, Any], info: TrainStep) -> Tensor:
        """Base sampler, with a `focus_probability` share of samples on one fragile modality alone (MAS)."""
        count = len(self.modality_names)
        if count == 1:
            return batch["available"]
        available = sampled_availability(self.config["sampler"], batch, info, count)
        fragility = torch.softmax(-self.mean_robustness.double() / self.config["focus_temperature"], 0).cpu().numpy()
        slots = batch["slots"].tolist() if "slots" in batch else range(available.shape[0])
        for row, slot in enumerate(slots):
            rng = np.random.default_rng([info.seed, info.step, info.micro, int(slot), _MAS_STREAM])
            if rng.random() < self.config["focus_probability"]:
                chosen = int(rng.choice(count, p=fragility / fragility.sum()))
                available[row] = torch.arange(count, device=available.device) == chosen
        return available

    @torch.no_grad()
    def _update_prototypes(
        self, features: Mapping[str, Any], available: Tensor, label: Tensor, ignore_index: int
    ) -> None:
        momentum = self.config["prototype_momentum"]
        for index, name in enumerate(self.modality_names):
            rows = available[:, index]
            if name not in features or not bool(rows.any()):
                continue
            for level in range(self.levels):
                feature = features[name][level][rows].float()
                small = F.interpolate(label[rows][:, None].float(), size=feature.shape[-2:], mode="nearest")[:, 0]
                small = small.long()
                valid = small != ignore_index
                onehot = F.one_hot(torch.where(valid, small, 0), self.num_classes).float() * valid[..., None]
                sums = torch.einsum("bchw,bhwk->kc", feature, onehot)
                counts = onehot.sum((0, 1, 2))
                present = counts > 0
                means = sums / counts.clamp_min(1)[:, None]
                bank = getattr(self, f"prototypes_{level}")[index]
                seen = self.prototype_seen[level, index]
                updated = torch.where(seen[:, None], momentum * bank + (1 - momentum) * means, means)
                bank.copy_(torch.where(present[:, None], updated, bank))
                seen |= present

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        features = self.encode_available(inputs, available)
        fused, weights = self._fuse(features, available)
        logits = upsample(self.decoder(fused), label.shape[-2:])
        ce = F.cross_entropy(logits, label, ignore_index=info.ignore_index)
        aux = torch.zeros((), device=label.device)
        for index, name in enumerate(self.modality_names):
            rows = available[:, index]
            if name in features and bool(rows.any()):
                head = upsample(self.aux_heads[name](features[name][0][rows]), label.shape[-2:])
                aux = aux + F.cross_entropy(head, label[rows], ignore_index=info.ignore_index)
        with torch.no_grad():
            self._update_prototypes(features, available, label, info.ignore_index)
            momentum = self.config["robustness_momentum"]
            for index, name in enumerate(self.modality_names):
                rows = available[:, index]
                if name in features and bool(rows.any()) and bool(self.prototype_seen[0, index].any()):
                    score = self.robustness(features[name][0][rows], index, 0).mean()
                    self.mean_robustness[index] = momentum * self.mean_robustness[index] + (1 - momentum) * score
        total = ce + self.config["aux_weight"] * aux
        terms = {"loss": total, "ce": ce.detach(), "aux": aux.detach()}
        for index, name in enumerate(self.modality_names):
            terms[f"robustness_{name}"] = self.mean_robustness[index].detach().clone()
        return terms
