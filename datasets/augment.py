"""Joint augmentation with kornia: one geometric draw for every modality and the label, photometric
changes for optical bands only.

All modalities of a sample are stacked on the channel axis so that kornia draws each geometric
parameter once and applies it to every band; the label travels as a mask and is resampled with nearest
neighbour, so class ids (and the ignore index) are never blended. Each call is seeded from the
sample's own key, so a sample's augmentation does not depend on worker count or loading order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5
    vflip: float = 0.5
    rot90: bool = True
    scale: tuple[float, float] | None = (0.5, 1.0)  # RandomResizedCrop area range; None disables
    brightness: tuple[float, float] | None = (0.85, 1.15)  # optical only
    contrast: tuple[float, float] | None = (0.85, 1.15)  # optical only


class JointAugment:
    """Callable on one sample: `(inputs, label, key) -> (inputs, label)` with tensors (C, H, W) / (H, W).

    `photometric` names the modalities whose values are images in [0, 1] (the loader scales optical
    bands by their dtype range before calling, and back after).
    """

    def __init__(self, config: AugmentConfig = AugmentConfig(), photometric: Sequence[str] = ("optical",)) -> None:
        import kornia.augmentation as K

        self.config = config
        self.photometric = tuple(photometric)
        geometric = []
        if config.hflip:
            geometric.append(K.RandomHorizontalFlip(p=config.hflip))
        if config.vflip:
            geometric.append(K.RandomVerticalFlip(p=config.vflip))
        if config.rot90:
            geometric.append(K.RandomRotation90(times=(0, 3), p=1.0))
        self._scale = config.scale
        self._geometric = K.AugmentationSequential(*geometric, data_keys=["input", "mask"]) if geometric else None
        colour = []
        if config.brightness:
            colour.append(K.RandomBrightness(brightness=config.brightness, p=1.0))
        if config.contrast:
            colour.append(K.RandomContrast(contrast=config.contrast, p=1.0))
        self._colour = K.AugmentationSequential(*colour) if colour else None
        self._zooms: dict[tuple[int, int], K.AugmentationSequential] = {}

    def _zoom(self, size: tuple[int, int]):
        """Zoom in on a random square part and resize back: scale augmentation without padding."""
        if size not in self._zooms:
            import kornia.augmentation as K

            self._zooms[size] = K.AugmentationSequential(
                K.RandomResizedCrop(size, scale=self._scale, ratio=(1.0, 1.0), p=1.0), data_keys=["input", "mask"]
            )
        return self._zooms[size]

    def __call__(
        self, inputs: Mapping[str, torch.Tensor], label: torch.Tensor, key: Sequence[int]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        names = list(inputs)
        channels = [inputs[name].shape[0] for name in names]
        stacked = torch.cat([inputs[name] for name in names]).unsqueeze(0)
        mask = label.unsqueeze(0).unsqueeze(0).float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from_key(key))
            if self._geometric is not None:
                stacked, mask = self._geometric(stacked, mask)
            if self._scale is not None:
                stacked, mask = self._zoom(tuple(stacked.shape[-2:]))(stacked, mask)
            outputs = dict(zip(names, torch.split(stacked.squeeze(0), channels), strict=True))
            if self._colour is not None:
                for name in self.photometric:
                    if name in outputs:
                        outputs[name] = self._colour(outputs[name].unsqueeze(0)).squeeze(0)
        return {name: tensor.contiguous() for name, tensor in outputs.items()}, mask[0, 0].round().long()


def _seed_from_key(key: Sequence[int]) -> int:
    # numpy's SeedSequence mixes the key well and is stable across versions and platforms.
    import numpy as np

    return int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint32)[0])
