"""What a synthetic tile's draws fix before any modality is rendered: shared by the generator
(datasets/synthetic.py) and version 2's couplings (datasets/synthetic_couplings.py), which reads it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Scene:
    """What a tile's draws fix before any modality is rendered (shared by generator versions 1 and 2)."""

    label: np.ndarray  # (H, W) uint8 class per pixel
    terrain: np.ndarray  # (H, W) float64 ground height, m
    objects: np.ndarray  # (H, W) float32 height above the ground, m
    surface: np.ndarray  # (H, W) int8 index into SURFACE_KINDS
    optical_offset: np.ndarray  # (H, W, 3) per-object colour shift
    walls: list[tuple[slice, slice, float]]  # each building's rows, columns and roof height
