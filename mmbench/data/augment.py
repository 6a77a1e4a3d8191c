"""Joint augmentation: one geometric draw for every modality and the label, photometric changes for the
modalities that take them (optical by default), and per-modality limits on both.

Geometric transforms are exact tensor ops (flips, 90-degree rotations, zoom by crop-and-resize) with
the label resampled by nearest neighbour, so class ids and the ignore index are never blended. They are
written with torch rather than kornia's augmentation classes because kornia routes even a 90-degree
rotation through an affine warp: inexact and 10-100x slower per CPU sample (1.7 ms vs 0.03 ms
measured), which would make augmentation the training bottleneck. Photometric changes use kornia's
functional `adjust_brightness` / `adjust_contrast`.

Modalities are co-registered, so a geometric transform must move all of them or none. Some data does not
tolerate every transform: a side-looking SAR image has a look direction (the synthetic SAR looks from the
left, datasets/synthetic.py), which a horizontal flip reverses and a quarter turn rotates, so the flipped
image shows shadows no real acquisition of the scene has. `geometry` says which geometric transforms each
modality tolerates; a sample gets only those every modality in it tolerates (docs/training.md).

All random parameters come from a generator keyed by the sample (seed, epoch, tile), so a sample's
augmentation does not depend on worker count or loading order, and no global RNG is touched. The draws
are the same whatever the limits: a transform a modality does not tolerate is drawn and not applied, so a
limit changes only that transform, and data without limits gets exactly the draws it always had.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The geometric transforms, in the order they are drawn. `rot90` means any non-zero quarter turn (90, 180
# or 270 degrees); `zoom` is crop-and-resize (`AugmentConfig.scale`).
GEOMETRIC = ("hflip", "vflip", "rot90", "zoom")
# Everything a modality may be allowed or refused per modality (`method.train.augment_modalities`).
TRANSFORMS = (*GEOMETRIC, "photometric")
# Modalities that take photometric changes unless the config says otherwise (integer imagery only).
DEFAULT_PHOTOMETRIC = ("optical",)


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5  # probability
    vflip: float = 0.5  # probability
    rot90: bool = True  # uniform over 0/90/180/270 degrees
    scale: tuple[float, float] | None = (0.5, 1.0)  # zoom: area fraction kept, resized back; None disables
    brightness: tuple[float, float] | None = (-0.1, 0.1)  # additive, on [0, 1] optical values
    contrast: tuple[float, float] | None = (0.85, 1.15)  # multiplicative, on [0, 1] optical values


class JointAugment:
    """Callable on one sample: `(inputs, label, key) -> (inputs, label)`, tensors (C, H, W) and (H, W).

    `photometric` names the modalities that receive brightness/contrast changes; the loader passes
    them scaled to [0, 1] (integer imagery divided by its dtype range) and scales them back.
    `geometry` maps a modality to the geometric transforms (names from `GEOMETRIC`) it tolerates; a
    modality it does not name tolerates all of them. A sample is moved only by the transforms every one
    of its modalities tolerates.
    """

    def __init__(
        self,
        config: AugmentConfig = AugmentConfig(),
        photometric: Sequence[str] = DEFAULT_PHOTOMETRIC,
        geometry: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.config = config
        self.photometric = tuple(photometric)
        self.geometry = {name: frozenset(allowed) for name, allowed in (geometry or {}).items()}
        for name, allowed in self.geometry.items():
            unknown = sorted(allowed - set(GEOMETRIC))
            if unknown:
                raise ValueError(
                    f"modality {name!r}: unknown geometric transform {unknown[0]!r}; use {', '.join(GEOMETRIC)}"
                )

    def allowed(self, modalities: Collection[str]) -> frozenset[str]:
        """The geometric transforms every one of `modalities` tolerates."""
        allowed = frozenset(GEOMETRIC)
        for name in modalities:
            allowed &= self.geometry.get(name, allowed)
        return allowed

    def __call__(
        self, inputs: Mapping[str, torch.Tensor], label: torch.Tensor, key: Sequence[int]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        rng = np.random.default_rng([*key, 0x5EED])
        config = self.config
        names = list(inputs)
        allowed = self.allowed(names)
        channels = [inputs[name].shape[0] for name in names]
        stacked = torch.cat([inputs[name] for name in names])
        mask = label

        # Every draw happens whatever is allowed, so that a refused transform changes nothing else.
        if config.hflip and rng.random() < config.hflip and "hflip" in allowed:
            stacked, mask = stacked.flip(-1), mask.flip(-1)
        if config.vflip and rng.random() < config.vflip and "vflip" in allowed:
            stacked, mask = stacked.flip(-2), mask.flip(-2)
        if config.rot90:
            turns = int(rng.integers(4))
            if "rot90" in allowed:
                stacked, mask = stacked.rot90(turns, (-2, -1)), mask.rot90(turns, (-2, -1))
        if config.scale is not None:
            crop = _zoom_window(stacked.shape[-2:], rng, config.scale)
            if "zoom" in allowed:
                stacked, mask = _zoom(stacked, mask, crop)

        outputs = dict(zip(names, torch.split(stacked, channels), strict=True))
        if config.brightness is not None or config.contrast is not None:
            import kornia.enhance

            for name in self.photometric:
                if name not in outputs:
                    continue
                image = outputs[name].unsqueeze(0)
                if config.contrast is not None:
                    image = kornia.enhance.adjust_contrast(image, float(rng.uniform(*config.contrast)))
                if config.brightness is not None:
                    image = kornia.enhance.adjust_brightness(image, float(rng.uniform(*config.brightness)))
                outputs[name] = image.squeeze(0)
        return {name: tensor.contiguous() for name, tensor in outputs.items()}, mask.contiguous()


def modality_augment(
    modalities: Sequence[str],
    *,
    declared: Mapping[str, Collection[str]] | None = None,
    overrides: Mapping[str, Mapping[str, bool]] | None = None,
) -> tuple[dict[str, frozenset[str]], tuple[str, ...]]:
    """`(geometry, photometric)` for `JointAugment`: what each of `modalities` tolerates.

    `declared` is the dataset's default (modality -> geometric transforms it tolerates; unnamed: all);
    `overrides` the config's per-modality switches (modality -> {transform: bool}, transforms from
    `TRANSFORMS`), which win. Photometric changes go to `DEFAULT_PHOTOMETRIC` unless overridden. The caller
    checks names and types (the engine does, with the config key in its messages).
    """
    declared, overrides = declared or {}, overrides or {}
    geometry: dict[str, frozenset[str]] = {}
    photometric: list[str] = []
    for name in modalities:
        allowed = set(declared.get(name, GEOMETRIC))
        switches = overrides.get(name, {})
        for transform in GEOMETRIC:
            if transform in switches:
                (allowed.add if switches[transform] else allowed.discard)(transform)
        if allowed != set(GEOMETRIC):
            geometry[name] = frozenset(allowed)
        if switches.get("photometric", name in DEFAULT_PHOTOMETRIC):
            photometric.append(name)
    return geometry, tuple(photometric)


def _zoom_window(
    size: Sequence[int], rng: np.random.Generator, scale: tuple[float, float]
) -> tuple[int, int, int, int]:
    """A random square window `(top, left, height, width)` covering `scale` of the area."""
    height, width = size
    fraction = float(np.sqrt(rng.uniform(*scale)))
    crop_h, crop_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
    return top, left, crop_h, crop_w


def _zoom(
    stacked: torch.Tensor, mask: torch.Tensor, window: tuple[int, int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop `window` and resize it back (bilinear for the data, nearest for the label)."""
    height, width = stacked.shape[-2:]
    top, left, crop_h, crop_w = window
    if (crop_h, crop_w) == (height, width):
        return stacked, mask
    region = stacked[None, :, top : top + crop_h, left : left + crop_w]
    resized = F.interpolate(region, size=(height, width), mode="bilinear", align_corners=False)[0]
    labels = mask[None, None, top : top + crop_h, left : left + crop_w].float()
    return resized, F.interpolate(labels, size=(height, width), mode="nearest")[0, 0].to(mask.dtype)
