"""Converters from the official dataset layouts to mmbench tile stores (`mmbench data convert`).

Each supported distribution is described declaratively (`isprs`, `whu_opt_sar`, `earthmiss`) and converted by one
shared engine (`common`): find the files (extracted folder or official zip archives), decode them, check them,
cut them into windows and write them with `TileStoreWriter`. docs/converters.md documents each layout.

Importing this package is cheap: layouts and their dependencies (tifffile, h5py, Pillow) load on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from mmbench.data.store_format import DEFAULT_CODEC, StoreError
from mmbench.datasets.converters.report import ConversionReport

__all__ = ["FORMATS", "ConversionReport", "convert", "get_layout"]

FORMATS = ("isprs-vaihingen", "isprs-potsdam", "whu-opt-sar", "earthmiss")
_LAYOUTS = {
    "isprs-vaihingen": ("isprs", "VAIHINGEN"),
    "isprs-potsdam": ("isprs", "POTSDAM"),
    "whu-opt-sar": ("whu_opt_sar", "WHU_OPT_SAR"),
    "earthmiss": ("earthmiss", "EARTHMISS"),
}


def get_layout(format: str):
    """The declarative `Layout` of a format name; unknown names are a `StoreError` listing the formats."""
    if format not in _LAYOUTS:
        raise StoreError(f"unknown dataset format {format!r}; use one of {', '.join(FORMATS)}")
    module_name, attribute = _LAYOUTS[format]
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), attribute)


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
    """Convert the official layout `format` found at `source` into the tile store `output`.

    `source` is the extracted folder or a folder holding the official zip archives (or both). Windows of
    `tile_size` pixels are cut every `stride` pixels (default: `tile_size`, no overlap), the last row and column
    shifted back to end at the image edge; images smaller than a tile are padded (modalities with 0, labels with
    ignore 255). `progress(description, completed, total)` is called once per source tile. Every problem with the
    input raises `StoreError` naming the file, and leaves no output file behind.
    """
    from mmbench.datasets.converters.common import run_conversion

    return run_conversion(
        get_layout(format), source, output, tile_size=tile_size, stride=stride, codec=codec, progress=progress
    )
