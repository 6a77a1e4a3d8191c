"""Read-only access to a tile store, with one-line errors for every way a file can be wrong.

Opening checks the format marker and version; reads surface checksum (Fletcher32) failures as
`StoreError` naming the dataset and tile, so a corrupt chunk is never silently used for training.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmbench.data.store_areas import Area, first_cover_masks, group_by_area, uncovered_pixels
from mmbench.data.store_format import (
    AREAS_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    LABELS_GROUP,
    MODALITIES_GROUP,
    SPLIT_PARTS,
    SPLITS_GROUP,
    TILES_GROUP,
    ModalitySpec,
    StoreError,
)


@dataclass(frozen=True)
class ModalityInfo(ModalitySpec):
    """A stored modality: its spec plus the normalisation statistics computed when it was written."""

    stats: dict[str, Any] = field(default_factory=dict)


Window = tuple[int, int, int, int]  # top, left, height, width


def open_h5(path: str | Path, chunk_cache_bytes: int | None = None) -> h5py.File:
    """Open read-only; a missing, truncated or non-HDF5 file becomes a one-line `StoreError`."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"tile store {str(path)!r} is a directory; give the .h5 store file inside it")
    if not path.is_file():
        raise StoreError(f"tile store {str(path)!r} does not exist; check the path or run 'mmbench data synth'")
    try:
        import hdf5plugin  # noqa: F401 - registers the blosc filter stores may use
    except ImportError:  # stores written with gzip/lzf still open; blosc reads then fail with a clear error
        pass
    try:
        options = {} if chunk_cache_bytes is None else {"rdcc_nbytes": chunk_cache_bytes}
        return h5py.File(path, "r", **options)
    except OSError as exc:
        raise StoreError(
            f"tile store {str(path)!r} is not a readable HDF5 file (truncated or corrupt?): {exc}"
        ) from exc


