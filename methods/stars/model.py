"""The STARS network and its training losses (reconstruction; see docs/methods/stars.md).

Per modality m: a stem (modalities differ in channels), a shared encoder S (weights common to all
modalities) and a specific encoder P. At each pyramid level l, translators T_{a->b} map shared features
between modalities; a missing modality's shared features are the mean of the translations from the
available ones. Per modality F_m = S_m + Conv3x3([S_m, P_m]) (ShaSpec's composition) when present,
F_m = translation when missing; scSE on each, then a 1x1 merge of all M (also scSE), an FPN and a light
decoder at stride 4. Training: cross-entropy on the full branch and on a missing branch (a random
proper subset per sample), the stop-gradient translation loss D(T_{a->b}(S_a), sg(S_b)) in both
directions, and PSA: a supervised cross-modal InfoNCE on class-balanced pixel samples, between the
real embeddings of every pair of modalities and between each translated embedding and the real one of
its modality (`psa.branch`), computed by `mmbench.kernels`. The shared encoder's BatchNorm sees the
modalities jointly by default (`shared_norm`, methods/blocks/shared_encoder.py). Every component's
source and switch: docs/methods/stars.md.
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
from mmbench.kernels.psa import class_balanced_sample, cross_modal_infonce, gather_pixels, hard_easy_sample
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.common import conv_bn_relu
from mmbench.methods.blocks.shared_encoder import (
    SHARED_NORMS,
    build_shared_specific,
    encode_shared_specific,
)
from mmbench.methods.stars.reuse import StepReuse
from mmbench.sampling import sample_availability

PSA_BRANCHES = ("both", "full", "missing", "v1")
DECODER_NORMS = ("per_branch", "joint")  # the decoder's BatchNorm batches: one per branch, or both branches in one


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
        choices = {
            "translator": ("learned", "copy"),
            "shared_norm": SHARED_NORMS,
            "psa.sampling": ("balanced", "uniform"),
            "psa.branch": PSA_BRANCHES,
            "psa.anchors": ("uniform", "hard-easy"),
            "psa.uniform_count": ("matched", "max_samples"),
            "decoder_norm": DECODER_NORMS,
        }
        for key, allowed in choices.items():
            section, _, name = key.rpartition(".")
            value = (config[section] if section else config)[name]
            if value not in allowed:
                raise ConfigError(f"method.{key}={value!r}: use one of {', '.join(allowed)}")
        psa = config["psa"]
        if psa["anchors"] == "hard-easy" and (psa["mode"] != "all" or psa["per_image"]):
            raise ConfigError(
                "method.psa.anchors=hard-easy draws batch-level quotas in mode 'all'; "
                "set method.psa.mode=all and method.psa.per_image=false, or use psa.anchors=uniform"
            )
        self.stems, self.shared, self.specific, self.shared_encoder = build_shared_specific(modalities, config)
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
                        Translator(c)
                        if level in self.translated_levels and config["translator"] == "learned"
                        else nn.Identity()
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
        # Built last so that switching it on leaves every other initial weight unchanged.
        self.modality_classifier = (
            nn.Linear(specific_channels[-1], len(modalities)) if config["loss"]["modality_classification"] > 0 else None
        )

    # -- split interface -----------------------------------------------------------------------
    def encode(self, name: str, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        return {
            "shared": self.shared_encoder.forward_one(name, self.stems[name](x)),
            "specific": self.specific[name](x),
        }

    def encode_available(self, inputs: Mapping[str, torch.Tensor], available: torch.Tensor) -> dict[str, Any]:
        """With `shared_norm: joint` the shared encoder runs once on every present modality together."""
        return encode_shared_specific(
            self.modality_names, inputs, available, self.stems, self.shared_encoder, self.specific
        )

    def decode(self, features: Mapping[str, Any], available: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self._decode(features, available)
        return logits

    def forward(self, inputs: Mapping[str, torch.Tensor], available: torch.Tensor) -> torch.Tensor:
        features = self.encode_available(inputs, available)
        return self.decode(features, available)

    def translated_shared(
        self, features: Mapping[str, Any], available: torch.Tensor, target: str, level: int
    ) -> torch.Tensor:
        """What the decoder gets for a missing `target`'s shared features at pyramid `level` from the modalities
        in `features` (available per `available`): the diagnostic benchmarks/imputation_recovery.py scores it
        against the target's real shared features."""
        reference = next(iter(features.values()))["shared"][level]
        return self._translate(features, available, target, level, reference)

    # -- the network ---------------------------------------------------------------------------
    def _translate(
        self,
        features: Mapping[str, Any],
        available: torch.Tensor,
        target: str,
        level: int,
        reference: torch.Tensor,
        reuse: StepReuse | None = None,
    ) -> torch.Tensor:
        """Mean over the available sources a of T_{a->target}(S_a) (or of S_a without translation)."""
        total = torch.zeros_like(reference)
        count = torch.zeros(reference.shape[0], 1, 1, 1, device=reference.device, dtype=reference.dtype)
        for index, source in enumerate(self.modality_names):
            if source == target or source not in features:
                continue
            mask = available[:, index].view(-1, 1, 1, 1)
            shared = self._translation(features, source, target, level, reuse)  # Identity: translator "copy"
            total = total + torch.where(mask, shared, 0.0)
            count = count + mask.to(reference.dtype)
        return total / count.clamp_min(1)

    def _translation(
        self, features: Mapping[str, Any], source: str, target: str, level: int, reuse: StepReuse | None
    ) -> torch.Tensor:
        """T_{source->target}(S_source) at `level`, computed once per step when `reuse` is given."""
        translator = self.translators[f"{source}__{target}"][level]
        if reuse is None:
            return translator(features[source]["shared"][level])
        return reuse.translation(translator, (source, target, level), features[source]["shared"][level])

    def _decode(
        self,
        features: Mapping[str, Any],
        available: torch.Tensor,
        reuse: StepReuse | None = None,
    ):
        """Logits, per-modality stride-4 fused features (for PSA) and the merged pyramid; with `reuse` (a
        training step's, `reuse_across_branches`) compositions and translations already computed this step are
        read back instead of recomputed."""
        merged, per_modality_c2 = self._fuse(features, available, reuse)
        return self._head(merged), per_modality_c2, merged

    def _fuse(
        self, features: Mapping[str, Any], available: torch.Tensor, reuse: StepReuse | None = None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The merged pyramid of one availability (translations standing in for the missing modalities) and
        the per-modality stride-4 features PSA reads. The decoder's BatchNorm is in `_head`; the translators'
        here normalise one source modality's shared features, whatever the branch."""
        present = next(iter(features.values()))["shared"]
        merged, per_modality_c2 = [], {}
        for level in range(self.levels):
            reference = present[level]
            fused = []
            for index, name in enumerate(self.modality_names):
                present_rows = available[:, index]
                if name in features:
                    value = reuse.compositions.get((name, level)) if reuse is not None else None
                    if value is None:
                        shared = features[name]["shared"][level]
                        specific = features[name]["specific"][level]
                        value = shared + self.compose[name][level](torch.cat([shared, specific], dim=1))
                        if reuse is not None:
                            reuse.compositions[(name, level)] = value
                    if not bool(present_rows.all()):  # translate only for the samples that lack the modality
                        translated = self._translate(features, available, name, level, reference, reuse)
                        value = torch.where(present_rows.view(-1, 1, 1, 1), value, translated)
                else:
                    value = self._translate(features, available, name, level, reference, reuse)
                value = self.modality_attention[name][level](value)
                fused.append(value)
                if level == 0:
                    per_modality_c2[name] = value
            merged.append(self.merge_attention[level](self.merge[level](torch.cat(fused, dim=1))))
        return merged, per_modality_c2

    def _head(self, merged: list[torch.Tensor]) -> torch.Tensor:
        """FPN, the light decoder (conv-BN-ReLU per level) and the classifier, upsampled to the input size."""
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
        return F.interpolate(logits, size=full_size, mode="bilinear", align_corners=False)

    def _decode_branches(
        self, features: Mapping[str, Any], everything: torch.Tensor, missing: torch.Tensor, reuse: StepReuse | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and PSA features of the full and the missing branch of a training step.

        `decoder_norm: per_branch` (version 3) decodes each branch in its own call, so the decoder's BatchNorm
        normalises the full branch with full-pattern statistics and the missing branch with its own, while the
        running statistics evaluation uses average the two kinds of batch. `joint` decodes both branches in one
        call: every training row is normalised with the statistics of the mixture the running statistics hold
        (docs/methods/stars.md, "The decoder's BatchNorm").
        """
        if self.config["decoder_norm"] == "per_branch":
            full_logits, full_embeddings, _ = self._decode(features, everything, reuse)
            missing_logits, missing_embeddings, _ = self._decode(features, missing, reuse)
            return full_logits, full_embeddings, missing_logits, missing_embeddings
        full_merged, full_embeddings = self._fuse(features, everything, reuse)
        missing_merged, missing_embeddings = self._fuse(features, missing, reuse)
        logits = self._head([torch.cat(pair) for pair in zip(full_merged, missing_merged, strict=True)])
        full_logits, missing_logits = logits.chunk(2)
        return full_logits, full_embeddings, missing_logits, missing_embeddings

    # -- training ------------------------------------------------------------------------------
    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, torch.Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        everything = torch.ones(label.shape[0], len(self.modality_names), dtype=torch.bool, device=label.device)
        features = self.encode_available(inputs, everything)
        weights = self.config["loss"]
        # Version 2 (reuse_across_branches: false) computed these twice per step (methods/stars/reuse.py).
        reuse = StepReuse() if self.config.get("reuse_across_branches", False) else None
        slots = batch["slots"].tolist() if "slots" in batch else range(label.shape[0])
        missing = sample_availability(
            self.config["missing_sampler"],
            len(self.modality_names),
            slots,
            (info.seed, info.step, info.micro),
            include_full=False,
            device=label.device,
        )
        full_logits, full_embeddings, missing_logits, missing_embeddings = self._decode_branches(
            features, everything, missing, reuse
        )
        ce_full = F.cross_entropy(full_logits, label, ignore_index=info.ignore_index)
        ce_missing = F.cross_entropy(missing_logits, label, ignore_index=info.ignore_index)
        terms = {"ce_full": ce_full, "ce_missing": ce_missing}
        total = weights["ce_full"] * ce_full + weights["ce_missing"] * ce_missing
        if weights["translation"] > 0:
            terms["translation"] = self._translation_loss(features, reuse)
            total = total + weights["translation"] * terms["translation"]
        if weights["shared_alignment"] > 0:
            terms["shared_l1"] = self._shared_alignment(features)
            total = total + weights["shared_alignment"] * terms["shared_l1"]
        if self.modality_classifier is not None:
            terms["modality_ce"] = self._modality_classification(features)
            total = total + weights["modality_classification"] * terms["modality_ce"]
        if self.config["psa"]["enabled"]:
            predictions = missing_logits if self.config["psa"]["anchors"] == "hard-easy" else None
            terms["psa"] = self._psa_loss(full_embeddings, missing_embeddings, missing, label, info, predictions)
            total = total + self.config["psa"]["weight"] * terms["psa"]
        with torch.no_grad():
            terms["shared_std"] = self.collapse_indicator(features)
        return {"loss": total, **terms}

    def _translation_loss(self, features: Mapping[str, Any], reuse: StepReuse | None = None) -> torch.Tensor:
        """Mean over levels and ordered pairs of D(T_{a->b}(S_a), sg(S_b)) (no sg if stop_gradient is off).

        With `translator: copy` T is the identity, so the term aligns the shared features themselves
        (asymmetrically under stop-gradient): the copy ablation changes the translator and nothing else.
        """
        losses = []
        for level in self.translated_levels:
            for source, target in self.pairs:
                predicted = self._translation(features, source, target, level, reuse)
                goal = features[target]["shared"][level]
                if self.config["stop_gradient"]:
                    goal = goal.detach()
                if self.config["distance"] == "cosine":
                    losses.append(-F.cosine_similarity(predicted, goal, dim=1).mean())
                else:
                    losses.append(F.mse_loss(F.normalize(predicted, dim=1), F.normalize(goal, dim=1)))
        return torch.stack(losses).mean()

    def _shared_alignment(self, features: Mapping[str, Any]) -> torch.Tensor:
        """ShaSpec's symmetric L1 between the deepest shared features of consecutive modalities (cyclic;
        one pair with two modalities), averaged over pairs: github.com/billhhh/ShaSpec `train_SS.py`
        weighs it by alpha = 0.1. STARS trains on complete data, so every pair is available."""
        names = self.modality_names
        pairs = [(i, (i + 1) % len(names)) for i in range(len(names))] if len(names) > 2 else [(0, 1)]
        deepest = [features[name]["shared"][-1] for name in names]
        return torch.stack([(deepest[a] - deepest[b]).abs().mean() for a, b in pairs]).mean()

    def _modality_classification(self, features: Mapping[str, Any]) -> torch.Tensor:
        """ShaSpec's domain classification: CE of a linear classifier naming the modality from its pooled
        deepest *specific* feature (beta = 0.02 in ShaSpec's `train_SS.py`), which keeps the specific
        encoders specific."""
        assert self.modality_classifier is not None
        logits, targets = [], []
        for index, name in enumerate(self.modality_names):
            pooled = F.adaptive_avg_pool2d(features[name]["specific"][-1], 1).flatten(1)
            logits.append(self.modality_classifier(pooled))
            targets.append(torch.full((pooled.shape[0],), index, dtype=torch.long, device=pooled.device))
        return F.cross_entropy(torch.cat(logits), torch.cat(targets))

    # -- PSA -----------------------------------------------------------------------------------
    def _psa_sample(
        self, small: torch.Tensor, info: TrainStep, hard: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's anchor pixels (flat indices into the stride-4 label map) and their labels.

        One draw serves every PSA term of the step, so all pairs compare the same pixels.
        `sampling: uniform` draws exactly as many pixels as the class-balanced sampler drew at this
        step, uniformly over valid pixels: the ablation changes the balance and nothing else.
        """
        settings = self.config["psa"]
        seed = (info.seed * 1_000_003 + info.step * 1_009 + info.micro) % (2**31)
        if hard is not None:
            indices, sampled = hard_easy_sample(
                small,
                hard,
                info.num_classes,
                max_samples=settings["max_samples"],
                max_views=settings["max_views"],
                min_pixels=settings["min_pixels"],
                seed=seed,
                ignore_index=info.ignore_index,
            )
        else:
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
        if settings["sampling"] == "balanced":
            return indices, sampled
        count = int(indices.numel()) if settings["uniform_count"] == "matched" else settings["max_samples"]
        if count == 0:
            return indices, sampled
        valid = torch.where(small == info.ignore_index, small, torch.zeros_like(small))
        indices, _ = class_balanced_sample(
            valid,
            1,
            max_samples=count,
            max_views=count,
            min_pixels=1,
            seed=seed,
            ignore_index=info.ignore_index,
            mode="all",
            backend=settings["backend"],
        )
        return indices, small.reshape(-1)[indices]

    def _infonce(self, z_a: torch.Tensor, z_b: torch.Tensor, labels: torch.Tensor, stop_grad_keys: bool):
        settings = self.config["psa"]
        loss = cross_modal_infonce(
            z_a, z_b, labels, settings["temperature"], stop_grad_keys=stop_grad_keys, backend=settings["backend"]
        )
        if settings["base_temperature"] is not None:  # ContrastiveSeg's (tau / base_tau) scaling
            loss = loss * (settings["temperature"] / settings["base_temperature"])
        return loss

    def _psa_loss(
        self,
        full: Mapping[str, torch.Tensor],
        translated: Mapping[str, torch.Tensor],
        missing: torch.Tensor,
        label: torch.Tensor,
        info: TrainStep,
        predictions: torch.Tensor | None,
    ) -> torch.Tensor:
        """PSA over the terms `psa.branch` selects, on one class-balanced sample of pixels.

        - *full*: supervised cross-modal InfoNCE between the full branch's (all real) embeddings of
          every pair of modalities;
        - *missing*: for every sample and modality that the missing branch translated, the translated
          embedding against that modality's **real** full-branch embedding at the same pixels, so
          translations are pulled towards class-consistent real features (the reference's reading of
          PSA); `stop_grad_keys` detaches the real side;
        - *both*: the mean of the two;
        - *v1*: version 1's pairing, every pair of the missing branch's embeddings. With two modalities
          that aligns a real feature with its own translation and never reaches the missing modality's
          real features; kept so version-1 records stay reproducible.
        """
        settings = self.config["psa"]
        first = next(iter(full.values()))
        small = F.interpolate(label[:, None].float(), size=first.shape[-2:], mode="nearest")[:, 0].long()
        hard = None
        if predictions is not None:
            with torch.no_grad():
                predicted = F.interpolate(predictions, size=first.shape[-2:], mode="bilinear", align_corners=False)
                hard = predicted.argmax(1) != small
        indices, sampled = self._psa_sample(small, info, hard)
        gather = functools.partial(gather_pixels, indices=indices, backend=settings["backend"])
        branch = settings["branch"]
        if branch == "v1":
            projected = {name: self._project(value) for name, value in translated.items()}
            pairs = itertools.combinations(self.modality_names, 2)
            losses = [
                self._infonce(gather(projected[a]), gather(projected[b]), sampled, settings["stop_grad_keys"])
                for a, b in pairs
            ]
            return torch.stack(losses).mean()

        lacking = {name: ~missing[:, i] for i, name in enumerate(self.modality_names) if not bool(missing[:, i].all())}
        per_image = small.shape[-2] * small.shape[-1]
        image = indices // per_image
        # (map, pixels to project) per embedding; translated maps hold only the rows that were translated
        wanted = {name: (full[name], indices) for name in (self.modality_names if branch != "missing" else lacking)}
        kept: dict[str, torch.Tensor] = {}
        if branch != "full":
            for name, rows in lacking.items():
                keep = rows[image]
                if not bool(keep.any()):
                    continue
                row_in_subset = (torch.cumsum(rows.long(), 0) - 1)[image[keep]]
                wanted[f"translated:{name}"] = (
                    translated[name][rows],
                    row_in_subset * per_image + indices[keep] % per_image,
                )
                kept[name] = keep
        projected = self._project_at(wanted)
        parts = []
        if branch in ("full", "both"):
            full_terms = [
                self._infonce(projected[a], projected[b], sampled, settings["stop_grad_keys"])
                for a, b in itertools.combinations(self.modality_names, 2)
            ]
            parts.append(torch.stack(full_terms).mean())
        if kept:
            missing_terms = []
            for name, keep in kept.items():
                real_side = projected[name][keep]
                if settings["stop_grad_keys"]:
                    real_side = real_side.detach()
                missing_terms.append(self._infonce(projected[f"translated:{name}"], real_side, sampled[keep], False))
            parts.append(torch.stack(missing_terms).mean())
        if not parts:  # nothing sampled: a zero that keeps the graph connected
            return first.sum() * 0.0
        return torch.stack(parts).mean()

    def _project(self, embedding: torch.Tensor) -> torch.Tensor:
        """The PSA projection head on one map, L2-normalised, channels last."""
        return F.normalize(self.projection(embedding), dim=1).permute(0, 2, 3, 1)

    def _project_at(self, wanted: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The projection head's unit vectors at the sampled pixels of several maps.

        The head is Conv1x1-BN-ReLU-Conv1x1. The first 1x1 conv and the BatchNorm run on every pixel of
        every map (the BatchNorm's statistics are over all of them, in one call: one batch statistic over
        every embedding PSA compares), written as a matmul on channels-last rows, which is the same
        function as the conv and several times cheaper on CPU for these narrow maps. Everything after
        the BatchNorm is per pixel, so only the sampled pixels pass ReLU, the 1x1 to `embedding_dim` and
        the normalisation. Together: the same function as projecting whole maps and then gathering, to
        float rounding (tests/test_stars_fidelity.py), at a fraction of the cost.
        """
        if not wanted:
            return {}
        backend = self.config["psa"]["backend"]
        names = list(wanted)
        first, norm = self.projection[0][0], self.projection[0][1]
        channels = first.in_channels
        rows = [wanted[name][0].permute(0, 2, 3, 1).reshape(-1, channels) for name in names]
        hidden = F.linear(torch.cat(rows), first.weight.view(first.out_channels, channels), first.bias)
        hidden = norm(hidden.view(*hidden.shape, 1, 1)).view(hidden.shape)
        last = self.projection[1]
        weight = last.weight.view(last.out_channels, last.in_channels)
        projected = {}
        for name, part in zip(names, torch.split(hidden, [r.shape[0] for r in rows]), strict=True):
            picked = gather_pixels(part, wanted[name][1], backend=backend)
            projected[name] = F.normalize(F.linear(F.relu(picked), weight, last.bias), dim=1)
        return projected

    @staticmethod
    def collapse_indicator(features: Mapping[str, Any]) -> torch.Tensor:
        """Mean per-channel standard deviation of the L2-normalised deepest shared features (0 = collapse)."""
        values = []
        for feature in features.values():
            deepest = F.normalize(feature["shared"][-1].float(), dim=1)
            values.append(deepest.transpose(0, 1).reshape(deepest.shape[1], -1).std(dim=1).mean())
        return torch.stack(values).mean()
