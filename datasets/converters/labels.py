"""Label decoders: colour-coded (ISPRS) and value-coded (WHU-OPT-SAR, EarthMiss) label images to class indices.

Every decoder returns uint8 class indices with ignore 255 plus the number of off-palette pixels. Colours are
compared in RGB order as stored in the file: reading labels as BGR (mmseg's and GeoSeg's converters) swaps
building and clutter. Off-palette colours become ignore and are counted, never folded into a class (torchgeo's
`rgb_to_mask` silently turns them into class 0). Unknown values of value-coded labels are an error, because
there every value has a documented meaning and an unknown one means the wrong file or a damaged one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mmbench.data.store_format import IGNORE_INDEX, StoreError

Colour = tuple[int, int, int]
_OFF_PALETTE = 254  # marker inside the lookup table, never stored


def _rgb_code(colour: Sequence[int]) -> int:
    red, green, blue = (int(value) for value in colour)
    return (red << 16) | (green << 8) | blue


@dataclass(frozen=True)
class PaletteDecoder:
    """RGB colour-coded labels: the colour at position k of `palette` is class k; `ignore_colours` (the black
    eroded boundary of ISPRS `_noBoundary` files) become ignore without counting as off-palette."""

    palette: tuple[Colour, ...]
    ignore_colours: tuple[Colour, ...] = ()

    def __call__(self, raw: np.ndarray, name: str) -> tuple[np.ndarray, int]:
        if raw.ndim == 3 and raw.shape[0] == 4 and raw.dtype == np.uint8 and (raw[3] == 255).all():
            raw = raw[:3]  # an opaque alpha band carries nothing
        if raw.ndim != 3 or raw.shape[0] != 3 or raw.dtype != np.uint8:
            raise StoreError(
                f"{name}: a colour-coded label must be an 8-bit R, G, B image; it is {raw.dtype} "
                f"with {raw.shape[0]} band(s)"
            )
        code = raw[0].astype(np.uint32) << 16
        code |= raw[1].astype(np.uint32) << 8
        code |= raw[2]
        labels = self._lookup[code]  # one pass over the image, whatever the palette size
        off_palette = labels == _OFF_PALETTE
        count = int(np.count_nonzero(off_palette))
        if count:
            labels[off_palette] = IGNORE_INDEX
        return labels, count

    @cached_property
    def _lookup(self) -> np.ndarray:
        """Class per 24-bit RGB code (16 MiB): palette colours -> class, ignore colours -> 255, others -> marker."""
        if len(self.palette) >= _OFF_PALETTE:
            raise ValueError("a palette decoder handles at most 253 classes")
        table = np.full(1 << 24, _OFF_PALETTE, dtype=np.uint8)
        for colour in self.ignore_colours:
            table[_rgb_code(colour)] = IGNORE_INDEX
        for index, colour in enumerate(self.palette):
            table[_rgb_code(colour)] = index
        return table


@dataclass(frozen=True)
class ValueDecoder:
    """Single-band value-coded labels: `mapping` is (value on disk, stored class or ignore 255) pairs.

    `meaning` completes the error message for unexpected values, e.g. "WHU-OPT-SAR labels are 0, 10, ..., 70".
    """

    mapping: tuple[tuple[int, int], ...]
    meaning: str

    def __call__(self, raw: np.ndarray, name: str) -> tuple[np.ndarray, int]:
        if raw.ndim != 3 or raw.shape[0] != 1 or raw.dtype.kind not in "ui":
            raise StoreError(
                f"{name}: an index label must be a single-band integer image; it is {raw.dtype} "
                f"with {raw.shape[0]} band(s)"
            )
        values = raw[0]
        if values.dtype == np.uint8:
            lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
            valid = np.zeros(256, dtype=bool)
            for value, target in self.mapping:
                lookup[value], valid[value] = target, True
            labels, known = lookup[values], valid[values]
        else:
            labels = np.full(values.shape, IGNORE_INDEX, dtype=np.uint8)
            known = np.zeros(values.shape, dtype=bool)
            for value, target in self.mapping:
                mask = values == value
                labels[mask] = target
                known |= mask
        if not known.all():
            unexpected = np.unique(values[~known])
            shown = ", ".join(str(v) for v in unexpected[:8].tolist()) + (", ..." if unexpected.size > 8 else "")
            raise StoreError(
                f"{name}: unexpected label values {shown} in {int((~known).sum())} pixels; "
                f"{self.meaning}. Is this the right file?"
            )
        return labels, 0
