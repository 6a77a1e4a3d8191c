"""Source areas of a tile store: where each tile sits in the image it was cut from, and which pixels are padding.

Converters cut each source area (an ISPRS area, a WHU-OPT-SAR sheet, ...) into tiles whose last row and column
are shifted back to end at the edge, so neighbouring tiles overlap; an area smaller than a tile is padded at the
bottom and right. A store that records its areas (docs/data-format.md, group `areas`) lets readers undo both:
whole-area evaluation counts each area pixel once, and statistics neither count overlaps twice nor see padding.
A tile pixel at (r, c) of a tile placed at (row, col) is padding exactly when row + r >= area height or
col + c >= area width, so the area size is all a store needs to say which pixels are padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Area:
    """A source area: its id (the tiles' `source`), its position in the store's `areas` table and its size."""

    name: str
    index: int
    height: int
    width: int


@dataclass(frozen=True)
class Placement:
    """A tile of an area: its store index and the (row, col) offset of its top-left pixel in the area."""

    tile: int
    row: int
    col: int


def valid_size(placement: Placement, tile_size: tuple[int, int], area: Area) -> tuple[int, int]:
    """(height, width) of the tile's top-left block that lies inside the area; the rest is padding."""
    return (
        max(0, min(tile_size[0], area.height - placement.row)),
        max(0, min(tile_size[1], area.width - placement.col)),
    )


def has_padding(placement: Placement, tile_size: tuple[int, int], area: Area) -> bool:
    return valid_size(placement, tile_size, area) != tuple(tile_size)


def extent(area: Area, tile_size: tuple[int, int]) -> tuple[int, int]:
    """The stored extent of an area: the area itself, or one tile where the area is smaller (padded)."""
    return max(area.height, tile_size[0]), max(area.width, tile_size[1])


def first_cover_masks(
    placements: Iterable[Placement], tile_size: tuple[int, int], area: Area
) -> Iterator[tuple[Placement, np.ndarray]]:
    """For each tile in the given order, the (H, W) bool mask of its area pixels no earlier tile covered.

    Summing over these masks counts every covered area pixel exactly once and never a padding pixel, which is
    what statistics and class shares of an area store need. Memory: one bool per area pixel (36 MB for a
    6000 x 6000 Potsdam area), held while the area's tiles are visited.
    """
    covered = np.zeros((area.height, area.width), dtype=bool)
    for placement in placements:
        height, width = valid_size(placement, tile_size, area)
        mask = np.zeros(tile_size, dtype=bool)
        if height and width:
            region = covered[placement.row : placement.row + height, placement.col : placement.col + width]
            mask[:height, :width] = ~region
            region[...] = True
        yield placement, mask


def uncovered_pixels(placements: Iterable[Placement], tile_size: tuple[int, int], area: Area) -> int:
    """How many pixels of the area no tile covers (0 for every area a converter writes)."""
    covered = np.zeros((area.height, area.width), dtype=bool)
    for placement in placements:
        height, width = valid_size(placement, tile_size, area)
        covered[placement.row : placement.row + height, placement.col : placement.col + width] = True
    return int(covered.size - np.count_nonzero(covered))


def group_by_area(
    indices: Iterable[int], sources: list[str], rows: np.ndarray, cols: np.ndarray, areas: dict[str, Area]
) -> list[tuple[Area, list[Placement]]]:
    """The given tiles grouped by area, areas in order of their first tile, tiles in the given order."""
    groups: dict[str, list[Placement]] = {}
    for index in indices:
        index = int(index)
        groups.setdefault(sources[index], []).append(Placement(index, int(rows[index]), int(cols[index])))
    return [(areas[name], placements) for name, placements in groups.items()]
