"""The STARS network and its training losses (reconstruction; see docs/methods/stars.md).

Per modality m: a stem (modalities differ in channels), a shared encoder S (weights common to all
modalities) and a specific encoder P. At each pyramid level l, translators T_{a->b} map shared features
between modalities; a missing modality's shared features are the mean of the translations from the
available ones. Per modality F_m = S_m + Conv3x3([S_m, P_m]) (ShaSpec's composition) when present,
F_m = translation when missing; scSE on each, then a 1x1 merge of all M (also scSE), an FPN and a light
decoder at stride 4. Training: cross-entropy on the full branch and on a missing branch (a random
proper subset per sample), the stop-gradient translation loss D(T_{a->b}(S_a), sg(S_b)) in both
directions, and PSA: a supervised cross-modal InfoNCE on class-balanced pixel samples of the
per-modality embeddings (translated ones included), computed by `mmbench.kernels`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.errors import ConfigError
from mmbench.kernels.psa import class_balanced_sample, cross_modal_infonce, gather_pixels
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import Stem, conv_bn_relu
from mmbench.sampling import sample_availability


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al., 2018)."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.spatial = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel(x) + x * self.spatial(x)


class Translator(nn.Module):
    """Spatial SimSiam-style predictor: 1x1 (C -> C/4) - 3x3 - 1x1 (-> C), shape-preserving."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 4, 4)
        self.body = nn.Sequential(
            conv_bn_relu(channels, hidden, 1), conv_bn_relu(hidden, hidden, 3), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Stars(SegmentationMethod):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {"width": 8, "specific_width": 4, "fpn_channels": 16, "decoder_channels": 8}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__(modalities, num_classes, config)
        if len(modalities) < 2:
            raise ConfigError("STARS needs at least two modalities (translation is between modalities)")
        if config["translation_levels"] not in ("all", "last"):
            raise ConfigError(f"method.translation_levels={config['translation_levels']!r}: use all or last")
        if config["distance"] not in ("cosine", "mse"):
            raise ConfigError(f"method.distance={config['distance']!r}: use cosine or mse")
        if config["psa"]["sampling"] not in ("balanced", "uniform"):
            raise ConfigError(f"method.psa.sampling={config['psa']['sampling']!r}: use balanced or uniform")
        width = config["width"]
        self.stems = nn.ModuleDict({name: Stem(channels, width) for name, channels in modalities.items()})
        self.shared = resnet(config["backbone"], width=width, stem=False, pretrained=config["pretrained"])
        self.specific = nn.ModuleDict(
            {
                name: resnet(config["specific_backbone"], in_channels=channels, width=config["specific_width"])
                for name, channels in modalities.items()
            }
        )
        shared_channels = self.shared.channels
        specific_channels = next(iter(self.specific.values())).channels
        self.levels = len(shared_channels)
        self.translated_levels = (
            tuple(range(self.levels)) if config["translation_levels"] == "all" else (self.levels - 1,)
        )
        self.pairs = [(a, b) for a, b in itertools.permutations(self.modality_names, 2)]
        self.translators = nn.ModuleDict(
            {
                f"{a}__{b}": nn.ModuleList(
                    [
                        Translator(c) if level in self.translated_levels else nn.Identity()
                        for level, c in enumerate(shared_channels)
                    ]
                )
                for a, b in self.pairs
            }
        )
        self.compose = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    [
                        nn.Conv2d(cs + cp, cs, 3, padding=1)
                        for cs, cp in zip(shared_channels, specific_channels, strict=True)
                    ]
                )
                for name in self.modality_names
            }
        )
        self.modality_attention = nn.ModuleDict(
            {
                name: nn.ModuleList([SCSE(c) if config["scse"] else nn.Identity() for c in shared_channels])
                for name in self.modality_names
            }
        )
        self.merge = nn.ModuleList([nn.Conv2d(len(modalities) * c, c, 1) for c in shared_channels])
        self.merge_attention = nn.ModuleList([SCSE(c) if config["scse"] else nn.Identity() for c in shared_channels])
        fpn, dec = config["fpn_channels"], config["decoder_channels"]
        self.lateral = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in shared_channels])
        self.smooth = nn.ModuleList([nn.Conv2d(fpn, fpn, 3, padding=1) for _ in shared_channels])
        self.decoder = nn.ModuleList([conv_bn_relu(fpn, dec) for _ in shared_channels])
        self.classifier = nn.Conv2d(dec, num_classes, 1)
        psa = config["psa"]
        self.projection = nn.Sequential(
            conv_bn_relu(shared_channels[0], shared_channels[0], 1),
            nn.Conv2d(shared_channels[0], psa["embedding_dim"], 1),
        )

    # -- split interface -----------------------------------------------------------------------
    def encode(self, name: str, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        return {"shared": self.shared.forward_stages(self.stems[name](x)), "specific": self.specific[name](x)}

    def decode(self, features: Mapping[str, Any], available: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self._decode(features, available)
        return logits

    def forward(self, inputs: Mapping[str, torch.Tensor], available: torch.Tensor) -> torch.Tensor:
        features = self.encode_available(inputs, available)
        return self.decode(features, available)

    # -- the network ---------------------------------------------------------------------------
    def _translate(
        self, features: Mapping[str, Any], available: torch.Tensor, target: str, level: int, reference: torch.Tensor
    ) -> torch.Tensor:
        """Mean over the available sources a of T_{a->target}(S_a) (or of S_a without translation)."""
        total = torch.zeros_like(reference)
        count = torch.zeros(reference.shape[0], 1, 1, 1, device=reference.device, dtype=reference.dtype)
        for index, source in enumerate(self.modality_names):
            if source == target or source not in features:
                continue
            mask = available[:, index].view(-1, 1, 1, 1)
            shared = features[source]["shared"][level]
            if self.config["translation"]:
                shared = self.translators[f"{source}__{target}"][level](shared)
            total = total + torch.where(mask, shared, 0.0)
            count = count + mask.to(reference.dtype)
        return total / count.clamp_min(1)

    def _decode(self, features: Mapping[str, Any], available: torch.Tensor):
        """Logits, per-modality stride-4 fused features (for PSA) and the merged pyramid."""
        present = next(iter(features.values()))["shared"]
        merged, per_modality_c2 = [], {}
        for level in range(self.levels):
            reference = present[level]
            fused = []
            for index, name in enumerate(self.modality_names):
                present_rows = available[:, index]
                if name in features:
                    shared = features[name]["shared"][level]
                    specific = features[name]["specific"][level]
                    value = shared + self.compose[name][level](torch.cat([shared, specific], dim=1))
                    if not bool(present_rows.all()):  # translate only for the samples that lack the modality
                        translated = self._translate(features, available, name, level, reference)
                        value = torch.where(present_rows.view(-1, 1, 1, 1), value, translated)
                else:
                    value = self._translate(features, available, name, level, reference)
                value = self.modality_attention[name][level](value)
                fused.append(value)
                if level == 0:
                    per_modality_c2[name] = value
            merged.append(self.merge_attention[level](self.merge[level](torch.cat(fused, dim=1))))
        pyramid = [lateral(x) for lateral, x in zip(self.lateral, merged, strict=True)]
        for level in range(self.levels - 2, -1, -1):
            pyramid[level] = pyramid[level] + F.interpolate(
                pyramid[level + 1], size=pyramid[level].shape[-2:], mode="nearest"
            )
        size = pyramid[0].shape[-2:]
        decoded = (
            sum(
                F.interpolate(
                    self.decoder[level](self.smooth[level](x)), size=size, mode="bilinear", align_corners=False
                )
                if level
                else self.decoder[level](self.smooth[level](x))
                for level, x in enumerate(pyramid)
            )
            / self.levels
        )
        logits = self.classifier(decoded)
        full_size = (size[0] * 4, size[1] * 4)
        return F.interpolate(logits, size=full_size, mode="bilinear", align_corners=False), per_modality_c2, merged

    # -- training ------------------------------------------------------------------------------
    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, torch.Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        everything = torch.ones(label.shape[0], len(self.modality_names), dtype=torch.bool, device=label.device)
        features = {name: self.encode(name, inputs[name]) for name in self.modality_names}
        weights = self.config["loss"]
        full_logits, _, _ = self._decode(features, everything)
        ce_full = F.cross_entropy(full_logits, label, ignore_index=info.ignore_index)
        slots = batch["slots"].tolist() if "slots" in batch else range(label.shape[0])
        missing = sample_availability(
            self.config["missing_sampler"],
            len(self.modality_names),
            slots,
            (info.seed, info.step, info.micro),
            include_full=False,
            device=label.device,
        )
        missing_logits, embeddings, _ = self._decode(features, missing)
        ce_missing = F.cross_entropy(missing_logits, label, ignore_index=info.ignore_index)
        terms = {"ce_full": ce_full, "ce_missing": ce_missing}
        total = weights["ce_full"] * ce_full + weights["ce_missing"] * ce_missing
        if self.config["translation"]:
            terms["translation"] = self._translation_loss(features)
            total = total + weights["translation"] * terms["translation"]
        if self.config["psa"]["enabled"]:
            terms["psa"] = self._psa_loss(embeddings, label, info)
            total = total + self.config["psa"]["weight"] * terms["psa"]
        with torch.no_grad():
            terms["shared_std"] = self.collapse_indicator(features)
        return {"loss": total, **terms}

    def _translation_loss(self, features: Mapping[str, Any]) -> torch.Tensor:
        """Mean over levels and ordered pairs of D(T_{a->b}(S_a), sg(S_b)) (no sg if stop_gradient is off)."""
        losses = []
        for level in self.translated_levels:
            for source, target in self.pairs:
                predicted = self.translators[f"{source}__{target}"][level](features[source]["shared"][level])
                goal = features[target]["shared"][level]
                if self.config["stop_gradient"]:
                    goal = goal.detach()
                if self.config["distance"] == "cosine":
                    losses.append(-F.cosine_similarity(predicted, goal, dim=1).mean())
                else:
                    losses.append(F.mse_loss(F.normalize(predicted, dim=1), F.normalize(goal, dim=1)))
        return torch.stack(losses).mean()

    def _psa_loss(self, embeddings: Mapping[str, torch.Tensor], label: torch.Tensor, info: TrainStep) -> torch.Tensor:
        """Supervised cross-modal InfoNCE on the same sampled pixels of every pair of modalities."""
        settings = self.config["psa"]
        first = next(iter(embeddings.values()))
        small = F.interpolate(label[:, None].float(), size=first.shape[-2:], mode="nearest")[:, 0].long()
        seed = (info.seed * 1_000_003 + info.step * 1_009 + info.micro) % (2**31)
        if settings["sampling"] == "balanced":
            indices, sampled = class_balanced_sample(
                small,
                info.num_classes,
                max_samples=settings["max_samples"],
                max_views=settings["max_views"],
                min_pixels=settings["min_pixels"],
                seed=seed,
                ignore_index=info.ignore_index,
                mode=settings["mode"],
                per_image=settings["per_image"],
                backend=settings["backend"],
            )
        else:  # the same number of pixels, drawn uniformly over valid pixels: the "no class balance" ablation
            valid = torch.where(small == info.ignore_index, small, torch.zeros_like(small))
            indices, _ = class_balanced_sample(
                valid,
                1,
                max_samples=settings["max_samples"],
                max_views=settings["max_samples"],
                min_pixels=1,
                seed=seed,
                ignore_index=info.ignore_index,
                mode="all",
                backend=settings["backend"],
            )
            sampled = small.reshape(-1)[indices]
        projected = {
            name: F.normalize(self.projection(value), dim=1).permute(0, 2, 3, 1) for name, value in embeddings.items()
        }
        gather = functools.partial(gather_pixels, indices=indices, backend=settings["backend"])
        losses = [
            cross_modal_infonce(
                gather(projected[a]),
                gather(projected[b]),
                sampled,
                settings["temperature"],
                stop_grad_keys=settings["stop_grad_keys"],
                backend=settings["backend"],
            )
            for a, b in itertools.combinations(self.modality_names, 2)
        ]
        return torch.stack(losses).mean()

    @staticmethod
    def collapse_indicator(features: Mapping[str, Any]) -> torch.Tensor:
        """Mean per-channel standard deviation of the L2-normalised deepest shared features (0 = collapse)."""
        values = []
        for feature in features.values():
            deepest = F.normalize(feature["shared"][-1].float(), dim=1)
            values.append(deepest.transpose(0, 1).reshape(deepest.shape[1], -1).std(dim=1).mean())
        return torch.stack(values).mean()
