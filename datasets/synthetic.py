"""The built-in synthetic benchmark: an urban scene generator in which every modality is needed.

Each tile is an ISPRS-like scene (impervious surfaces, buildings, low vegetation, trees, cars, clutter)
rendered in three modalities with different physics:

- optical (IR, R, G uint8, like Vaihingen's IRRG): colour. Roofs are drawn from the *same* colour
  distribution as pavement, and trees from the same as low vegetation, so optical alone cannot tell
  building from road or tree from grass. Vegetation vs pavement, and "visible clutter", are optical cues.
- DSM (float32 metres): terrain plus object heights. Buildings (6-20 m) and trees (4-14 m, rough
  canopies) stand out from the flat classes; it carries no colour, so grass vs pavement is invisible.
- SAR (float32 backscatter in dB, 4-look speckle): smooth pavement is dark, vegetation brighter,
  building walls facing the sensor give bright double-bounce lines and cast shadows, cars are bright,
  and a "hidden clutter" type (metal debris in grass) is visible *only* here.

So losing optical confuses vegetation with pavement and removes visible clutter; losing DSM confuses
buildings with pavement and trees with grass (SAR keeps weak cues at edges and canopies); losing SAR
turns hidden clutter into low vegetation. docs/synthetic.md documents the model and the numbers.

Generation is seeded per tile (`numpy.random.default_rng([seed, tile])`), so the store is
byte-identical for a given seed and size, whatever order tiles are made in.

That is generator version 1. Version 2 renders the same scenes with the cross-modal couplings of
datasets/synthetic_couplings.py at strength `redundancy`, so that each modality's class evidence becomes partly
recoverable from the others (redundancy 0 gives version 1's arrays); docs/synthetic.md measures each level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbench.data.store_format import DEFAULT_CODEC, ModalitySpec
from mmbench.data.store_writer import TileStoreWriter
from mmbench.paths import cache_dir

from .synthetic_couplings import draw_couplings
from .synthetic_scene import Scene

CLASSES = ("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter")
PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)
GENERATOR_VERSION = "1"  # version 1's provenance value (its bytes never change)
GENERATOR_VERSIONS = (1, 2)
SURFACE_KINDS = ("grass", "pavement_or_roof", "tree", "car", "visible_clutter", "hidden_clutter")

MODALITIES = (
    ModalitySpec("optical", ("IR", "R", "G"), "uint8", "DN", "synthetic IRRG orthophoto"),
    ModalitySpec("dsm", ("height",), "float32", "m", "synthetic digital surface model"),
    ModalitySpec("sar", ("sigma0",), "float32", "dB", "synthetic 4-look SAR backscatter"),
)

# Mean optical colour (IR, R, G) per surface; roofs and pavement share one, trees and grass another.
_PAVEMENT_RGB = np.array([105.0, 110.0, 108.0])
_VEGETATION_RGB = np.array([185.0, 78.0, 112.0])
_VISIBLE_CLUTTER_RGB = np.array([45.0, 62.0, 95.0])
_CAR_COLOURS = np.array([[60, 200, 40], [80, 30, 30], [220, 225, 230], [40, 40, 180], [120, 190, 60]], float)
# Linear backscatter per surface before speckle.
_SAR = {
    "pavement": 0.045,
    "roof": 0.06,
    "grass": 0.075,
    "tree": 0.20,
    "car": 0.9,
    "visible_clutter": 0.05,
    "hidden_clutter": 1.6,
    "double_bounce": 2.2,
    "shadow": 0.008,
}
_LOOKS = 4
# The geometric augmentations each modality tolerates (mmbench.data.augment.GEOMETRIC; unnamed: all).
# The SAR looks from the left (`_render_sar`): a horizontal flip would put the double-bounce lines on the
# walls' far side and the shadows on the near side, and a quarter turn would make it look from above or
# below, neither of which this sensor ever produces. A vertical flip (the same look direction, the other
# flight direction) and zoom keep the geometry. `method.train.augment_modalities` overrides it per run.
AUGMENT_GEOMETRY = {"sar": ("vflip", "zoom")}


@dataclass(frozen=True)
class SyntheticConfig:
    """One synthetic store. The Python defaults are generator version 1 (48 tiles split 32/8/8), so code that
    builds stores this way keeps its bytes; the dataset's config defaults (datasets/synthetic.yaml) choose
    version 2 with a larger test part, which is what `mmbench run` uses."""

    tiles: int = 48
    size: int = 192
    seed: int = 0
    codec: str = DEFAULT_CODEC
    eroded_radius: int = 1  # ISPRS erodes 3 px at 9 cm; synthetic objects are ~3x smaller
    version: int = 1  # 1: non-redundant modalities; 2: the couplings of datasets/synthetic_couplings.py
    redundancy: float = 0.0  # version 2's coupling strength in [0, 1]
    test_share: float | None = None  # share of the tiles in the test part; None: tiles // 6 (version 1's split)

    def __post_init__(self) -> None:
        if self.tiles < 5:
            raise ValueError("the synthetic benchmark needs at least 5 tiles (train/val/test)")
        if self.size < 64:
            raise ValueError("synthetic tiles must be at least 64 px")
        if self.seed < 0:
            raise ValueError("the synthetic benchmark's seed must be 0 or more")
        if self.version not in GENERATOR_VERSIONS:
            raise ValueError(f"generator version {self.version} is unknown; use one of {GENERATOR_VERSIONS}")
        if not 0.0 <= self.redundancy <= 1.0:
            raise ValueError(f"redundancy {self.redundancy} is outside [0, 1]")
        if self.version == 1 and self.redundancy != 0.0:
            raise ValueError("redundancy needs generator version 2 (version 1 has no couplings); set version: 2")
        if self.test_share is not None and not 0.0 < self.test_share < 1.0:
            raise ValueError(f"test_share {self.test_share} is outside (0, 1)")
        parts = self.parts
        if not all(parts.values()):
            sizes = ", ".join(f"{name} {len(tiles)}" for name, tiles in parts.items())
            raise ValueError(f"{self.tiles} tiles split into {sizes}: every part needs a tile; lower test_share")

    @property
    def parts(self) -> dict[str, list[int]]:
        return split_parts(self.tiles, self.test_share)


def generate_tile(
    rng: np.random.Generator,
    size: int,
    redundancy: float = 0.0,
    coupling_rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """One scene: labels (H, W) uint8, the three modalities (C, H, W), and, not stored (tests use them to
    check each modality's cues), the surface kind per pixel (SURFACE_KINDS indexes it) and the noise-free
    ground height under the objects (`ground`, metres).

    Without `coupling_rng` this is generator version 1, byte for byte. With it (version 2), the cross-modal
    couplings of `datasets/synthetic_couplings.py` are drawn from `coupling_rng` and applied at strength
    `redundancy`; the scene's own draws come from `rng` in version 1's order, so version 2 shows the same
    scenes, and at `redundancy` 0 every array equals version 1's.
    """
    if coupling_rng is None and redundancy != 0.0:
        raise ValueError("a redundancy needs version 2's coupling_rng (version 1 has no couplings)")
    scene = _draw_scene(rng, size)
    couplings = None if coupling_rng is None else draw_couplings(coupling_rng, scene, redundancy)
    optical = _render_optical(
        rng, scene.surface, scene.optical_offset, None if couplings is None else couplings.optical
    )
    dsm = scene.terrain + scene.objects + rng.normal(0, 0.08, (size, size))
    if couplings is not None:
        dsm = dsm + couplings.dsm_add
    sar = _render_sar(rng, scene.surface, scene.walls, size, None if couplings is None else couplings.sar_gain)
    return {
        "label": scene.label,
        "optical": optical,
        "dsm": dsm.astype(np.float32)[None],
        "sar": sar[None],
        "surface": scene.surface,
        "ground": scene.terrain,
    }


def _draw_scene(rng: np.random.Generator, size: int) -> Scene:
    """Every draw that fixes the scene, in version 1's order (the renderers then draw the sensor noise)."""
    label = np.full((size, size), LOW_VEGETATION, dtype=np.uint8)
    height = _terrain(rng, size)
    objects = np.zeros((size, size), dtype=np.float32)  # height above terrain
    surface = np.zeros((size, size), dtype=np.int8)  # index into SURFACE_KINDS
    optical_offset = np.zeros((size, size, 3))

    # Roads: axis-aligned strips, plus a plaza.
    for _ in range(rng.integers(1, 4)):
        width = int(rng.integers(size // 12, size // 6))
        start = int(rng.integers(0, size - width))
        region = (
            (slice(start, start + width), slice(None))
            if rng.random() < 0.5
            else (slice(None), slice(start, start + width))
        )
        label[region] = IMPERVIOUS
        surface[region] = 1
    optical_offset[label == IMPERVIOUS] += rng.normal(0, 12, 3)
    roads = label == IMPERVIOUS
    # Plazas and parking lots: paved rectangles with their own shade, shaped and coloured like roofs,
    # so that rectangle-ness in the optical image does not give buildings away.
    for _ in range(int(rng.integers(2, 5))):
        lot = _rectangle(rng, size, size // 8, size // 4)
        label[lot] = IMPERVIOUS
        surface[lot] = 1
        optical_offset[lot] = rng.normal(0, 22, 3)

    # Buildings off the roads (they may cover parts of lots); a roof colour from the pavement distribution.
    building_walls: list[tuple[slice, slice, float]] = []
    for _ in range(int(rng.integers(30, 40))):
        rows, cols = _rectangle(rng, size, size // 8, size // 3)
        if roads[rows, cols].any() or (label[rows, cols] == BUILDING).any():
            continue
        roof_height = float(rng.uniform(6, 20))
        label[rows, cols] = BUILDING
        surface[rows, cols] = 1
        objects[rows, cols] = roof_height + (
            np.linspace(0, float(rng.uniform(0, 3)), cols.stop - cols.start)[None, :] if rng.random() < 0.5 else 0
        )
        optical_offset[rows, cols] = rng.normal(0, 22, 3)
        building_walls.append((rows, cols, roof_height))

    # Trees: round crowns on grass, same colour distribution as grass, rough canopy heights.
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(28, 44))):
        cy, cx = rng.integers(0, size, 2)
        radius = float(rng.uniform(size / 30, size / 12))
        distance = np.hypot(yy - cy, xx - cx)
        crown = (distance < radius) & (label == LOW_VEGETATION)
        tree_height = float(rng.uniform(4, 14))
        profile = tree_height * np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, 1))
        label[crown] = TREE
        surface[crown] = 2
        objects[crown] = np.maximum(objects[crown], profile[crown] + rng.normal(0, 0.8, int(crown.sum())))

    # Cars on roads (about 1.5 % of pixels).
    road_pixels = np.argwhere(label == IMPERVIOUS)
    car_count = int(rng.integers(10, 19) * (size / 192) ** 2)
    for _ in range(car_count):
        if len(road_pixels) == 0:
            break
        cy, cx = road_pixels[rng.integers(len(road_pixels))]
        long_side, short_side = int(rng.integers(7, 10)), int(rng.integers(4, 6))
        h, w = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
        rows, cols = slice(cy, min(cy + h, size)), slice(cx, min(cx + w, size))
        on_road = label[rows, cols] == IMPERVIOUS
        label[rows, cols][on_road] = CAR
        surface[rows, cols][on_road] = 3
        objects[rows, cols][on_road] = 1.5
        optical_offset[rows, cols][on_road] = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] - _PAVEMENT_RGB

    # Clutter: visible (dark patches, optical only) and hidden (metal in grass, SAR only).
    for kind in (4, 5):
        for _ in range(int(rng.integers(2, 5))):
            cy, cx = rng.integers(0, size, 2)
            radius = float(rng.uniform(size / 40, size / 20))
            blob = np.hypot((yy - cy) * rng.uniform(0.6, 1.4), xx - cx) < radius
            blob &= (label == LOW_VEGETATION) if kind == 5 else (label == LOW_VEGETATION) | (label == IMPERVIOUS)
            label[blob] = CLUTTER
            surface[blob] = kind

    return Scene(label, height, objects, surface, optical_offset, building_walls)


