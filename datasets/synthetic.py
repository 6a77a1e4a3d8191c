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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbench.data.store_format import DEFAULT_CODEC, ModalitySpec
from mmbench.data.store_writer import TileStoreWriter
from mmbench.paths import cache_dir

CLASSES = ("impervious_surface", "building", "low_vegetation", "tree", "car", "clutter")
PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)
GENERATOR_VERSION = "1"
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
    tiles: int = 48
    size: int = 192
    seed: int = 0
    codec: str = DEFAULT_CODEC
    eroded_radius: int = 1  # ISPRS erodes 3 px at 9 cm; synthetic objects are ~3x smaller

    def __post_init__(self) -> None:
        if self.tiles < 5:
            raise ValueError("the synthetic benchmark needs at least 5 tiles (train/val/test)")
        if self.size < 64:
            raise ValueError("synthetic tiles must be at least 64 px")
        if self.seed < 0:
            raise ValueError("the synthetic benchmark's seed must be 0 or more")


def generate_tile(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """One scene: labels (H, W) uint8, the three modalities (C, H, W), and the surface kind per pixel
    (not stored; tests use it to check each modality's cues): SURFACE_KINDS indexes it."""
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

    optical = _render_optical(rng, surface, optical_offset)
    dsm = (height + objects + rng.normal(0, 0.08, (size, size))).astype(np.float32)
    sar = _render_sar(rng, surface, building_walls, size)
    return {"label": label, "optical": optical, "dsm": dsm[None], "sar": sar[None], "surface": surface}


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


def _render_optical(rng: np.random.Generator, surface: np.ndarray, offset: np.ndarray) -> np.ndarray:
    base = np.where(
        (surface == 0)[..., None] | (surface == 2)[..., None] | (surface == 5)[..., None],
        _VEGETATION_RGB,
        _PAVEMENT_RGB,
    )
    base = np.where((surface == 4)[..., None], _VISIBLE_CLUTTER_RGB, base)
    image = base + offset + rng.normal(0, 9, surface.shape + (3,))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _render_sar(rng: np.random.Generator, surface: np.ndarray, walls: list, size: int) -> np.ndarray:
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


def split_parts(tiles: int) -> dict[str, list[int]]:
    """A fixed 4:1:1-ish split by tile index (tiles are independent scenes, so no leakage)."""
    test = max(1, tiles // 6)
    val = max(1, tiles // 6)
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
            scene = generate_tile(np.random.default_rng([config.seed, index]), config.size)
            writer.add_tile(
                f"synthetic_{index:04d}",
                {"optical": scene["optical"], "dsm": scene["dsm"], "sar": scene["sar"]},
                {"full": scene["label"], "eroded": erode_labels(scene["label"], config.eroded_radius)},
                source=f"scene_{index:04d}",
            )
            if progress is not None:
                progress(index + 1)
        writer.set_split("default", split_parts(config.tiles), default=True)
    return Path(path)


def cached_store_path(config: SyntheticConfig) -> Path:
    name = f"synthetic-v{GENERATOR_VERSION}-s{config.seed}-n{config.tiles}-px{config.size}-{config.codec}.h5"
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
                tiles=settings["tiles"], size=settings["size"], seed=settings["seed"], codec=settings["codec"]
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
