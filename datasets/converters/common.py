"""The conversion engine shared by all layouts: read one source tile, check it, cut it into windows, write them.

Only one source tile's modalities and labels are in memory at a time (`_convert_tile` returns before the next
tile is read). The store is written by `TileStoreWriter`, which writes under a temporary name and renames at the
end, so a conversion that fails at any point leaves no output file behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmbench.data.store_format import CODECS, DEFAULT_CODEC, IGNORE_INDEX, SPLIT_PARTS, ModalitySpec, StoreError
from mmbench.datasets.converters.entry import Entry
from mmbench.datasets.converters.layout import Layout, ModalityRule
from mmbench.datasets.converters.planning import Plan, SourceTile, listing, make_plan, plural
from mmbench.datasets.converters.rasters import decode_image
from mmbench.datasets.converters.report import ConversionReport
from mmbench.datasets.converters.sources import SourceTree
from mmbench.evaluation.tiling import window_starts

Progress = Callable[[str, int, int], None]
MIN_TILE_SIZE = 8


def tile_id(source: str, row: int, col: int) -> str:
    return f"{source}_r{row:04d}_c{col:04d}"


def check_tiling(tile_size: int, stride: int | None) -> tuple[int, int]:
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < MIN_TILE_SIZE:
        raise StoreError(f"tile size {tile_size!r} is too small; use an integer of at least {MIN_TILE_SIZE} pixels")
    stride = tile_size if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 < stride <= tile_size:
        raise StoreError(f"stride {stride!r} must be an integer in 1..{tile_size} (the tile size)")
    return tile_size, stride


def run_conversion(
    layout: Layout,
    source: str | Path,
    output: str | Path,
    *,
    tile_size: int,
    stride: int | None,
    codec: str,
    progress: Progress | None,
) -> ConversionReport:
    """Convert one source with one layout; see `mmbench.datasets.converters.convert`."""
    tile_size, stride = check_tiling(tile_size, stride)
    if codec not in CODECS:
        raise StoreError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    output = Path(output)
    if output.is_dir():
        raise StoreError(f"output {str(output)!r} is a folder; give a file name such as {output / 'store.h5'}")
    with SourceTree(source, layout.archive_names()) as tree:
        plan = make_plan(layout, tree)
        return _Conversion(layout, tree, plan, output, tile_size, stride, codec, progress).run()


@dataclass(frozen=True)
class LayoutConverter:
    """A converter plugin's implementation: a declarative `Layout` run by this engine.

    A `mmbench.plugins.ConverterSpec` names one as its target (`mmbench data convert` and
    `mmbench.datasets.converters.convert` call its `convert`); a converter from another package can wrap its own
    `Layout` the same way, or provide any object with this `convert`.
    """

    layout: Layout

    def convert(
        self,
        source: str | Path,
        output: str | Path,
        *,
        tile_size: int = 512,
        stride: int | None = None,
        codec: str = DEFAULT_CODEC,
        progress: Progress | None = None,
    ) -> ConversionReport:
        """See `mmbench.datasets.converters.convert`."""
        return run_conversion(
            self.layout, source, output, tile_size=tile_size, stride=stride, codec=codec, progress=progress
        )


class _Conversion:
    """State of one conversion run: the writer (created once the first tile shows the delivered dtypes)."""

    def __init__(
        self,
        layout: Layout,
        tree: SourceTree,
        plan: Plan,
        output: Path,
        tile_size: int,
        stride: int,
        codec: str,
        progress: Progress | None,
    ) -> None:
        self.layout, self.tree, self.plan, self.output = layout, tree, plan, output
        self.tile_size, self.stride, self.codec = tile_size, stride, codec
        self.progress = progress
        self.notes: list[str] = [*layout.notes, *plan.notes]
        self.off_palette: dict[str, int] = {}
        self.padded: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        self.writer: Any = None
        self.tile_indices: dict[str, list[int]] = {}

    def run(self) -> ConversionReport:
        from mmbench.data.store_writer import TileStoreWriter

        total = len(self.plan.tiles)
        with contextlib.ExitStack() as stack:
            for position, tile in enumerate(self.plan.tiles):
                self._report(f"{self.layout.format} {tile.source}", position, total)
                modalities, labels = self._read(tile)
                if self.writer is None:
                    self.writer = stack.enter_context(
                        TileStoreWriter(
                            self.output,
                            name=self.layout.format,
                            modalities=self._specs(modalities),
                            label_variants=[rule.variant for rule in self.plan.labels],
                            tile_size=self.tile_size,
                            classes=self.layout.classes,
                            palette=self.layout.palette,
                            codec=self.codec,
                        )
                    )
                self.tile_indices[tile.source] = self._write(tile, modalities, labels)
                del modalities, labels
            if self.padded:
                self.notes.append(
                    f"{plural(len(self.padded), 'source image')} smaller than the {self.tile_size} px "
                    f"tile padded at the bottom/right (modalities with the per-band training mean, labels "
                    f"with ignore {IGNORE_INDEX}): {listing(self.padded)}"
                )
            split_descriptions = self._set_splits()
            archives = self.tree.archive_hashes(
                lambda name: self._report(f"{self.layout.format}: sha256 of {name}", total, total)
            )
            self.writer.provenance.update(self._provenance(archives, split_descriptions))
            tiles = self.writer.tile_count
        self._report(f"{self.layout.format}: done", total, total)
        return ConversionReport(self.output, tiles, dict(self.off_palette), list(self.notes))

    def _report(self, description: str, completed: int, total: int) -> None:
        if self.progress is not None:
            self.progress(description, completed, total)

    # -- reading -------------------------------------------------------------------------------
    def _read(self, tile: SourceTile) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        modalities = {rule.name: self._read_modality(rule, tile.modalities[rule.name]) for rule in self.plan.modalities}
        labels = {}
        for rule in self.plan.labels:
            entry = tile.labels[rule.variant]
            raw = decode_image(self.tree.read(entry), entry.display, indexed=rule.indexed)
            labels[rule.variant], off_palette = rule.decoder(raw, entry.display)
            if off_palette:
                self.off_palette[entry.display] = off_palette
        sizes = {
            entry.display: array.shape[-2:]
            for entry, array in zip(tile.files, [*modalities.values(), *labels.values()], strict=True)
        }
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{name} is {height}x{width}" for name, (height, width) in sizes.items())
            raise StoreError(
                f"tile {tile.source}: image sizes differ ({shown}, height x width); all modalities "
                "and labels of a source tile must share one pixel grid"
            )
        return modalities, labels

    def _read_modality(self, rule: ModalityRule, entry: Entry) -> np.ndarray:
        array = decode_image(self.tree.read(entry), entry.display)
        if array.shape[0] != len(rule.bands):
            if len(rule.bands) == 1 and array.shape[0] in (3, 4) and _equal_bands(array[:3]):
                array = array[:1]  # a grey image saved as RGB(A)
            else:
                raise StoreError(
                    f"{entry.display}: has {array.shape[0]} band(s); the {rule.what} should have "
                    f"{len(rule.bands)} ({', '.join(rule.bands)})"
                )
        accepted = rule.accepted_dtypes()
        if accepted is None and array.dtype.kind not in "uif":
            raise StoreError(f"{entry.display}: pixel type {array.dtype} is not an integer or float type")
        if accepted is not None and array.dtype.name not in accepted:
            raise StoreError(
                f"{entry.display}: pixel type {array.dtype}; the {rule.what} should be {' or '.join(accepted)}"
            )
        if rule.convert is not None:
            array = rule.convert(array)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise StoreError(
                f"{entry.display}: {bad} NaN/inf values in the {rule.what}; fill them (e.g. with "
                "gdal_fillnodata) before converting"
            )
        expected = self.dtypes.get(rule.name)
        if expected is not None and array.dtype != expected:
            raise StoreError(
                f"{entry.display}: pixel type {array.dtype}, but earlier {rule.what} files are "
                f"{expected}; all files of a modality must share one type"
            )
        self.dtypes.setdefault(rule.name, array.dtype)
        return array

    def _specs(self, modalities: Mapping[str, np.ndarray]) -> list[ModalitySpec]:
        return [
            ModalitySpec(
                rule.name, rule.bands, rule.dtype or modalities[rule.name].dtype.name, rule.units, rule.description
            )
            for rule in self.plan.modalities
        ]

    # -- writing -------------------------------------------------------------------------------
    def _write(self, tile: SourceTile, modalities: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> list[int]:
        """Cut one source area into tiles; each records the area's size, so the store knows its padding and
        evaluation can stitch the area back together (docs/data-format.md)."""
        height, width = next(iter(modalities.values())).shape[-2:]
        area_size = (int(height), int(width))
        size = self.tile_size
        if height < size or width < size:
            self.padded.append(f"{tile.source} ({height}x{width})")
            pad = ((0, max(size - height, 0)), (0, max(size - width, 0)))
            # The writer replaces modality padding by the training mean once that is known.
            modalities = {name: np.pad(array, ((0, 0), *pad), constant_values=0) for name, array in modalities.items()}
            labels = {name: np.pad(array, pad, constant_values=IGNORE_INDEX) for name, array in labels.items()}
            height, width = max(height, size), max(width, size)
        files = [entry.display for entry in tile.files]
        indices = []
        for row in window_starts(height, size, self.stride):
            for col in window_starts(width, size, self.stride):
                window = (slice(row, row + size), slice(col, col + size))
                indices.append(
                    self.writer.add_tile(
                        tile_id(tile.source, row, col),
                        {
                            name: np.ascontiguousarray(array[(slice(None), *window)])
                            for name, array in modalities.items()
                        },
                        {name: np.ascontiguousarray(array[window]) for name, array in labels.items()},
                        source=tile.source,
                        row=row,
                        col=col,
                        files=files,
                        area_size=area_size,
                    )
                )
        return indices

    def _set_splits(self) -> dict[str, str]:
        primaries = {tile.source: tile.modalities[self.plan.modalities[0].name] for tile in self.plan.tiles}
        descriptions = {}
        for split in self.layout.splits(primaries):
            parts: dict[str, list[int]] = {}
            for part in SPLIT_PARTS:
                listed = split.parts.get(part, ())
                present = [source for source in listed if source in self.tile_indices]
                parts[part] = [index for source in present for index in self.tile_indices[source]]
                if not parts[part]:
                    self.notes.append(
                        f"split '{split.name}': part '{part}' is empty; the source has none of its "
                        f"{len(listed)} tiles" + (f" ({listing(list(listed))})" if listed else "")
                    )
            self.notes.extend(split.notes)
            self.writer.set_split(split.name, parts, default=split.default)
            descriptions[split.name] = split.description
        return descriptions

    def _provenance(self, archives: dict[str, str], splits: dict[str, str]) -> dict[str, Any]:
        from mmbench._version import __version__

        return {
            "converter": self.layout.converter,
            "converter_version": self.layout.version,
            "mmbench_version": __version__,
            "format": self.layout.format,
            "source": {"name": self.tree.source.name, "layout": self.tree.layout_kind()},
            "archives": archives,
            "files": dict(sorted(self.tree.file_hashes.items())),
            "tile_size": self.tile_size,
            "stride": self.stride,
            "modalities": {rule.name: rule.what for rule in self.plan.modalities},
            "label_variants": {rule.variant: rule.what for rule in self.plan.labels},
            "off_palette_pixels": dict(self.off_palette),
            "splits": splits,
            "notes": list(self.notes),
        }


def _equal_bands(array: np.ndarray) -> bool:
    return all(np.array_equal(array[0], band) for band in array[1:])
