"""Small stores written directly with TileStoreWriter, for tests that need exact, known contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbench.data.store_format import ModalitySpec
from mmbench.data.store_writer import TileStoreWriter

MODALITIES = (
    ModalitySpec("optical", ("IR", "R", "G"), "uint8", "DN"),
    ModalitySpec("dsm", ("height",), "float32", "m"),
)
CLASSES = ("a", "b", "c")


def tile_arrays(index: int, size: int = 24) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Deterministic tile contents; the DSM equals the label (useful to check joint augmentation)."""
    rng = np.random.default_rng(index)
    label = rng.integers(0, 3, (size, size)).astype(np.uint8)
    label[:2, :2] = 255
    optical = rng.integers(0, 256, (3, size, size)).astype(np.uint8)
    dsm = label.astype(np.float32)[None] + np.float32(index)
    return {"optical": optical, "dsm": dsm}, {"full": label}


def write_store(path: Path, tiles: int = 6, size: int = 24, codec: str = "gzip") -> Path:
    with TileStoreWriter(
        path,
        name="tiny",
        modalities=MODALITIES,
        label_variants=("full",),
        tile_size=size,
        classes=CLASSES,
        palette=[(0, 0, 0), (1, 1, 1), (2, 2, 2)],
        codec=codec,
        provenance={"test": True},
    ) as writer:
        for index in range(tiles):
            modalities, labels = tile_arrays(index, size)
            writer.add_tile(
                f"t{index}",
                modalities,
                labels,
                source=f"src{index // 2}",
                row=index,
                col=2 * index,
                files=[f"file{index}.tif"],
            )
        writer.set_split("main", {"train": [0, 1, 2, 3], "val": [4], "test": [5]}, default=True)
        writer.set_split("other", {"train": [1], "val": [2], "test": [0]})
    return path
