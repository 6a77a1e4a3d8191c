"""Imputation baselines: generate the missing modalities, then segment the completed input.

The AE and cGAN baselines of GEMMNet's tables ("AE and GAN reconstruct the missing modality from the
available ones"; reference/methods.md §4), written for any number of modalities:

- one generator per modality m, a small U-Net (3 strided stages down, 3 up with skips) whose input is
  every other modality (zero where missing, via `torch.where`) plus one availability flag channel per
  other modality, and whose output is modality m in the normalised input space;
- a full-modality segmenter (early-fusion ResNet + FPN) on the completed input: real channels where the
  modality is available, generated ones where it is missing, chosen per sample;
- training: `sampler` draws which modalities each sample keeps; the dropped ones are generated and the
  generators learn an L1 reconstruction of the real (withheld) data on exactly those samples; with
  `detach_imputation: false` the segmentation loss also trains the generators (as in GEMMNet).

`cgan` swaps the generators for pix2pix U-Nets and adds a conditional PatchGAN per modality, trained by
the engine's alternating update (`adversary_modules`): the discriminator sees (condition, real) against
(condition, generated) on the samples whose modality was withheld; the generators get adversarial +
`l1_weight` x L1, scaled by `gan_weight` in the total (GEMMNet's code scales its GAN terms by 0.05).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import SegmentationMethod, TrainStep
from mmbench.methods.blocks.backbones import resnet
from mmbench.methods.blocks.common import FPNDecoder, check_sampler, conv_bn_relu, sampled_availability, upsample
from mmbench.methods.imputation.pix2pix import PatchDiscriminator, Pix2PixGenerator


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


class Imputation:
    """Generators (and, for GANs, conditional discriminators) that fill in missing modalities.

    A mixin for `SegmentationMethod`s that set `self.generators` (and `self.discriminators`): `ae`, `cgan`
    and `gemmnet` share the conditioning, completion and GAN objectives, and differ in their networks.
    """

    modalities: dict[str, int]
    modality_names: tuple[str, ...]
    generators: nn.ModuleDict
    discriminators: nn.ModuleDict
    training_availability: Callable[[Mapping[str, Any], TrainStep], Tensor]

    def condition_channels(self, name: str) -> int:
        """Channels of a generator's input: every other modality plus its availability flag."""
        return sum(c + 1 for other, c in self.modalities.items() if other != name)

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
            completed[name] = torch.where(present.view(-1, 1, 1, 1), real, generated)
        return completed

    def _withheld_mean(self, errors: Mapping[str, Tensor], available: Tensor) -> Tensor:
        """Mean over the (sample, modality) pairs whose modality was withheld of per-sample `errors` (B,)."""
        total = torch.zeros((), device=available.device)
        count = torch.zeros((), device=available.device)
        for index, name in enumerate(self.modality_names):
            dropped = ~available[:, index]
            if name in errors and bool(dropped.any()):
                total = total + errors[name][dropped].sum()
                count = count + dropped.sum()
        return total / count.clamp_min(1)

    def _reconstruction(
        self, completed: Mapping[str, Tensor], inputs: Mapping[str, Tensor], available: Tensor
    ) -> Tensor:
        """L1 of the generated modalities against the real withheld ones (zero where the input was real)."""
        errors = {
            name: (completed[name] - inputs[name]).abs().flatten(1).mean(1)
            for name in self.modality_names
            if not bool(available[:, self.modality_names.index(name)].all())
        }
        return self._withheld_mean(errors, available)

    # -- conditional GAN ---------------------------------------------------------------------------
    def _pairs(
        self,
        inputs: Mapping[str, Tensor],
        available: Tensor,
        completed: Mapping[str, Tensor],
    ) -> dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per modality withheld somewhere: (rows, condition, real, generated), restricted to those rows."""
        pairs = {}
        for index, name in enumerate(self.modality_names):
            rows = ~available[:, index]
            if bool(rows.any()):
                condition = self._generator_input(index, inputs, available)[rows]
                pairs[name] = (rows, condition, inputs[name][rows], completed[name][rows])
        return pairs

    def discriminator_terms(
        self, inputs: Mapping[str, Tensor], available: Tensor, completed: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """pix2pix's D loss 0.5 x (BCE(real, 1) + BCE(generated, 0)), summed over withheld modalities; the
        generated inputs are detached (the generators never learn from this loss)."""
        real_terms, fake_terms = [], []
        for name, (_, condition, real, generated) in self._pairs(inputs, available, completed).items():
            discriminator = self.discriminators[name]
            real_score, fake_score = discriminator(condition, real), discriminator(condition, generated.detach())
            real_terms.append(F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score)))
            fake_terms.append(F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score)))
        zero = torch.zeros((), device=available.device)
        real_loss, fake_loss = sum(real_terms, zero), sum(fake_terms, zero)
        return {"loss": 0.5 * (real_loss + fake_loss), "d_real": real_loss.detach(), "d_fake": fake_loss.detach()}

    def adversary_loss(self, batch: Mapping[str, Any], info: TrainStep) -> dict[str, Tensor]:
        """The discriminators' step of the engine's alternating update: generated inputs under no_grad."""
        inputs = batch["inputs"]
        available = self.training_availability(batch, info)
        with torch.no_grad():
            completed = self.complete(inputs, available)
        return self.discriminator_terms(inputs, available, completed)

    def generator_terms(
        self, inputs: Mapping[str, Tensor], available: Tensor, completed: Mapping[str, Tensor], l1_weight: float
    ) -> dict[str, Tensor]:
        """pix2pix's G objective: BCE(D(condition, generated), 1) + l1_weight x L1, on withheld modalities only."""
        adversarial = torch.zeros((), device=available.device)
        for name, (_, condition, _, generated) in self._pairs(inputs, available, completed).items():
            score = self.discriminators[name](condition, generated)
            adversarial = adversarial + F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
        reconstruction = self._reconstruction(completed, inputs, available)
        return {"loss": adversarial + l1_weight * reconstruction, "g_adv": adversarial, "l1": reconstruction}


def check_gan_config(config: Mapping[str, Any]) -> None:
    for key in ("l1_weight", "gan_weight"):
        if config[key] < 0:
            raise ConfigError(f"method.{key}={config[key]} must be non-negative")
    if config["output"] not in ("linear", "tanh"):
        raise ConfigError(f"method.output={config['output']!r}: use linear or tanh")


class AutoencoderImputation(Imputation, SegmentationMethod):
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


class ConditionalGanImputation(AutoencoderImputation):
    """pix2pix generators + one conditional PatchGAN per modality; segmenter as in `ae`."""

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
        ce = F.cross_entropy(self._segment(completed), label, ignore_index=info.ignore_index)
        generator = self.generator_terms(inputs, available, completed, self.config["l1_weight"])
        total = ce + self.config["gan_weight"] * generator["loss"]
        return {"loss": total, "ce": ce.detach(), "l1": generator["l1"].detach(), "g_adv": generator["g_adv"].detach()}