def _terrain(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = float(rng.uniform(250, 262))
    slope = rng.uniform(-2, 2, 2)
    waves = sum(
        rng.uniform(0.2, 0.8)
        * np.sin(2 * np.pi * (rng.uniform(0.3, 1.5) * xx + rng.uniform(0.3, 1.5) * yy) + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    return base + slope[0] * xx + slope[1] * yy + waves


def _rectangle(rng: np.random.Generator, size: int, low: int, high: int) -> tuple[slice, slice]:
    h, w = (int(v) for v in rng.integers(low, high, 2))
    top, left = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
    return slice(top, top + h), slice(left, left + w)


def _render_optical(
    rng: np.random.Generator, surface: np.ndarray, offset: np.ndarray, coupling: tuple | None = None
) -> np.ndarray:
    """IRRG uint8; `coupling` (version 2): a per-pixel gain (H, W) and offset (H, W, 3) applied before rounding."""
    base = np.where(
        (surface == 0)[..., None] | (surface == 2)[..., None] | (surface == 5)[..., None],
        _VEGETATION_RGB,
        _PAVEMENT_RGB,
    )
    base = np.where((surface == 4)[..., None], _VISIBLE_CLUTTER_RGB, base)
    image = base + offset + rng.normal(0, 9, surface.shape + (3,))
    if coupling is not None:
        gain, add = coupling
        image = image * gain[..., None] + add
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _render_sar(
    rng: np.random.Generator, surface: np.ndarray, walls: list, size: int, gain: np.ndarray | None = None
) -> np.ndarray:
    """sigma0 in dB; `gain` (version 2): a per-pixel factor on the linear reflectivity before speckle."""
    lookup = np.array(
        [_SAR["grass"], _SAR["pavement"], _SAR["tree"], _SAR["car"], _SAR["visible_clutter"], _SAR["hidden_clutter"]]
    )
    reflectivity = lookup[surface]
    for rows, cols, _ in walls:
        reflectivity[rows, cols] = _SAR["roof"]
    # Sensor looks from the left: walls facing it double-bounce, the far side is in radar shadow.
    for rows, cols, roof_height in walls:
        shadow = max(1, int(roof_height / 4))
        reflectivity[rows, cols.stop : min(cols.stop + shadow, size)] = _SAR["shadow"]
        reflectivity[rows, max(cols.start - 2, 0) : cols.start + 1] = _SAR["double_bounce"]
    if gain is not None:
        reflectivity = reflectivity * gain
    speckle = rng.gamma(_LOOKS, 1.0 / _LOOKS, (size, size))
    return (10.0 * np.log10(reflectivity * speckle + 1e-6)).astype(np.float32)


def erode_labels(label: np.ndarray, radius: int, ignore_index: int = 255) -> np.ndarray:
    """ISPRS-style eroded reference: pixels within `radius` of a class boundary become ignore."""
    if radius <= 0:
        return label.copy()
    boundary = np.zeros(label.shape, dtype=bool)
    size_y, size_x = label.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius or (dy == 0 and dx == 0):
                continue
            shifted = np.full(label.shape, -1, dtype=np.int16)
            shifted[max(dy, 0) : size_y + min(dy, 0), max(dx, 0) : size_x + min(dx, 0)] = label[
                max(-dy, 0) : size_y + min(-dy, 0), max(-dx, 0) : size_x + min(-dx, 0)
            ]
            boundary |= (shifted != -1) & (shifted != label)
    eroded = label.copy()
    eroded[boundary] = ignore_index
    return eroded


def split_parts(tiles: int, test_share: float | None = None) -> dict[str, list[int]]:
    """A fixed split by tile index (tiles are independent scenes, so no leakage). Without `test_share`, version
    1's 4:1:1-ish split (tiles // 6 each for validation and test). With it, the last floor(tiles x test_share)
    tiles (at least one) for test and 1/5 of the rest (at least one) for validation: a larger share enlarges
    the test part without touching the training scenes, which keep their tile indices."""
    if test_share is None:
        test = val = max(1, tiles // 6)
    else:
        test = max(1, int(tiles * test_share))
        val = max(1, (tiles - test) // 5)
    return {
        "train": list(range(tiles - val - test)),
        "val": list(range(tiles - val - test, tiles - test)),
        "test": list(range(tiles - test, tiles)),
    }


def write_synthetic(
    path: str | Path, config: SyntheticConfig = SyntheticConfig(), progress: Callable[[int], None] | None = None
) -> Path:
    """Generate the store at `path` (atomically); returns the path."""
    provenance = {
        "generator": "mmbench.datasets.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "tiles": config.tiles,
        "size": config.size,
        "eroded_radius": config.eroded_radius,
    }
    if config.version != 1:  # version 1's provenance stays as it was, byte for byte
        provenance |= {
            "generator_version": str(config.version),
            "redundancy": config.redundancy,
            "test_share": config.test_share,
        }
    with TileStoreWriter(
        path,
        name="synthetic",
        modalities=MODALITIES,
        label_variants=("full", "eroded"),
        tile_size=config.size,
        classes=CLASSES,
        palette=PALETTE,
        codec=config.codec,
        provenance=provenance,
        expected_tiles=config.tiles,
    ) as writer:
        for index in range(config.tiles):
            coupling_rng = np.random.default_rng([config.seed, index, 2]) if config.version == 2 else None
            scene = generate_tile(
                np.random.default_rng([config.seed, index]), config.size, config.redundancy, coupling_rng
            )
            writer.add_tile(
                f"synthetic_{index:04d}",
                {"optical": scene["optical"], "dsm": scene["dsm"], "sar": scene["sar"]},
                {"full": scene["label"], "eroded": erode_labels(scene["label"], config.eroded_radius)},
                source=f"scene_{index:04d}",
            )
            if progress is not None:
                progress(index + 1)
        writer.set_split("default", config.parts, default=True)
    return Path(path)


def cached_store_path(config: SyntheticConfig) -> Path:
    if config.version == 1 and config.test_share is None:
        name = f"synthetic-v1-s{config.seed}-n{config.tiles}-px{config.size}-{config.codec}.h5"
    else:
        test = len(config.parts["test"])
        name = (
            f"synthetic-v{config.version}-r{config.redundancy:g}-s{config.seed}-n{config.tiles}-t{test}"
            f"-px{config.size}-{config.codec}.h5"
        )
    return cache_dir() / name


class SyntheticDataset:
    """The registered dataset's implementation: materialises the store in the user cache on first use.

    `mmbench data synth` reaches it through the registry (`DATASETS.get("synthetic").load()`) and uses
    `config_from`, `store_path` and `write`. The training engine reads `augment_geometry` (for stores whose
    name is "synthetic", however the run named them).
    """

    augment_geometry = AUGMENT_GEOMETRY

    @staticmethod
    def store_path(config: SyntheticConfig) -> Path:
        """Where the store for `config` is cached."""
        return cached_store_path(config)

    @staticmethod
    def write(path: str | Path, config: SyntheticConfig, progress: Callable[[int], None] | None = None) -> Path:
        """Generate the store for `config` at `path` (atomically), whether or not it exists."""
        return write_synthetic(path, config, progress=progress)

    @staticmethod
    def config_from(settings: dict) -> SyntheticConfig:
        try:
            return SyntheticConfig(
                tiles=settings["tiles"],
                size=settings["size"],
                seed=settings["seed"],
                codec=settings["codec"],
                version=settings.get("version", 1),
                redundancy=float(settings.get("redundancy", 0.0)),
                test_share=settings.get("test_share") or None,
            )
        except ValueError as exc:
            from mmbench.errors import ConfigError

            raise ConfigError(f"dataset config: {exc}") from exc

    @classmethod
    def prepare(cls, settings: dict) -> Path:
        """Path of the store for these settings, generating it (once, atomically) if needed."""
        config = cls.config_from(settings)
        path = cls.store_path(config)
        if not path.exists():
            from mmbench.progress import progress_bar

            with progress_bar(f"generating synthetic store ({config.tiles} tiles)", total=config.tiles) as advance:
                cls.write(path, config, progress=advance)
        return path
