"""Converters from the official dataset layouts to mmbench tile stores (`mmbench data convert`).

Converters are plugins: each format is an entry point in group `mmbench.converters` naming a
`mmbench.plugins.ConverterSpec` (the built-ins' are in `mmbench.datasets.specs`), so another package adds one
the same way (docs/converters.md). Each built-in distribution is described declaratively (`isprs`,
`whu_opt_sar`, `earthmiss`) and converted by one shared engine (`common`): find the files (extracted folder or
official zip archives), decode them, check them, cut them into windows and write them with `TileStoreWriter`.
docs/converters.md documents each layout.

Importing this package is cheap: layouts and their dependencies (tifffile, h5py, Pillow) load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmbench.data.store_format import DEFAULT_CODEC
from mmbench.datasets.converters.report import ConversionReport
from mmbench.registry import CONVERTERS

__all__ = ["ConversionReport", "convert"]


def convert(
    format: str,
    source: str | Path,
    output: str | Path,
    *,
    tile_size: int = 512,
    stride: int | None = None,
    codec: str = DEFAULT_CODEC,
    progress: Callable[[str, int, int], None] | None = None,
) -> ConversionReport:
    """Convert the official layout `format` (a registered converter's name) found at `source` into the tile
    store `output`.

    `source` is the extracted folder or a folder holding the official zip archives (or both). Windows of
    `tile_size` pixels are cut every `stride` pixels (default: `tile_size`, no overlap), the last row and column
    shifted back to end at the image edge; images smaller than a tile are padded (modalities with 0, labels with
    ignore 255). `progress(description, completed, total)` is called once per source tile. An unknown format is a
    `PluginError` naming the registered ones; every problem with the input raises `StoreError` naming the file,
    and leaves no output file behind.
    """
    converter = CONVERTERS.get(format).converter()
    return converter.convert(source, output, tile_size=tile_size, stride=stride, codec=codec, progress=progress)
