"""Streaming writer of tile stores.

Tiles are appended one at a time (one HDF5 chunk per tile and modality), so a converter holds at most
one source tile's modalities in memory. The file is written under a temporary name and renamed into
place only when complete: a failed or interrupted conversion leaves no partial store behind.

A failure of the filesystem (full disk, read-only or vanished folder) becomes one `StoreError` naming the file,
raised only after the HDF5 file is closed and the temporary removed: HDF5 keeps unwritten chunks and metadata
in memory, and a file it could not close would otherwise be torn down at interpreter exit, where a full disk
made h5py segfault. A writer known to need `expected_tiles` tiles is refused at once when the folder's free
space clearly cannot hold them. Each temporary is locked (`flock`) while written, so the next writer of the
same target removes the temporaries whose writer died (a kill -9) and leaves a live one alone.

Tiles given with the size of the source area they were cut from (`area_size`) make an *area store*
(docs/data-format.md, `areas`): its statistics count each area pixel once and never padding, its label
padding is ignore and its modality padding holds the per-band training mean, so that padding normalises
to 0 like a missing input. Stores written without areas are written exactly as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from mmbench.atomic import shared_file_mode
from mmbench.data.store_areas import Area, Placement, first_cover_masks, group_by_area, has_padding, valid_size
from mmbench.data.store_format import (
    AREAS_GROUP,
    DEFAULT_CODEC,
    FORMAT_NAME,
    FORMAT_VERSION,
    IGNORE_INDEX,
    LABELS_GROUP,
    MODALITIES_GROUP,
    SPLIT_PARTS,
    SPLITS_GROUP,
    TILES_GROUP,
    ModalitySpec,
    StoreError,
    compression_options,
)
from mmbench.data.store_stats import band_statistics

_STRING = h5py.string_dtype()
# Bytes a store takes at least per decoded byte: no codec the writer offers compresses imagery 4x on average.
MIN_COMPRESSED_FRACTION = 0.25
SPACE_MARGIN_BYTES = 256 * 1024
_BROKEN: list[str] = []  # stores whose failed write left HDF5 in a state only process exit ends (hdf5_left_broken)
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EFBIG}


class TileStoreWriter:
    """Use as a context manager; the store appears at `path` only if the block completes."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        modalities: Sequence[ModalitySpec],
        label_variants: Sequence[str],
        tile_size: int | tuple[int, int],
        classes: Sequence[str],
        palette: Sequence[Sequence[int]] | None = None,
        codec: str = DEFAULT_CODEC,
        provenance: Mapping[str, Any] | None = None,
        expected_tiles: int | None = None,
    ) -> None:
        if not modalities:
            raise StoreError(f"{path}: a store needs at least one modality")
        if not label_variants:
            raise StoreError(f"{path}: a store needs at least one label variant (e.g. 'full')")
        if len(classes) >= IGNORE_INDEX:
            raise StoreError(f"{path}: at most {IGNORE_INDEX - 1} classes fit uint8 labels with ignore {IGNORE_INDEX}")
        self.path = Path(path)
        self.name = name
        self.modalities = {spec.name: spec for spec in modalities}
        self.label_variants = tuple(label_variants)
        self.tile_size = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
        self.classes = tuple(classes)
        self.palette = [list(map(int, colour)) for colour in palette] if palette is not None else None
        self.codec = codec
        self.provenance: dict[str, Any] = dict(provenance or {})
        self._compression = compression_options(codec)
        self._splits: dict[str, dict[str, np.ndarray]] = {}
        self._default_split: str | None = None
        self._count = 0
        self._areas: dict[str, Area] = {}
        self._sources: list[str] = []
        self._rows: list[int] = []
        self._cols: list[int] = []
        self._file: h5py.File | None = None
        self._tmp_path: Path | None = None
        self._lock_fd: int | None = None
        self.expected_tiles = expected_tiles
        height, width = self.tile_size
        tile_bytes = sum(spec.channels * np.dtype(spec.dtype).itemsize for spec in self.modalities.values())
        tile_bytes = (tile_bytes + len(self.label_variants)) * height * width
        # Free space kept for the next tile's chunks (a codec may grow them a little) and HDF5's metadata.
        self._margin: int | None = 2 * tile_bytes + SPACE_MARGIN_BYTES

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> TileStoreWriter:
        if self.path.is_dir():
            raise StoreError(
                f"{self.path} is a directory; give a file name for the store, e.g. {self.path / 'store.h5'}"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.path)
            self._check_space()
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            self._lock_fd, self._tmp_path = fd, Path(tmp)
            with contextlib.suppress(OSError):  # a filesystem without locks: the next writer leaves it alone
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until the temporary is renamed or removed
            os.fchmod(fd, shared_file_mode())
            self._file = h5py.File(self._tmp_path, "w", locking=False)  # our flock stands for HDF5's own lock
            self._create_layout()
        except BaseException as exc:
            self._discard()
            if isinstance(exc, OSError):
                raise write_error(self.path, exc) from exc
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._file is not None and self._tmp_path is not None
        try:
            if exc_type is None:
                try:
                    self._finalize()
                    self._close_file()
                    os.replace(self._tmp_path, self.path)
                except OSError as error:
                    raise write_error(self.path, error) from error
            elif isinstance(exc, OSError) and is_write_failure(exc):
                raise write_error(self.path, exc) from exc
        finally:
            self._discard()

    @contextlib.contextmanager
    def _handle(self, path: str) -> Iterator[h5py.Dataset]:
        """A dataset handle closed explicitly on leaving. Closing writes the chunks HDF5 cached for it; left to
        the garbage collector, a failed write (a full disk) could only be printed as an "Exception ignored"
        traceback. Here it raises; HDF5 is then left holding a half-closed dataset (`hdf5_left_broken`)."""
        assert self._file is not None
        self._check_margin()
        dataset = self._file[path]
        try:
            yield dataset
        finally:
            try:
                dataset.id.close()
            except Exception as exc:
                _BROKEN.append(str(self.path))  # closing it again would touch freed memory: never retried
                self._free_temporary()
                raise _as_os_error(exc) from exc

    def _check_margin(self) -> None:
        """Stop before a write that would fill the disk: HDF5 cannot recover from a failed write (above)."""
        if self._margin is None or os.environ.get("MMBENCH_TEST_NO_SPACE_MARGIN") == "1":
            return
        free = shutil.disk_usage(self.path.parent).free
        if free < self._margin:
            raise OSError(
                errno.ENOSPC, f"{_megabytes(free)} free, under the {_megabytes(self._margin)} the next tile may take"
            )

    def _free_temporary(self) -> None:
        if self._tmp_path is not None:
            with contextlib.suppress(OSError):
                os.truncate(self._tmp_path, 0)

    def _close_file(self) -> None:
        """Close the HDF5 file. Closing flushes the chunks and metadata HDF5 still holds; when that fails (a full
        disk) HDF5 keeps a half-closed file whose teardown at exit segfaults: free the temporary's space so that
        a second close can write, and raise the failure."""
        if self._file is None or not self._file.id.valid:
            return
        try:
            self._file.close()
        except Exception as exc:
            _BROKEN.append(str(self.path))
            self._free_temporary()
            with contextlib.suppress(Exception):
                self._file.close()
            raise _as_os_error(exc) from exc

    def _discard(self) -> None:
        """Close the HDF5 file and remove the temporary (a no-op for what is already closed or renamed)."""
        if str(self.path) not in _BROKEN:  # else closing would touch a half-closed dataset: the CLI exits at once
            with contextlib.suppress(OSError):
                self._close_file()
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def _check_space(self) -> None:
        """Refuse at once a store that clearly cannot fit (the codec can only shrink it so far)."""
        if not self.expected_tiles:
            return
        height, width = self.tile_size
        per_tile = sum(spec.channels * np.dtype(spec.dtype).itemsize for spec in self.modalities.values())
        decoded = self.expected_tiles * (per_tile + len(self.label_variants)) * height * width
        needed = int(decoded * MIN_COMPRESSED_FRACTION)
        free = shutil.disk_usage(self.path.parent).free
        if free < needed:
            raise StoreError(
                f"not enough free space for {self.path}: its {self.expected_tiles} tiles need at least "
                f"{_megabytes(needed)} ({_megabytes(decoded)} before compression) and {self.path.parent} has "
                f"{_megabytes(free)} free; free some space or write the store elsewhere"
            )

    @property
    def tile_count(self) -> int:
        return self._count

    # -- content -------------------------------------------------------------------------------
    def add_tile(
        self,
        tile_id: str,
        modalities: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray],
        *,
        source: str,
        row: int = 0,
        col: int = 0,
        files: Sequence[str] = (),
        area_size: tuple[int, int] | None = None,
    ) -> int:
        """Append one tile; returns its index. Arrays are (C, H, W) per modality and (H, W) per label.

        `area_size` is the (height, width) of the source area `source` the tile was cut from at (row, col);
        give it for every tile or for none. Label pixels outside the area (padding) are stored as ignore, and
        modality padding is replaced by the training mean when the store is finished.
        """
        assert self._file is not None, "use TileStoreWriter as a context manager"
        height, width = self.tile_size
        area = self._check_area(tile_id, source, row, col, area_size)
        missing = set(self.modalities) - set(modalities)
        if missing:
            raise StoreError(f"tile {tile_id!r} (from {source}): modality {sorted(missing)[0]!r} is missing")
        for name, spec in self.modalities.items():
            array = np.asarray(modalities[name])
            if array.shape != (spec.channels, height, width):
                raise StoreError(
                    f"tile {tile_id!r} (from {source}): modality {name!r} has shape {array.shape}, "
                    f"expected {(spec.channels, height, width)}"
                )
            if array.dtype != np.dtype(spec.dtype):
                raise StoreError(
                    f"tile {tile_id!r} (from {source}): modality {name!r} is {array.dtype}, expected {spec.dtype}"
                )
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = int((~np.isfinite(array)).sum())
                raise StoreError(
                    f"tile {tile_id!r} (from {source}): modality {name!r} has {bad} NaN/inf values; "
                    "fill or mask them in the source before converting"
                )
        for variant in self.label_variants:
            if variant not in labels:
                raise StoreError(f"tile {tile_id!r} (from {source}): label variant {variant!r} is missing")
            label = np.asarray(labels[variant])
            if label.shape != (height, width) or label.dtype != np.uint8:
                raise StoreError(
                    f"tile {tile_id!r} (from {source}): label {variant!r} is {label.dtype}{label.shape}, "
                    f"expected uint8{(height, width)}"
                )
            invalid = (label >= len(self.classes)) & (label != IGNORE_INDEX)
            if invalid.any():
                values = sorted(set(np.unique(label[invalid]).tolist()))
                raise StoreError(
                    f"tile {tile_id!r} (from {source}): label {variant!r} has values {values[:5]} outside "
                    f"0..{len(self.classes) - 1} and ignore {IGNORE_INDEX}"
                )

        if area is not None:
            labels = {variant: self._ignore_padding(labels[variant], row, col, area) for variant in self.label_variants}
        index = self._count
        self._count += 1
        self._sources.append(source)
        self._rows.append(row)
        self._cols.append(col)
        for name in self.modalities:
            self._append(f"{MODALITIES_GROUP}/{name}", modalities[name])
        for variant in self.label_variants:
            self._append(f"{LABELS_GROUP}/{variant}", labels[variant])
        for key, value in (
            ("ids", tile_id),
            ("source", source),
            ("row", row),
            ("col", col),
            ("files", json.dumps(list(files))),
        ):
            self._append(f"{TILES_GROUP}/{key}", value)
        return index

    def set_split(self, name: str, parts: Mapping[str, Sequence[int]], default: bool = False) -> None:
        """A named split as tile-index lists per part (train/val/test); one split is the default."""
        unknown = set(parts) - set(SPLIT_PARTS)
        if unknown:
            raise StoreError(f"split {name!r}: unknown part {sorted(unknown)[0]!r}; parts are {', '.join(SPLIT_PARTS)}")
        arrays = {part: np.asarray(sorted(indices), dtype=np.int64) for part, indices in parts.items()}
        seen: set[int] = set()
        for array in arrays.values():
            overlap = seen & set(array.tolist())
            if overlap:
                raise StoreError(f"split {name!r}: tile {sorted(overlap)[0]} is in more than one part")
            seen.update(array.tolist())
        self._splits[name] = arrays
        if default or self._default_split is None:
            self._default_split = name

    # -- internals -----------------------------------------------------------------------------
    def _check_area(
        self, tile_id: str, source: str, row: int, col: int, area_size: tuple[int, int] | None
    ) -> Area | None:
        """The tile's area (registered on its first tile); all tiles or none must name one, consistently."""
        if self._count and (area_size is None) != (not self._areas):
            raise StoreError(
                f"tile {tile_id!r} (from {source}): give area_size for every tile of a store or for none "
                f"(the first tile {'did' if self._areas else 'did not'})"
            )
        if area_size is None:
            return None
        area_height, area_width = (int(value) for value in area_size)
        area = self._areas.get(source)
        if area is None:
            if area_height < 1 or area_width < 1:
                raise StoreError(f"tile {tile_id!r} (from {source}): area size {area_size} must be positive")
            area = self._areas[source] = Area(source, len(self._areas), area_height, area_width)
        elif (area.height, area.width) != (area_height, area_width):
            raise StoreError(
                f"tile {tile_id!r} (from {source}): area size {area_height}x{area_width} differs from "
                f"{area.height}x{area.width} given with the area's earlier tiles"
            )
        if not (0 <= row < area.height and 0 <= col < area.width):
            raise StoreError(
                f"tile {tile_id!r} (from {source}): offset ({row}, {col}) lies outside its "
                f"{area.height}x{area.width} area"
            )
        return area

    def _ignore_padding(self, label: np.ndarray, row: int, col: int, area: Area) -> np.ndarray:
        height, width = valid_size(Placement(-1, row, col), self.tile_size, area)
        if (height, width) == self.tile_size:
            return label
        label = np.array(label, copy=True)
        label[height:, :] = IGNORE_INDEX
        label[:, width:] = IGNORE_INDEX
        return label

    def _create_layout(self) -> None:
        assert self._file is not None
        height, width = self.tile_size
        for name, spec in self.modalities.items():
            dataset = self._file.create_dataset(
                f"{MODALITIES_GROUP}/{name}",
                shape=(0, spec.channels, height, width),
                maxshape=(None, spec.channels, height, width),
                chunks=(1, spec.channels, height, width),
                dtype=spec.dtype,
                fletcher32=True,
                **self._compression,
            )
            dataset.attrs["bands"] = json.dumps(list(spec.bands))
            dataset.attrs["units"] = spec.units
            dataset.attrs["description"] = spec.description
        for variant in self.label_variants:
            self._file.create_dataset(
                f"{LABELS_GROUP}/{variant}",
                shape=(0, height, width),
                maxshape=(None, height, width),
                chunks=(1, height, width),
                dtype=np.uint8,
                fletcher32=True,
                **self._compression,
            )
        for key, dtype in (
            ("ids", _STRING),
            ("source", _STRING),
            ("row", np.int32),
            ("col", np.int32),
            ("files", _STRING),
        ):
            self._file.create_dataset(f"{TILES_GROUP}/{key}", shape=(0,), maxshape=(None,), chunks=(1024,), dtype=dtype)

    def _append(self, path: str, value: Any) -> None:
        with self._handle(path) as dataset:
            dataset.resize(self._count, axis=0)
            dataset[self._count - 1] = value

    def _finalize(self) -> None:
        assert self._file is not None
        if self._count == 0:
            raise StoreError(f"{self.path}: no tiles were written")
        if not self._splits:
            raise StoreError(f"{self.path}: no split was defined; every store needs at least one")
        for name, parts in self._splits.items():
            for part, indices in parts.items():
                if indices.size and (indices.min() < 0 or indices.max() >= self._count):
                    raise StoreError(f"split {name}/{part} refers to tile {int(indices.max())} of {self._count}")
                self._file.create_dataset(f"{SPLITS_GROUP}/{name}/{part}", data=indices)
        assert self._default_split is not None
        stats_indices = self._splits[self._default_split].get("train")
        if stats_indices is None or stats_indices.size == 0:
            stats_indices = np.arange(self._count)
            stats_source = "all tiles (the default split has no train part)"
        else:
            stats_source = f"{self._default_split}/train"
        for name in self.modalities:
            with self._handle(f"{MODALITIES_GROUP}/{name}") as dataset:
                if self._areas:
                    stats = band_statistics(self._area_pixels(dataset, stats_indices))
                else:
                    stats = band_statistics(dataset[int(i)] for i in stats_indices)
                dataset.attrs["stats"] = json.dumps({"computed_on": stats_source, **stats})
                if self._areas:
                    self._fill_padding(dataset, stats["mean"])
        if self._areas:
            self._write_areas()
        attrs = self._file.attrs
        attrs["format"] = FORMAT_NAME
        attrs["format_version"] = FORMAT_VERSION
        attrs["name"] = self.name
        attrs["classes"] = json.dumps(list(self.classes))
        attrs["palette"] = json.dumps(self.palette)
        attrs["ignore_index"] = IGNORE_INDEX
        attrs["tile_size"] = json.dumps(list(self.tile_size))
        attrs["modalities"] = json.dumps(list(self.modalities))
        attrs["label_variants"] = json.dumps(list(self.label_variants))
        attrs["default_split"] = self._default_split
        attrs["codec"] = self.codec
        attrs["provenance"] = json.dumps(self.provenance, sort_keys=True)

    def _area_pixels(self, dataset: h5py.Dataset, indices: np.ndarray) -> Any:
        """(C, n) arrays of the pixels of the given tiles, each area pixel once and padding never."""
        rows, cols = np.asarray(self._rows), np.asarray(self._cols)
        for area, placements in group_by_area(indices, self._sources, rows, cols, self._areas):
            for placement, mask in first_cover_masks(placements, self.tile_size, area):
                if mask.any():
                    yield dataset[placement.tile][:, mask]

    def _fill_padding(self, dataset: h5py.Dataset, mean: Sequence[float]) -> None:
        """Replace the padding of every padded tile by the per-band training mean (rounded and clipped to the
        stored dtype), which the loader normalises to 0, the value of a missing input."""
        dtype = dataset.dtype
        fill = np.asarray(mean, dtype=np.float64)
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            fill = np.clip(np.round(fill), info.min, info.max)
        fill = fill.astype(dtype)[:, None, None]
        for index, (source, row, col) in enumerate(zip(self._sources, self._rows, self._cols, strict=True)):
            area = self._areas[source]
            placement = Placement(index, row, col)
            if not has_padding(placement, self.tile_size, area):
                continue
            height, width = valid_size(placement, self.tile_size, area)
            tile = dataset[index]
            tile[:, height:, :] = fill
            tile[:, :, width:] = fill
            dataset[index] = tile

    def _write_areas(self) -> None:
        assert self._file is not None
        areas = list(self._areas.values())
        group = self._file.create_group(AREAS_GROUP)
        group.create_dataset("ids", data=[area.name for area in areas], dtype=_STRING)
        group.create_dataset("height", data=[area.height for area in areas], dtype=np.int32)
        group.create_dataset("width", data=[area.width for area in areas], dtype=np.int32)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def is_write_failure(exc: OSError) -> bool:
    """An error of the filesystem being written (h5py names the errno in its message when it sets none)."""
    return _errno(exc) in WRITE_ERRNOS or "file write failed" in str(exc)


