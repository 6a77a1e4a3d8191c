"""What evaluation scores as one unit: whole source areas (stitched from their tiles) or single tiles.

Converters cut each source area into overlapping tiles (the last row and column shifted back to the edge).
Scoring those tiles one by one counts overlap pixels twice or more and loses context at every tile border, so a
store that records its areas (docs/data-format.md, `areas`) is scored by **area**: windows slide over the
stitched area and every area pixel is counted once. Stores without area metadata (the synthetic benchmark,
stores converted before area metadata existed) keep being scored by **tile**, exactly as before. Both the
unit and the conversion tiling are recorded in every record's protocol settings, and a sliding window larger
than the unit is refused instead of silently shrunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmbench.data.store_areas import Area, Placement, extent, group_by_area, uncovered_pixels
from mmbench.data.store_format import StoreError
from mmbench.data.store_reader import TileStore
from mmbench.errors import ConfigError

AREA, TILE = "area", "tile"


@dataclass(frozen=True)
class AreaUnit:
    """One source area to stitch: the area, its stored extent (padding included) and its tiles."""

    area: Area
    extent: tuple[int, int]
    placements: tuple[Placement, ...]


@dataclass(frozen=True)
class EvaluationUnits:
    """How a split part is scored: `kind` (area or tile), the effective sliding window and, by area, the areas."""

    kind: str
    tile_size: tuple[int, int]
    conversion_stride: int | None
    window: int
    stride: int
    areas: tuple[AreaUnit, ...] = ()

    @property
    def tiles(self) -> int:
        return sum(len(unit.placements) for unit in self.areas)

    def shard(self, rank: int, world_size: int) -> EvaluationUnits:
        """The areas one rank of a distributed evaluation scores (whole areas, never split)."""
        return replace(self, areas=self.areas[rank::world_size])

    def settings(self) -> dict[str, Any]:
        """What a record states about the unit (docs/protocols.md, "Evaluation units")."""
        height, width = self.tile_size
        return {
            "evaluation_unit": self.kind,
            "conversion_tiling": {
                "tile_size": height if height == width else [height, width],
                "stride": self.conversion_stride,
            },
            "sliding_window": {"size": self.window, "stride": self.stride},
        }


def plan_units(
    path: str | Path, config: Mapping[str, Any], part: str, limit_tiles: int | None = None
) -> EvaluationUnits:
    """The units of `config`'s split `part` in the store at `path`, checked against the protocol's window.

    `limit_tiles` (smoke runs, `method.train.val_tiles`) keeps the first tiles of the part; by area it keeps
    whole areas, in order, until they hold at least that many tiles, so no area is scored in part.
    """
    with TileStore(path) as store:
        tile_size = store.tile_size
        stride = store.provenance.get("stride") if isinstance(store.provenance, dict) else None
        conversion_stride = stride if isinstance(stride, int) and not isinstance(stride, bool) else None
        window, window_stride = config.get("window"), config.get("stride")
        if store.areas is None:
            return _tile_units(store, tile_size, conversion_stride, window, window_stride)
        indices = store.split_indices(config.get("split"), part)
        rows, cols = store.tile_offsets
        groups = group_by_area(indices, store.tile_sources, rows, cols, store.areas)
        if limit_tiles is not None:
            groups = _first_areas(groups, limit_tiles)
        units = []
        for area, placements in groups:
            missing = uncovered_pixels(placements, tile_size, area)
            if missing:
                raise StoreError(
                    f"{store.path}: area {area.name!r} is only partly in split part {part!r} ({missing} of its "
                    "pixels are in no tile of the part); put all tiles of an area in one part, e.g. re-convert it"
                )
            units.append(AreaUnit(area, extent(area, tile_size), tuple(placements)))
    size = window if window is not None else min(tile_size)
    if units:
        smallest = min(units, key=lambda unit: min(unit.extent))
        if size > min(smallest.extent):
            height, width = smallest.extent
            raise ConfigError(
                f"protocol.window={size} is larger than the evaluation unit, area {smallest.area.name!r} of "
                f"{height}x{width} px (padding included) in part {part!r}; set protocol.window to at most "
                f"{min(smallest.extent)}"
            )
    return EvaluationUnits(AREA, tile_size, conversion_stride, size, window_stride or size, tuple(units))


def _tile_units(
    store: TileStore, tile_size: tuple[int, int], conversion_stride: int | None, window: int | None, stride: int | None
) -> EvaluationUnits:
    height, width = tile_size
    if window is not None and window > min(tile_size):
        raise ConfigError(
            f"protocol.window={window} is larger than the evaluation unit, the {height}x{width} px tiles of "
            f"{store.path.name} (a store without area metadata is scored tile by tile); set protocol.window to at "
            f"most {min(tile_size)}, or null"
        )
    size = window if window is not None else max(tile_size)
    return EvaluationUnits(TILE, tile_size, conversion_stride, size, stride or size)


def _first_areas(groups: list[tuple[Area, list[Placement]]], limit: int) -> list[tuple[Area, list[Placement]]]:
    kept, tiles = [], 0
    for area, placements in groups:
        if tiles >= limit:
            break
        kept.append((area, placements))
        tiles += len(placements)
    return kept
