"""Synthetic benchmark version 2: physically motivated couplings that make each modality's class evidence
partly recoverable from the others, scaled by one knob, `redundancy` in [0, 1].

Version 1 (`datasets/synthetic.py`) is non-redundant by design: roofs take the pavement colours, crowns the
grass colours, the DSM is blind to clutter, and hidden clutter shows only in the SAR. Translating or imputing a
missing modality there can recover geometry and little else, so methods built on that idea (STARS'
translators, GEMMNet/AE/cGAN imputation, DIS2's distillation) have nothing to work with. Each coupling below
adds shared structure a real scene has; all are multiplied by `redundancy`, so 0 is version 1 array for
array (`tests/test_synthetic_v2.py` checks it) and 1 is the strongest setting. docs/synthetic.md measures what
each level makes recoverable.

- cast shadows: the sun shines from the north-west at a fixed elevation, so buildings and crowns darken the
  ground behind them (heights, buildings and trees become visible in optical);
- slope shading: Lambertian shading of the height field, domed crowns and tilted roofs (crown shape and roof
  tilt in optical);
- roof tone: tall (commercial) roofs are light membranes, low (residential) ones reddish tiles (buildings and
  roof height in optical);
- canopy vigour: a smooth vegetation-density field and the canopy height raise IR, NDVI-like (trees in
  optical; IR and SAR share the field);
- volume scattering: vegetation backscatter grows with the same density and with canopy height (IR and tree
  height in SAR);
- roof structures: roofs carry metal fittings (brighter backscatter), and the double-bounce strength grows
  with the wall height (buildings and heights in SAR);
- vegetation roughness: grass stands a few decimetres above pavement (grass vs pavement in the DSM);
- hidden clutter: the metal debris piles stand above the grass and stress it, an IR drop and rust (the
  SAR-only clutter in optical and the DSM);
- visible clutter: the dark heaps stand above the ground and scatter strongly (the optical-only clutter in the
  DSM and SAR).

Every parameter here is our own choice (a reconstruction of plausible physics, not a sensor model); the
strengths were set so that `redundancy` 1 makes each class cue partly but not perfectly recoverable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthetic_scene import Scene

# Indices into datasets/synthetic.py's SURFACE_KINDS (tests/test_synthetic_v2.py checks they agree).
GRASS, PAVED, TREE, CAR, VISIBLE_CLUTTER, HIDDEN_CLUTTER = range(6)

GROUND_SAMPLE_M = 0.5  # metres per pixel, for slopes
SUN_ELEVATION_DEG = 55.0
SUN_STEP = (1, 1)  # shadows fall towards +row, +column (sun in the north-west)
SHADOW_DARKENING = 0.45  # fraction of direct light lost in a cast shadow at redundancy 1
SHADING_STRENGTH = 0.4
ROOF_TALL_TONE = np.array([22.0, 22.0, 22.0])  # (IR, R, G) added to a 20 m roof
ROOF_LOW_TONE = np.array([4.0, 28.0, -12.0])  # added to a 6 m roof
VIGOUR_IR = 30.0  # IR per unit of vegetation density
CANOPY_IR_PER_M = 3.0
VOLUME_SCATTER = 0.8  # log-gain of vegetation backscatter per unit density
CANOPY_SCATTER_PER_M = 0.08
ROOF_SAR_GAIN = 1.5
ROOF_HEIGHTS_M = (6.0, 20.0)  # datasets/synthetic.py draws roof heights from this range
DOUBLE_BOUNCE_GAIN = 0.5  # at redundancy 1: +50 % for the tallest walls, -50 % for the lowest
GRASS_ROUGHNESS_M = 0.35
HIDDEN_CLUTTER_HEIGHT_M = 1.2
HIDDEN_CLUTTER_STRESS = np.array([-55.0, 15.0, 0.0])
VISIBLE_CLUTTER_HEIGHT_M = 1.5
VISIBLE_CLUTTER_SAR_GAIN = 4.0


@dataclass(frozen=True)
class Couplings:
    """What version 2 adds to one tile's rendering; at redundancy 0 every gain is 1 and every addend 0."""

    optical: tuple[np.ndarray, np.ndarray]  # gain (H, W) and addend (H, W, 3) before rounding
    dsm_add: np.ndarray  # (H, W) metres
    sar_gain: np.ndarray  # (H, W) factor on linear reflectivity


