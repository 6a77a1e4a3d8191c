"""Small area stores written directly with TileStoreWriter, cut the way converters cut (overlapping tiles, the
last row and column shifted back, small areas padded), plus an oracle that predicts a whole area at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmbench.data.store_format import ModalitySpec
from mmbench.data.store_reader import TileStore
from mmbench.data.store_writer import TileStoreWriter
from mmbench.evaluation.tiling import window_starts
from mmbench.method import SegmentationMethod

MODALITIES = (
    ModalitySpec("optical", ("R", "G", "B"), "uint8", "DN"),
    ModalitySpec("dsm", ("height",), "float32", "m"),
)
CHANNELS = {"optical": 3, "dsm": 1}
CLASSES = ("a", "b", "c", "clutter")
TILE = 16
# area -> (height, width): not multiples of the tile; "square" fits one 40 px window; "small" is padded.
AREAS = {"train0": (30, 34), "wide": (37, 45), "square": (40, 40), "small": (9, 13)}
PARTS = {"train": ["train0"], "val": ["small"], "test": ["wide", "square"]}


class LinearFusion(SegmentationMethod):
    """Class scores = the sum over available modalities of one convolution each, weights N(0, 1).

    With `kernel` 1 a pixel's prediction depends on that pixel alone (so no window layout may change it), and the
    strong random weights make predictions vary from pixel to pixel (a test on a constant prediction proves
    nothing). It has the split interface; `LinearFusionPlain` runs the same network without it.
    """

    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        kernel = config.get("kernel", 1)
        generator = torch.Generator().manual_seed(config.get("seed", 0))
        self.convs = nn.ModuleDict(
            {
                name: nn.Conv2d(channels, num_classes, kernel, padding=kernel // 2)
                for name, channels in modalities.items()
            }
        )
        with torch.no_grad():
            for conv in self.convs.values():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator))

    def encode(self, name, x):
        return self.convs[name](x)

    def decode(self, features, available):
        total = 0
        for index, name in enumerate(self.modality_names):
            if name in features:
                total = total + torch.where(available[:, index].view(-1, 1, 1, 1), features[name], 0.0)
        return total

    def forward(self, inputs, available):
        return self.decode({name: self.convs[name](inputs[name]) for name in self.modality_names}, available)


class LinearFusionPlain(LinearFusion):
    encode = SegmentationMethod.encode


def linear_fusion(kernel: int = 1, plain: bool = False, seed: int = 0) -> LinearFusion:
    cls = LinearFusionPlain if plain else LinearFusion
    return cls(CHANNELS, len(CLASSES), {"kernel": kernel, "seed": seed})


def area_arrays(index: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Deterministic contents of an area: a label with some ignore pixels, optical that follows the label."""
    rng = np.random.default_rng(100 + index)
    label = rng.integers(0, len(CLASSES), size).astype(np.uint8)
    label[rng.random(size) < 0.1] = 255
    optical = rng.integers(0, 256, (3, *size)).astype(np.uint8)
    optical[0] = np.where(label == 255, optical[0], label * 60 + rng.integers(0, 30, size))
    dsm = (rng.random((1, *size)) * 20 + 100).astype(np.float32)
    return {"optical": optical, "dsm": dsm, "full": label}


def write_area_store(
    path: Path,
    *,
    areas: Mapping[str, tuple[int, int]] = AREAS,
    parts: Mapping[str, Sequence[str]] = PARTS,
    tile: int = TILE,
    stride: int = 12,
    with_areas: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """Write the store; returns each area's arrays. `with_areas=False` writes the same tiles without area sizes."""
    arrays = {name: area_arrays(index, size) for index, (name, size) in enumerate(areas.items())}
    tiles: dict[str, list[int]] = {}
    with TileStoreWriter(
        path,
        name="areas",
        modalities=MODALITIES,
        label_variants=("full",),
        tile_size=tile,
        classes=CLASSES,
        codec="lzf",
        provenance={"tile_size": tile, "stride": stride},
    ) as writer:
        for name, data in arrays.items():
            height, width = data["full"].shape
            padded_h, padded_w = max(height, tile), max(width, tile)
            pad = ((0, padded_h - height), (0, padded_w - width))
            optical = np.pad(data["optical"], ((0, 0), *pad))
            dsm = np.pad(data["dsm"], ((0, 0), *pad))
            label = np.pad(data["full"], pad, constant_values=255)
            for row in window_starts(padded_h, tile, stride):
                for col in window_starts(padded_w, tile, stride):
                    window = (slice(row, row + tile), slice(col, col + tile))
                    index = writer.add_tile(
                        f"{name}_r{row}_c{col}",
                        {"optical": optical[(slice(None), *window)], "dsm": dsm[(slice(None), *window)]},
                        {"full": label[window]},
                        source=name,
                        row=row,
                        col=col,
                        area_size=(height, width) if with_areas else None,
                    )
                    tiles.setdefault(name, []).append(index)
        writer.set_split(
            "default", {part: [i for name in names for i in tiles[name]] for part, names in parts.items()}, True
        )
    return arrays


def normalised(store_path: Path, name: str, array: np.ndarray) -> torch.Tensor:
    """The loader's normalisation with the store's statistics, (x - mean) / std in float32, as a (1, C, H, W)."""
    with TileStore(store_path) as store:
        stats = store.modalities[name].stats
    mean = torch.tensor(stats["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(stats["std"], dtype=torch.float32).clamp_min(1e-6).view(-1, 1, 1)
    return ((torch.from_numpy(array.astype(np.float32)) - mean) / std)[None]


def whole_area_matrix(
    method: torch.nn.Module,
    store_path: Path,
    arrays: Mapping[str, dict[str, np.ndarray]],
    names: Sequence[str],
    available: Sequence[str],
) -> list[list[int]]:
    """The oracle: each area predicted in one forward pass, one argmax per pixel, ignore removed."""
    classes = len(CLASSES)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    flags = torch.tensor([[name in available for name in CHANNELS]])
    for area in names:
        inputs = {
            name: normalised(store_path, name, arrays[area][name]) * float(name in available) for name in CHANNELS
        }
        with torch.inference_mode():
            prediction = method(inputs, flags).argmax(1)[0].numpy()
        label = arrays[area]["full"]
        keep = label != 255
        matrix += np.bincount(label[keep] * classes + prediction[keep], minlength=classes * classes).reshape(
            classes, classes
        )
    return matrix.tolist()


def tile_by_tile_pixels(store_path: Path, part: str) -> int:
    """The scored pixels if every stored tile were scored on its own (overlaps counted once per tile)."""
    with TileStore(store_path) as store:
        return sum(
            int(np.count_nonzero(store.read_label(store.label_variants[0], int(i)) != 255))
            for i in store.split_indices(None, part)
        )
