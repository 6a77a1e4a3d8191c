"""Imputation: fill in the missing modalities with generated ones, per sample (the `Imputation` mixin).

Shared by the imputation baselines `ae` and `cgan` (methods/imputation/model.py) and by `gemmnet`
(methods/gemmnet/model.py), which differ only in their networks; a numerical change here changes all three.

- A generator for modality m sees every other modality (zero where missing, via `torch.where`) plus one
  availability flag channel per other modality: GEMMNet's conditioning (github.com/nhikieu/GEMMNet,
  `gan_enhanced.py`; with M = 2 it is the code's nDSM->RGB and RGB->nDSM), written for any number of
  modalities (docs/methods/gemmnet.md). The AE and GAN baselines of GEMMNet's tables ("AE and GAN
  reconstruct the missing modality from the available ones", arXiv 2509.11102) use the same conditioning:
  our reconstruction of that one-line description (docs/methods/ae.md, docs/methods/cgan.md).
- The completed input is the real modality where it is available, the generated one where it is missing,
  chosen per sample; the generators learn an L1 reconstruction of the real (withheld) data on exactly the
  samples whose modality was withheld.
- The conditional GAN objectives are pix2pix's (Isola et al., CVPR 2017): the discriminator sees
  (condition, real) against (condition, generated) on the withheld samples, the condition being the
  generator's input (the other modalities); the generator gets adversarial + `l1_weight` x L1. `cgan` uses
  this form; GEMMNet overrides the pairing to condition on the real target itself, as its authors' code
  does (methods/gemmnet/model.py, `discriminator_condition`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import TrainStep


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
            generated = self._generate(index, inputs, available)
            completed[name] = torch.where(present.view(-1, 1, 1, 1), real, generated)
        return completed

    def _generate(self, target: int, inputs: Mapping[str, Tensor], available: Tensor) -> Tensor:
        """The generator of modality `target` on every sample; one that keeps BatchNorm statistics per input
        pattern (`patterns` > 0, methods/blocks/pix2pix.py) also gets each sample's pattern id."""
        generator = self.generators[self.modality_names[target]]
        condition = self._generator_input(target, inputs, available)
        if not getattr(generator, "patterns", 0):
            return generator(condition)
        return generator(condition, self._others_pattern(target, available))

    def _others_pattern(self, target: int, available: Tensor) -> Tensor:
        """(B,) long: which other modalities each sample has, as bits in modality order without `target`, in
        [0, 2^(M-1)); 0 (none) never reaches a generator whose output is used."""
        others = [index for index in range(len(self.modality_names)) if index != target]
        bits = [available[:, index].long() << bit for bit, index in enumerate(others)]
        return torch.stack(bits, dim=1).sum(dim=1)

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