def draw_couplings(rng: np.random.Generator, scene: Scene, redundancy: float) -> Couplings:
    """The couplings for `scene`. The random fields come from `rng` whatever `redundancy` is, so the levels
    of a redundancy study differ only in strength, never in draws."""
    if not 0.0 <= redundancy <= 1.0:
        raise ValueError(f"redundancy {redundancy} is outside [0, 1]")
    size = scene.label.shape[0]
    density = _smooth_field(rng, size)  # vegetation vigour in about [-1, 1]
    roughness = np.abs(rng.normal(0.0, 1.0, (size, size)))
    r = float(redundancy)
    surface, objects = scene.surface, scene.objects.astype(np.float64)
    vegetation = (surface == GRASS) | (surface == TREE) | (surface == HIDDEN_CLUTTER)
    tree = surface == TREE

    shadow = cast_shadow(scene.terrain + objects)
    shading = slope_shading(objects)
    gain = (1.0 - r * SHADOW_DARKENING * shadow) * (1.0 + r * SHADING_STRENGTH * (shading - 1.0))
    add = np.zeros((size, size, 3))
    add[..., 0] += r * VIGOUR_IR * density * vegetation + r * CANOPY_IR_PER_M * objects * tree
    for rows, cols, roof_height in scene.walls:
        low, high = ROOF_HEIGHTS_M
        tall = np.clip((roof_height - low) / (high - low), 0.0, 1.0)
        add[rows, cols] += r * (tall * ROOF_TALL_TONE + (1.0 - tall) * ROOF_LOW_TONE)
    add[surface == HIDDEN_CLUTTER] += r * HIDDEN_CLUTTER_STRESS

    dsm_add = r * (
        GRASS_ROUGHNESS_M * roughness * (surface == GRASS)
        + HIDDEN_CLUTTER_HEIGHT_M * (surface == HIDDEN_CLUTTER)
        + VISIBLE_CLUTTER_HEIGHT_M * (surface == VISIBLE_CLUTTER)
    )

    sar_gain = np.exp(r * VOLUME_SCATTER * density * vegetation) * (1.0 + r * CANOPY_SCATTER_PER_M * objects * tree)
    sar_gain *= 1.0 + r * VISIBLE_CLUTTER_SAR_GAIN * (surface == VISIBLE_CLUTTER)
    # Roofs first, then each building's shadow and double-bounce strip, in datasets/synthetic.py's
    # `_render_sar` order, so a gain lands on the reflectivity it was meant for.
    for rows, cols, _ in scene.walls:
        sar_gain[rows, cols] = 1.0 + r * ROOF_SAR_GAIN
    for rows, cols, roof_height in scene.walls:
        shadow_px = max(1, int(roof_height / 4))
        sar_gain[rows, cols.stop : min(cols.stop + shadow_px, size)] = 1.0
        middle, half_range = sum(ROOF_HEIGHTS_M) / 2, (ROOF_HEIGHTS_M[1] - ROOF_HEIGHTS_M[0]) / 2
        wall = 1.0 + r * DOUBLE_BOUNCE_GAIN * (roof_height - middle) / half_range
        sar_gain[rows, max(cols.start - 2, 0) : cols.start + 1] = wall
    return Couplings((gain, add), dsm_add, sar_gain)


def cast_shadow(surface_height: np.ndarray) -> np.ndarray:
    """1 where the sun (SUN_STEP direction, SUN_ELEVATION_DEG) is blocked by a higher point, else 0."""
    size_y, size_x = surface_height.shape
    dy, dx = SUN_STEP
    drop_per_step = np.hypot(dy, dx) * GROUND_SAMPLE_M * np.tan(np.radians(SUN_ELEVATION_DEG))
    reach = int(np.ceil((surface_height.max() - surface_height.min()) / drop_per_step)) + 1
    shadow = np.zeros(surface_height.shape, dtype=bool)
    for step in range(1, min(reach, max(size_y, size_x)) + 1):
        oy, ox = step * dy, step * dx
        if oy >= size_y or ox >= size_x:
            break
        caster = surface_height[: size_y - oy, : size_x - ox] - step * drop_per_step
        shadow[oy:, ox:] |= caster > surface_height[oy:, ox:] + 0.1
    return shadow.astype(np.float64)


def slope_shading(objects: np.ndarray) -> np.ndarray:
    """Lambertian shading of the object heights relative to flat ground (1 on flat ground)."""
    grad_y, grad_x = np.gradient(objects, GROUND_SAMPLE_M)
    grad_y, grad_x = np.clip(grad_y, -3.0, 3.0), np.clip(grad_x, -3.0, 3.0)  # walls would be vertical
    elevation = np.radians(SUN_ELEVATION_DEG)
    dy, dx = SUN_STEP
    # Unit vector towards the sun: against the shadow direction, up by the elevation.
    horizontal = np.cos(elevation) / np.hypot(dy, dx)
    sun = np.array([-dy * horizontal, -dx * horizontal, np.sin(elevation)])
    normal = np.stack([-grad_y, -grad_x, np.ones_like(objects)])
    normal /= np.linalg.norm(normal, axis=0)
    cosine = np.clip(np.tensordot(sun, normal, axes=1), 0.0, 1.0)
    return cosine / sun[2]


def _smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-frequency field in about [-1, 1]: three random plane waves."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    waves = sum(
        np.sin(2 * np.pi * (rng.uniform(0.5, 3.0) * xx + rng.uniform(0.5, 3.0) * yy) + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    return waves / 3.0
