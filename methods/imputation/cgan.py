"""cGAN imputation baseline (`cgan`): the `ae` model (methods/imputation/model.py) with pix2pix generators and
a conditional PatchGAN per modality.

The cGAN baseline of GEMMNet's tables ("AE and GAN reconstruct the missing modality from the available
ones", arXiv 2509.11102; docs/methods/cgan.md), written for any number of modalities. The generators are
pix2pix U-Nets (methods/blocks/pix2pix.py, as GEMMNet's code uses them); the discriminators are trained by the
engine's alternating update (`adversary_modules`): they see (condition, real) against (condition, generated)
on the samples whose modality was withheld; the generators get adversarial + `l1_weight` x L1, scaled by
`gan_weight` in the total (GEMMNet's code scales its GAN terms by 0.05). The GAN objectives are the
`Imputation` mixin's (methods/blocks/imputation.py), shared with `gemmnet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from mmbench.method import TrainStep
from mmbench.methods.blocks.imputation import check_gan_config
from mmbench.methods.blocks.pix2pix import PatchDiscriminator, Pix2PixGenerator
from mmbench.methods.imputation.model import AutoencoderImputation, logged


class ConditionalGanImputation(AutoencoderImputation):
    """pix2pix generators + one conditional PatchGAN per modality; segmenter as in `ae` (`segmenter`:
    early-fusion ResNet + FPN, or GEMMNet's mmFormer-2D to compare imputers with `gemmnet` alone)."""

    # Overrides of the defaults giving the narrowest network of the same family, for fast CPU checks
    # (tests/test_comparison_methods.py builds every registered method with them).
    tiny_config: ClassVar[dict[str, Any]] = {**AutoencoderImputation.tiny_config, "discriminator_width": 4}

    def __init__(self, modalities: Mapping[str, int], num_classes: int, config: Mapping[str, Any]) -> None:
        check_gan_config(config)
        super().__init__(modalities, num_classes, config)
        self.discriminators = nn.ModuleDict(
            {
                name: PatchDiscriminator(self.condition_channels(name) + c, config["discriminator_width"])
                for name, c in modalities.items()
            }
        )

    def _generator(self, inp: int, out: int) -> nn.Module:
        return Pix2PixGenerator(inp, out, self.config["generator_width"], tanh=self.config["output"] == "tanh")

    def adversary_modules(self) -> list[nn.Module]:
        return [self.discriminators]

    def training_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        inputs, label = batch["inputs"], batch["label"]
        available = self.training_availability(batch, info)
        completed = self.complete(inputs, available)
        segmentation = self._segmentation_terms(completed, label, info.ignore_index)
        generator = self.generator_terms(inputs, available, completed, self.config["l1_weight"])
        total = segmentation["loss"] + self.config["gan_weight"] * generator["loss"]
        return {
            "loss": total,
            **logged(segmentation),
            "l1": generator["l1"].detach(),
            "g_adv": generator["g_adv"].detach(),
        }
