"""Whole-area evaluation: windows slide over each source area stitched from its tiles; every pixel counts once.

Why: converters cut areas into overlapping tiles, and scoring those tiles one by one counts overlap pixels
twice or more (about 1.05x on Potsdam at stride = tile, 3.9x at stride 256) and cuts context at every tile
border. Here the tiles of one area are pasted back at their (row, col) offsets, the protocol's window slides
over the area, the logits of overlapping windows are averaged, one argmax is taken per area pixel and each
pixel inside the area (never padding) enters the confusion matrix exactly once.

Memory: areas are streamed one at a time, and within an area one band of window rows at a time. Rows above the
next band's top can receive no further window, so they are scored and dropped. What an area costs is about
4 B x scenarios x classes x window x area width (float32 logit sums) + 4 B x window x width (window counts)
+ 4 B x channels x window x width (the band's inputs, once more per pixel-drop variant) + the cached tiles of
up to ceil(window / conversion stride) + 1 tile rows, independent of the area's height. For a 6000 px wide
Potsdam area, 6 classes and a 512 window the sums are 74 MB per scenario (a whole (classes, H, W) canvas
would be 864 MB per scenario). Measured peak resident memory of a whole evaluation of one 6000 x 6000 area
(RGBIR + DSM, a tiny method, CPU): 0.93 GB for `full` and 1.5 GB for `subsets` (3 scenarios), of which
0.23 GB is the bare process; on a store converted at stride 256 (three tile rows cached) 1.3 GB for `full`,
1.5 GB with 512/256 windows.

Per-sample randomness follows the unit: random-drop draws availability per window (keyed by area, top and
left), and pixel-drop draws its masks per area row, so a pixel's mask does not depend on the window layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from mmbench.evaluation.runner import ScenarioRunner, Variants
from mmbench.evaluation.tiling import window_starts
from mmbench.evaluation.unit_matrices import UnitMatrices
from mmbench.evaluation.units import AreaUnit, EvaluationUnits
from mmbench.protocol import Scenario

if TYPE_CHECKING:
    from mmbench.data.loader import TileDataset

SCORE_ROWS = 64  # area rows counted per confusion-matrix update


def window_key(area: int, top: int, left: int) -> int:
    """A non-negative int naming one window of one area, for per-window random draws (offsets < 2^20 px)."""
    return (area << 40) | (top << 20) | left


def count_windows(units: EvaluationUnits) -> int:
    """Forward passes (per scenario) an area evaluation makes: for progress bars."""
    return sum(
        len(window_starts(unit.extent[0], units.window, units.stride))
        * len(window_starts(unit.extent[1], units.window, units.stride))
        for unit in units.areas
    )


class AreaScorer:
    """Scores the areas of `units` under every scenario into `matrices` (one matrix per area, keyed by the area's
    name) and per-window `patterns`."""

    def __init__(
        self,
        runner: ScenarioRunner,
        dataset: TileDataset,
        units: EvaluationUnits,
        scenarios: Sequence[Scenario],
        matrices: Sequence[UnitMatrices],
        patterns: Sequence[dict[str, int]],
        batch_size: int,
    ) -> None:
        """`dataset` is a `TileDataset` of the split part (whole tiles, normalised); tiles are read through it so
        that evaluation sees exactly the inputs training saw."""
        self.runner, self.dataset, self.units = runner, dataset, units
        self.scenarios, self.matrices, self.patterns = list(scenarios), list(matrices), list(patterns)
        self.batch_size = batch_size
        self.device = runner.device
        self.positions = {int(index): position for position, index in enumerate(dataset.indices)}

    def run(self, advance: Callable[[int], None] | None = None) -> None:
        done = 0
        for unit in self.units.areas:
            for windows in self._area(unit):
                done += windows
                if advance is not None:
                    advance(done)

    def _area(self, unit: AreaUnit) -> Iterator[int]:
        """Score one area band by band; yields the number of windows run after each batch."""
        window, stride = self.units.window, self.units.stride
        height, width = unit.extent
        tops, lefts = window_starts(height, window, stride), window_starts(width, window, stride)
        tiles = _BandReader(self.dataset, self.positions, unit, self.units.tile_size)
        classes = self.runner.method.num_classes
        sums = torch.zeros(len(self.scenarios), classes, window, width, device=self.device)
        counts = torch.zeros(window, width, dtype=torch.int32, device=self.device)
        for position, top in enumerate(tops):
            inputs, label = tiles.band(top, window)
            variants = self._variants({name: x.to(self.device) for name, x in inputs.items()}, unit, top)
            for start in range(0, len(lefts), self.batch_size):
                batch = lefts[start : start + self.batch_size]
                crops = {
                    key: torch.stack([x[:, :, left : left + window] for left in batch]) for key, x in variants.items()
                }
                keys = [window_key(unit.area.index, top, left) for left in batch]
                availability = [self.runner.availability(scenario, keys) for scenario in self.scenarios]
                logits = self.runner.window_logits(crops, availability)
                for index, scenario_logits in enumerate(logits):
                    for row, left in enumerate(batch):
                        sums[index, :, :, left : left + window] += scenario_logits[row]
                    if self.scenarios[index].per_sample:
                        self._count_patterns(index, availability[index])
                for left in batch:
                    counts[:, left : left + window] += 1
                yield len(batch)
            final = tops[position + 1] - top if position + 1 < len(tops) else window
            self._score(sums, counts, label.to(self.device), final, top, unit)
            if position + 1 < len(tops):
                sums = torch.cat([sums[:, :, final:], sums.new_zeros(*sums.shape[:2], final, width)], dim=2)
                counts = torch.cat([counts[final:], counts.new_zeros(final, width)], dim=0)
                tiles.release(tops[position + 1])

    def _score(
        self, sums: torch.Tensor, counts: torch.Tensor, label: torch.Tensor, rows: int, top: int, unit: AreaUnit
    ) -> None:
        """Count the band's first `rows` rows (complete: no later window reaches them), inside the area only."""
        rows = min(rows, unit.area.height - top)
        if rows <= 0:
            return
        columns = unit.area.width
        for first in range(0, rows, SCORE_ROWS):  # in slices: the argmax and counting buffers stay small
            last = min(first + SCORE_ROWS, rows)
            target = label[None, first:last, :columns]
            total = counts[first:last, :columns].to(sums.dtype)
            for index, matrix in enumerate(self.matrices):
                mean = sums[index, :, first:last, :columns] / total  # the average of overlapping windows' logits
                matrix.update_from_logits(unit.area.name, mean[None], target)

    def _variants(self, inputs: dict[str, torch.Tensor], unit: AreaUnit, top: int) -> Variants:
        """The band's inputs keyed by (modality, degradation ratio or None); pixel-drop masks are drawn per area
        row from (seed, area, modality, ratio, row), so they do not depend on window or band layout."""
        variants: Variants = {(name, None): x for name, x in inputs.items()}
        modalities = self.runner.modalities
        for scenario in self.scenarios:
            for name, ratio in scenario.corrupted.items():
                if (name, ratio) in variants:
                    continue
                x = inputs[name]
                height, width = x.shape[-2:]
                mask = np.stack(
                    [
                        np.random.default_rng(
                            [self.runner.seed, unit.area.index, modalities.index(name), round(ratio * 1e6), top + row]
                        ).random(width)
                        < ratio
                        for row in range(height)
                    ]
                )
                keep = torch.from_numpy(mask).to(self.device)[None]
                variants[(name, ratio)] = torch.where(keep, torch.zeros((), dtype=x.dtype, device=x.device), x)
        return variants

    def _count_patterns(self, index: int, availability: torch.Tensor) -> None:
        counts = self.patterns[index]
        for row in availability.tolist():
            key = "+".join(name for name, flag in zip(self.runner.modalities, row, strict=True) if flag)
            counts[key] = counts.get(key, 0) + 1


