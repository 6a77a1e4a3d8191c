"""GEMMNet: generate the missing modalities, then segment with a hybrid multiscale fusion network.

Following the authors' code (github.com/nhikieu/GEMMNet, `gan_enhanced.py`; docs/methods/gemmnet.md),
written for M >= 2 modalities and batches that mix availability patterns:

- HyFEx + HyFMA are the mmFormer-2D network (methods/blocks/mmformer.py): per-modality 5-stage encoders
  with an intra-modal transformer, inter-modal transformer, region-fusion decoder with deep supervision
  and the shared separate decoder. Every modality is present after imputation, so the whole network
  runs on the completed input.
- Generators: per modality, pix2pix U-Net with a transformer bottleneck (`EnhancedGenerator`), conditioned
  on the other modalities (zeroed where missing) and their availability flags; the generated modality
  replaces the missing one per sample and is **not detached**: segmentation losses train the generators.
- PatchGAN per modality; GAN losses only where a modality was withheld (zero for complete samples).
  `discriminator_condition: target` (default) is what the authors' `gan_enhanced.py` feeds it: the pair
  (real target, real target) against (real target, generated), i.e. conditioned on the withheld modality
  itself (`ndsm_dis(ndsm, ndsm)`, `ndsm_dis(ndsm, ndsm_imputed)`); `others` is pix2pix's form (version 1):
  conditioned on the generator's input (the other modalities, zeroed where missing, + availability flags).
  `gan_update: alternating` (default) uses the engine's alternating update; `joint` reproduces the authors'
  single optimizer over G + D (the generator's adversarial term then also moves D).
- The generators' BatchNorm keeps its statistics per pattern of the other modalities
  (`generator_norm_stats: per_pattern`, version 4; methods/blocks/pix2pix.py `PatternBatchNorm2d`):
  with M >= 3 and one pattern per batch, shared statistics mix the patterns at evaluation. `shared` is
  version 3; with M = 2 and one pattern per batch both compute the same.
- CoLoss: fused + separate (per modality) + multiscale deep supervision, each mmFormer's wCE + Dice,
  plus `gan_weight` x (G [+ D when joint]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import TrainStep
from mmbench.methods.blocks.imputation import Imputation, check_gan_config
from mmbench.methods.blocks.mmformer import MmFormer
from mmbench.methods.blocks.pix2pix import DEPTH, BottleneckTransformer, PatchDiscriminator, Pix2PixGenerator

GAN_UPDATES = ("alternating", "joint")
DISCRIMINATOR_CONDITIONS = ("target", "others")
GENERATOR_NORM_STATS = ("per_pattern", "shared")


class Gemmnet(Imputation, MmFormer):
    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {**MmFormer.tiny_config, "generator_width": 4, "discriminator_width": 4}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        check_gan_config(config)
        if config["gan_update"] not in GAN_UPDATES:
            raise ConfigError(f"method.gan_update={config['gan_update']!r}: use {' or '.join(GAN_UPDATES)}")
        if config["discriminator_condition"] not in DISCRIMINATOR_CONDITIONS:
            raise ConfigError(
                f"method.discriminator_condition={config['discriminator_condition']!r}: "
                f"use {' or '.join(DISCRIMINATOR_CONDITIONS)}"
            )
        if config["generator_norm_stats"] not in GENERATOR_NORM_STATS:
            raise ConfigError(
                f"method.generator_norm_stats={config['generator_norm_stats']!r}: "
                f"use {' or '.join(GENERATOR_NORM_STATS)}"
            )
        super().__init__(modalities, num_classes, config)
        width = config["generator_width"]
        # per_pattern: one set of BatchNorm statistics per pattern of the other M - 1 modalities (version 4)
        patterns = 2 ** (len(modalities) - 1) if config["generator_norm_stats"] == "per_pattern" else 0
        bottleneck_channels = width * 2 ** (DEPTH - 1)

        def generator(name: str, channels: int) -> Pix2PixGenerator:
            bottleneck = BottleneckTransformer(
                bottleneck_channels, config["transformer_dim"], config["heads"], config["mlp_dim"], config["token_grid"]
            )
            return Pix2PixGenerator(
                self.condition_channels(name),
                channels,
                width,
                tanh=config["output"] == "tanh",
                bottleneck=bottleneck,
                patterns=patterns,
            )

        self.generators = nn.ModuleDict({name: generator(name, c) for name, c in modalities.items()})
        self.discriminators = nn.ModuleDict(
            {
                name: PatchDiscriminator(self.discriminator_condition_channels(name) + c, config["discriminator_width"])
                for name, c in modalities.items()
            }
        )

    def discriminator_condition_channels(self, name: str) -> int:
        """`target`: the real modality itself (the authors'); `others`: the generator's input."""
        if self.config["discriminator_condition"] == "target":
            return self.modalities[name]
        return self.condition_channels(name)

    def _pairs(
        self, inputs: Mapping[str, Tensor], available: Tensor, completed: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(rows, condition, real, generated) per withheld modality; with `target` the condition is the real
        withheld modality, as the authors' code feeds its discriminators."""
        if self.config["discriminator_condition"] == "others":
            return super()._pairs(inputs, available, completed)
        pairs = {}
        for index, name in enumerate(self.modality_names):
            rows = ~available[:, index]
            if bool(rows.any()):
                real = inputs[name][rows]
                pairs[name] = (rows, real, real, completed[name][rows])
        return pairs

    @property
    def has_split_interface(self) -> bool:
        """No: a missing modality's encoder input is generated from the others, so modalities meet first."""
        return False

    def _encode_completed(self, completed: Mapping[str, Tensor]) -> dict[str, Any]:
        return {name: self.encode(name, completed[name]) for name in self.modality_names}

    def forward(self, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        completed = self.complete(inputs, available)
        features = self._encode_completed(completed)
        return self.decode(features, torch.ones_like(available))

    # -- training (training_availability: mmFormer's, from `sampler`) ----------------------------
    def adversary_modules(self) -> list[nn.Module]:
        return [self.discriminators] if self.config["gan_update"] == "alternating" else []

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        completed = self.complete(inputs, available)
        features = self._encode_completed(completed)
        segmentation = self.segmentation_terms(features, torch.ones_like(available), label, info.ignore_index)
        generator = self.generator_terms(inputs, available, completed, self.config["l1_weight"])
        gan = generator["loss"]
        terms = {
            "fused": segmentation["fused"],
            "sep": segmentation["sep"],
            "deep": segmentation["deep"],
            "l1": generator["l1"],
            "g_adv": generator["g_adv"],
        }
        if self.config["gan_update"] == "joint":  # the authors' code: D's loss summed into the one objective
            discriminator = self.discriminator_terms(inputs, available, completed)
            gan = gan + discriminator["loss"]
            terms["d_loss"] = discriminator["loss"]
        total = segmentation["loss"] + self.config["gan_weight"] * gan
        return {"loss": total, **{name: value.detach() for name, value in terms.items()}}