def _as_os_error(exc: BaseException) -> OSError:
    """HDF5 reports a failed write inside a RuntimeError or OSError whose message names the errno."""
    code = _errno(exc) if isinstance(exc, OSError) else None
    if code is None:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else errno.EIO
    return OSError(code, " ".join(str(exc).split()))


def _errno(exc: OSError) -> int | None:
    if exc.errno:
        return exc.errno
    found = re.search(r"errno = (\d+)", str(exc))
    return int(found.group(1)) if found else None


def write_error(path: Path, exc: OSError) -> StoreError:
    """One line for a failed write of the store at `path`: what the filesystem said and what to do."""
    code = _errno(exc)
    reason = os.strerror(code).lower() if code else " ".join(str(exc).split())
    if code in (errno.ENOSPC, errno.EDQUOT):
        with contextlib.suppress(OSError):
            reason += f" ({_megabytes(shutil.disk_usage(path.parent).free)} free)"
        advice = "free some space or write the store elsewhere"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "write the store to a writable folder"
    else:
        advice = "check the disk and write the store again"
    return StoreError(f"cannot write the store {path}: {reason}; {advice}; no partial store was left behind")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the hidden temporaries of `path` whose writer died (no process holds their lock); returns them."""
    removed = []
    for name in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")):
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its writer is alive
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
                removed.append(Path(name))
        finally:
            os.close(fd)
    return removed


def hdf5_left_broken() -> bool:
    """True once a failed write left HDF5 holding a half-closed dataset of a removed temporary: the library
    would crash at interpreter exit, so the command line reports the error and ends the process at once."""
    return bool(_BROKEN)