class _BandReader:
    """Pastes an area's tiles into bands of rows; keeps a tile only while a later band still needs it."""

    def __init__(
        self, dataset: TileDataset, positions: dict[int, int], unit: AreaUnit, tile_size: tuple[int, int]
    ) -> None:
        self.dataset, self.positions, self.unit = dataset, positions, unit
        self.tile_size = tile_size
        self.placements = sorted(unit.placements, key=lambda placement: (placement.row, placement.col))
        self.cache: dict[int, tuple[dict[str, torch.Tensor], torch.Tensor]] = {}

    def band(self, top: int, height: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Normalised inputs {modality: (C, height, W)} and int64 labels (height, W) of rows top..top+height."""
        tile_height, tile_width = self.tile_size
        width = self.unit.extent[1]
        inputs: dict[str, torch.Tensor] = {}
        label = torch.full((height, width), 255, dtype=torch.int64)
        for placement in self.placements:
            if placement.row >= top + height or placement.row + tile_height <= top:
                continue
            tile_inputs, tile_label = self._tile(placement.tile)
            first, last = max(top, placement.row), min(top + height, placement.row + tile_height)
            band_rows, tile_rows = slice(first - top, last - top), slice(first - placement.row, last - placement.row)
            columns = slice(placement.col, placement.col + tile_width)
            for name, x in tile_inputs.items():
                if name not in inputs:
                    inputs[name] = torch.zeros(x.shape[0], height, width, dtype=x.dtype)
                inputs[name][:, band_rows, columns] = x[:, tile_rows]
            label[band_rows, columns] = tile_label[tile_rows]
        return inputs, label

    def release(self, next_top: int) -> None:
        """Forget tiles that end above `next_top`: no later band reads them."""
        tile_height = self.tile_size[0]
        for placement in self.placements:
            if placement.row + tile_height <= next_top:
                self.cache.pop(placement.tile, None)

    def _tile(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if index not in self.cache:
            sample = self.dataset[self.positions[index]]
            self.cache[index] = (sample["inputs"], sample["label"].to(torch.uint8))
        inputs, label = self.cache[index]
        return inputs, label.to(torch.int64)