class TileStore:
    """A tile store opened for reading. Cheap to open; reads one chunk per tile and modality."""

    def __init__(self, path: str | Path, chunk_cache_bytes: int | None = None) -> None:
        """`chunk_cache_bytes` sizes HDF5's per-dataset cache of decoded chunks (h5py's default: 1 MiB);
        0 disables it, which is what random crops over a dataset much larger than memory see."""
        self.path = Path(path)
        self._file = open_h5(self.path, chunk_cache_bytes)
        self._datasets: dict[str, h5py.Dataset] = {}
        try:
            self._check_header()
        except Exception:
            self._file.close()
            raise

    def _check_header(self) -> None:
        attrs = self._file.attrs
        if attrs.get("format") != FORMAT_NAME:
            raise StoreError(
                f"{self.path}: not an mmbench tile store (no '{FORMAT_NAME}' marker); "
                "create it with 'mmbench data convert' or 'mmbench data synth'"
            )
        version = int(attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{self.path}: store format version {version} is newer than this mmbench reads "
                f"({FORMAT_VERSION}); upgrade mmbench"
            )
        if version < 1:
            raise StoreError(f"{self.path}: invalid format_version {version}")
        for group in (MODALITIES_GROUP, LABELS_GROUP, TILES_GROUP, SPLITS_GROUP):
            if group not in self._file:
                raise StoreError(f"{self.path}: group '{group}' is missing; the store is incomplete")

    # -- context management --------------------------------------------------------------------
    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> TileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------------
    @property
    def raw_file(self) -> h5py.File:
        """The open HDF5 file, for the structural checks of mmbench/data/store_checks.py."""
        return self._file

    @property
    def raw_attributes(self) -> h5py.AttributeManager:
        return self._file.attrs

    def _attr(self, key: str) -> Any:
        try:
            return self._file.attrs[key]
        except KeyError:
            message = f"{self.path}: attribute '{key}' is missing; the store is incomplete: {self._fix}"
            raise StoreError(message) from None

    def _json_attr(self, key: str) -> Any:
        value = self._attr(key)
        try:
            return json.loads(value)
        except (TypeError, ValueError) as exc:
            message = f"{self.path}: attribute '{key}' is not valid JSON ({exc}); the store is corrupt: {self._fix}"
            raise StoreError(message) from None

    def _modality_json_attr(self, name: str, dataset: h5py.Dataset, key: str, default: Any) -> Any:
        if key not in dataset.attrs:
            if default is not None:
                return default
            raise StoreError(f"{self.path}: modality {name!r}: attribute '{key}' is missing; {self._fix}")
        try:
            return json.loads(dataset.attrs[key])
        except (TypeError, ValueError) as exc:
            message = f"{self.path}: modality {name!r}: attribute '{key}' is not valid JSON ({exc}); {self._fix}"
            raise StoreError(message) from None

    @property
    def _fix(self) -> str:
        return f"re-create the store ('mmbench data verify {self.path}' lists every problem)"

    @cached_property
    def name(self) -> str:
        return str(self._attr("name"))

    @cached_property
    def format_version(self) -> int:
        return int(self._attr("format_version"))

    @cached_property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._json_attr("classes"))

    @cached_property
    def palette(self) -> list[list[int]] | None:
        return self._json_attr("palette")

    @cached_property
    def ignore_index(self) -> int:
        return int(self._attr("ignore_index"))

    @cached_property
    def tile_size(self) -> tuple[int, int]:
        try:
            height, width = self._json_attr("tile_size")
            return int(height), int(width)
        except (TypeError, ValueError):
            raise StoreError(f"{self.path}: attribute 'tile_size' is not [height, width]; {self._fix}") from None

    @cached_property
    def provenance(self) -> dict[str, Any]:
        return self._json_attr("provenance")

    @cached_property
    def codec(self) -> str:
        return str(self._file.attrs.get("codec", "unknown"))

    @cached_property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self._json_attr("modalities"))

    @cached_property
    def modalities(self) -> dict[str, ModalityInfo]:
        infos = {}
        for name in self.modality_names:
            dataset = self._dataset(f"{MODALITIES_GROUP}/{name}")
            infos[name] = ModalityInfo(
                name=name,
                bands=tuple(self._modality_json_attr(name, dataset, "bands", None)),
                dtype=dataset.dtype.name,
                units=str(dataset.attrs.get("units", "")),
                description=str(dataset.attrs.get("description", "")),
                stats=self._modality_json_attr(name, dataset, "stats", {}),
            )
        return infos

    @cached_property
    def label_variants(self) -> tuple[str, ...]:
        return tuple(self._json_attr("label_variants"))

    @cached_property
    def num_tiles(self) -> int:
        return int(self._dataset(f"{TILES_GROUP}/ids").shape[0])

    @cached_property
    def tile_ids(self) -> list[str]:
        return [
            value.decode() if isinstance(value, bytes) else str(value)
            for value in self._dataset(f"{TILES_GROUP}/ids")[:]
        ]

    @cached_property
    def default_split(self) -> str:
        return str(self._attr("default_split"))

    @cached_property
    def splits(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            name: {part: group[part][:] for part in SPLIT_PARTS if part in group}
            for name, group in self._file[SPLITS_GROUP].items()
        }

    def split_indices(self, split: str | None, part: str) -> np.ndarray:
        """Tile indices of `part` in `split` (None or "default" = the store's default split)."""
        name = self.default_split if split in (None, "default") else split
        if name not in self.splits:
            raise StoreError(f"{self.path}: no split {name!r}; the store has {', '.join(self.splits)}")
        parts = self.splits[name]
        if part not in parts:
            raise StoreError(f"{self.path}: split {name!r} has no part {part!r}; it has {', '.join(parts)}")
        return parts[part]

    def tile_record(self, index: int) -> dict[str, Any]:
        """The tile's id, source, (row, col) offset and files; in an area store also its area's size."""
        group = self._file[TILES_GROUP]
        source = group["source"][index]
        record = {
            "id": self.tile_ids[index],
            "source": source.decode() if isinstance(source, bytes) else str(source),
            "row": int(group["row"][index]),
            "col": int(group["col"][index]),
            "files": json.loads(group["files"][index]),
        }
        if self.areas is not None:
            area = self.areas[record["source"]]
            record["area_size"] = [area.height, area.width]
        return record

    # -- source areas (docs/data-format.md) ------------------------------------------------------
    @cached_property
    def areas(self) -> dict[str, Area] | None:
        """The source areas by id, or None for a store without area metadata (scored tile by tile)."""
        if AREAS_GROUP not in self._file:
            return None
        group = self._file[AREAS_GROUP]
        try:
            ids, heights, widths = group["ids"][:], group["height"][:], group["width"][:]
        except KeyError as exc:
            raise StoreError(f"{self.path}: group '{AREAS_GROUP}' is incomplete ({exc}); re-create the store") from None
        if not len(ids) == len(heights) == len(widths):
            raise StoreError(f"{self.path}: the '{AREAS_GROUP}' datasets differ in length; re-create the store")
        names = [value.decode() if isinstance(value, bytes) else str(value) for value in ids]
        return {
            name: Area(name, position, int(height), int(width))
            for position, (name, height, width) in enumerate(zip(names, heights, widths, strict=True))
        }

    @cached_property
    def tile_sources(self) -> list[str]:
        return [
            value.decode() if isinstance(value, bytes) else str(value)
            for value in self._dataset(f"{TILES_GROUP}/source")[:]
        ]

    @cached_property
    def tile_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols): every tile's offset in its source area, read once."""
        return self._dataset(f"{TILES_GROUP}/row")[:], self._dataset(f"{TILES_GROUP}/col")[:]

    # -- data ----------------------------------------------------------------------------------
    def _dataset(self, path: str) -> h5py.Dataset:
        # Resolving a path through HDF5 links costs more than reading a small crop: cache the handles.
        dataset = self._datasets.get(path)
        if dataset is None:
            try:
                dataset = self._datasets[path] = self._file[path]
            except KeyError:
                raise StoreError(f"{self.path}: dataset '{path}' is missing; {self._fix}") from None
        return dataset

    def read_modality(self, name: str, index: int, window: Window | None = None) -> np.ndarray:
        if name not in self.modality_names:
            raise StoreError(f"{self.path}: no modality {name!r}; the store has {', '.join(self.modality_names)}")
        return self._read(f"{MODALITIES_GROUP}/{name}", index, window, channel_axis=True)

    def read_label(self, variant: str, index: int, window: Window | None = None) -> np.ndarray:
        if variant not in self.label_variants:
            raise StoreError(
                f"{self.path}: no label variant {variant!r}; the store has {', '.join(self.label_variants)}"
            )
        return self._read(f"{LABELS_GROUP}/{variant}", index, window, channel_axis=False)

    def _read(self, path: str, index: int, window: Window | None, channel_axis: bool) -> np.ndarray:
        dataset = self._dataset(path)
        if window is None:
            selection: tuple = (index,)
        else:
            top, left, height, width = window
            rows, cols = slice(top, top + height), slice(left, left + width)
            selection = (index, slice(None), rows, cols) if channel_axis else (index, rows, cols)
        try:
            return dataset[selection]
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot read {path} tile {index} (checksum or decompression failed: "
                "the file is corrupt; re-create it)"
            ) from exc

    # -- verification --------------------------------------------------------------------------
    def verify(self, progress: Callable[[int], None] | None = None) -> Iterator[str]:
        """Yield each problem found: the structural checks (attributes, shapes, statistics, splits, areas;
        mmbench/data/store_checks.py), then every chunk read back (checksums, label range, NaN/inf)."""
        from mmbench.data.store_checks import readable_datasets, structure_problems, tile_problems

        structural = list(structure_problems(self))
        yield from structural
        modalities, variants = readable_datasets(self)
        if modalities is None:
            return  # attributes or tile ids unusable: nothing below could be trusted
        yield from self._verify_areas()
        for index in range(self.num_tiles):
            yield from tile_problems(self, index, modalities, variants)
            if progress is not None:
                progress(index + 1)

    def _verify_areas(self) -> Iterator[str]:
        """Every tile of an area store names a known area, sits inside it, and every area pixel is covered."""
        areas = self.areas
        if areas is None:
            return
        sources, (rows, cols) = self.tile_sources, self.tile_offsets
        unknown = sorted({source for source in sources if source not in areas})
        if unknown:
            yield f"tiles name source areas missing from '{AREAS_GROUP}': {', '.join(unknown[:5])}"
            return
        known = range(self.num_tiles)
        for area, placements in group_by_area(known, sources, rows, cols, areas):
            outside = [p for p in placements if not (0 <= p.row < area.height and 0 <= p.col < area.width)]
            if outside:
                yield f"area {area.name!r}: tile {outside[0].tile} lies outside its {area.height}x{area.width} pixels"
                continue
            missing = uncovered_pixels(placements, self.tile_size, area)
            if missing:
                yield f"area {area.name!r}: {missing} of its pixels are in no tile"

    def class_histogram(self, variant: str, indices: np.ndarray) -> np.ndarray:
        """Pixel count per class (last entry: ignore) over the given tiles; in an area store each area pixel
        is counted once (overlapping tiles share pixels) and padding is not counted."""
        counts = np.zeros(len(self.classes) + 1, dtype=np.int64)
        indices = np.asarray(indices)
        outside = indices[(indices < 0) | (indices >= self.num_tiles)]
        if outside.size:
            raise StoreError(
                f"{self.path}: a split lists tile {int(outside[0])}, outside 0..{self.num_tiles - 1}; {self._fix}"
            )
        if self.areas is not None:
            rows, cols = self.tile_offsets
            for area, placements in group_by_area(indices, self.tile_sources, rows, cols, self.areas):
                for placement, mask in first_cover_masks(placements, self.tile_size, area):
                    counts += self._label_counts(self.read_label(variant, placement.tile)[mask])
            return counts
        for index in indices:
            counts += self._label_counts(self.read_label(variant, int(index)))
        return counts

    def _label_counts(self, label: np.ndarray) -> np.ndarray:
        values = np.where(label == self.ignore_index, len(self.classes), label)
        return np.bincount(values.ravel(), minlength=len(self.classes) + 1)[: len(self.classes) + 1]
