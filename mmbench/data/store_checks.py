"""What makes a tile store unfit to train or score on, found before it can poison a model or a record.

Two kinds of check (docs/data-format.md, "What is checked, and when"):

- *Structural* (`structure_problems`): attributes present and parseable JSON, every dataset present with the
  shape the attributes promise (tile count, bands, tile size), normalisation statistics finite with std > 0,
  and splits whose parts are non-empty, in range and disjoint. They read attributes and split indices only
  (milliseconds), so `mmbench data verify` and every `mmbench run`/`mmbench eval` run them
  (mmbench/runs/preflight.py).
- *Values* (`tile_problems`, `check_tile`): labels within the classes (or the ignore index) and finite
  modality values. `data verify` reads every tile; a run scans the parts it reads before training when their
  decoded size is at most `SCAN_LIMIT_BYTES` and remembers a clean scan by the store's fingerprint
  (`scan_values`), and the loader (mmbench/data/loader.py) checks every tile it reads, so that a bad tile in
  a larger store stops the run at its first read, named, instead of training on it or scoring it.

Every problem is a sentence naming the split, part, tile, modality or attribute; callers add the file and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmbench.data.store_format import (
    LABELS_GROUP,
    MODALITIES_GROUP,
    SPLIT_PARTS,
    SPLITS_GROUP,
    TILES_GROUP,
    StoreError,
)

# An open `mmbench.data.store_reader.TileStore` (which imports this module, so it is not imported back here).
TileStore = Any

# A run scans the decoded values of the parts it reads before training when they hold at most this many bytes:
# 10 s to 75 s on one core at the read speeds of docs/data-format.md's codec table (807 MB/s uncompressed, 114
# MB/s gzip), once per store. Larger stores rely on the loader's per-tile check.
SCAN_LIMIT_BYTES = 8 * 2**30
REQUIRED_ATTRIBUTES = ("name", "classes", "ignore_index", "tile_size", "modalities", "label_variants", "default_split")
JSON_ATTRIBUTES = ("classes", "palette", "tile_size", "modalities", "label_variants", "provenance")


class BadTileError(StoreError):
    """A tile read for training or evaluation holds a label outside the classes or a NaN/inf value.

    The DataLoader re-raises a worker's exception as `type(exc)(message)` with the worker's traceback
    prepended to the message; the constructor keeps only the original one-line message, so the user
    still sees one line naming the tile.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if "Traceback (most recent call last)" in message and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


def structure_problems(store: TileStore, parts: Iterable[tuple[str | None, str]] | None = None) -> Iterator[str]:
    """Every structural problem of `store`. `parts`: check only these (split, part) pairs (split None or
    "default": the default split) and the overlaps between them; None: every part of every split. Stops after
    the attributes when they fail: the later checks need them."""
    attribute_problems = list(_attribute_problems(store))
    yield from attribute_problems
    if attribute_problems:
        return
    yield from _shape_problems(store)
    yield from _statistics_problems(store)
    yield from _split_problems(store, parts)


def _attribute_problems(store: TileStore) -> Iterator[str]:
    attrs = store.raw_attributes
    for key in REQUIRED_ATTRIBUTES:
        if key not in attrs:
            yield f"attribute '{key}' is missing"
    for key in JSON_ATTRIBUTES:
        if key in attrs:
            try:
                json.loads(attrs[key])
            except (TypeError, ValueError) as exc:
                yield f"attribute '{key}' is not valid JSON ({exc})"
    for group in (MODALITIES_GROUP, LABELS_GROUP, TILES_GROUP, SPLITS_GROUP):
        if group not in store.raw_file:
            yield f"group '{group}' is missing"


def _shape_problems(store: TileStore) -> Iterator[str]:
    file = store.raw_file
    if f"{TILES_GROUP}/ids" not in file:
        yield f"dataset '{TILES_GROUP}/ids' is missing"
        return
    count = store.num_tiles
    try:
        height, width = store.tile_size
    except StoreError:
        yield f"attribute 'tile_size' is {store.raw_attributes['tile_size']!r}, not [height, width]"
        return
    for name in store.modality_names:
        path = f"{MODALITIES_GROUP}/{name}"
        if path not in file:
            yield f"dataset '{path}' is missing (attribute 'modalities' lists it)"
            continue
        dataset = file[path]
        try:
            bands = json.loads(dataset.attrs["bands"])
        except KeyError:
            yield f"modality {name!r}: attribute 'bands' is missing"
            continue
        except (TypeError, ValueError) as exc:
            yield f"modality {name!r}: attribute 'bands' is not valid JSON ({exc})"
            continue
        yield from _shape_problem(f"modality {name!r}", dataset.shape, (count, len(bands), height, width))
    for variant in store.label_variants:
        path = f"{LABELS_GROUP}/{variant}"
        if path not in file:
            yield f"dataset '{path}' is missing (attribute 'label_variants' lists it)"
            continue
        yield from _shape_problem(f"label {variant!r}", file[path].shape, (count, height, width))


def _shape_problem(what: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> Iterator[str]:
    if shape == expected:
        return
    if len(shape) != len(expected):
        yield f"{what} has shape {shape}, expected {expected}"
    elif shape[0] != expected[0]:
        yield f"{what} has {shape[0]} tiles but the store lists {expected[0]} (shape {shape}, expected {expected})"
    else:
        yield f"{what} has shape {shape}, expected {expected} (tiles of {expected[-2]}x{expected[-1]} px)"


def _statistics_problems(store: TileStore) -> Iterator[str]:
    file = store.raw_file
    for name in store.modality_names:
        path = f"{MODALITIES_GROUP}/{name}"
        if path not in file or "bands" not in file[path].attrs:
            continue  # reported by _shape_problems
        attrs = file[path].attrs
        bands = json.loads(attrs["bands"])
        if "stats" not in attrs:
            yield f"modality {name!r}: attribute 'stats' (normalisation statistics) is missing"
            continue
        try:
            stats = json.loads(attrs["stats"])
        except (TypeError, ValueError) as exc:
            yield f"modality {name!r}: attribute 'stats' is not valid JSON ({exc})"
            continue
        for key in ("mean", "std"):
            values = stats.get(key) if isinstance(stats, dict) else None
            if not isinstance(values, list) or len(values) != len(bands):
                yield f"modality {name!r}: statistics '{key}' should list {len(bands)} numbers, one per band"
                continue
            for band, value in zip(bands, values, strict=True):
                number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
                if not math.isfinite(number):
                    yield f"modality {name!r} band {band!r}: statistics '{key}' is {value} (not finite)"
                elif key == "std" and number <= 0:
                    yield (
                        f"modality {name!r} band {band!r}: statistics 'std' is {value}; normalising divides by "
                        "it, so it must be > 0 (a band constant over the training part carries no information)"
                    )


def _split_problems(store: TileStore, parts: Iterable[tuple[str | None, str]] | None) -> Iterator[str]:
    splits = store.raw_file[SPLITS_GROUP]
    default = store.default_split
    if default not in splits:
        yield f"attribute 'default_split' names split {default!r}, which the store lacks (it has {', '.join(splits)})"
        return
    if parts is None:
        wanted = {name: list(group) for name, group in splits.items()}
    else:
        wanted = {}
        for split, part in parts:
            wanted.setdefault(default if split in (None, "default") else split, []).append(part)
    count = store.num_tiles
    ids = store.tile_ids
    for name, names in wanted.items():
        if name not in splits:
            continue  # an unknown split is the run's config error, reported where it is read
        group = splits[name]
        arrays = {part: np.asarray(group[part][:]) for part in SPLIT_PARTS if part in group}
        for part in dict.fromkeys(names):
            if part not in arrays:
                if part in SPLIT_PARTS and parts is not None:
                    yield f"split {name!r} has no part {part!r} (it has {', '.join(arrays) or 'none'})"
                continue
            indices = arrays[part]
            if indices.size == 0:
                yield f"split {name!r} part {part!r} is empty: nothing would be {_use(part)}"
                continue
            outside = indices[(indices < 0) | (indices >= count)]
            if outside.size:
                yield (
                    f"split {name}/{part} refers to tile indices outside 0..{count - 1} (split {name!r} part "
                    f"{part!r} lists tile {int(outside[0])}; {outside.size} such)"
                )
        checked = [part for part in arrays if part in names or parts is None]
        yield from _overlaps(name, {part: arrays[part] for part in checked}, count, ids)


def _use(part: str) -> str:
    return {"train": "trained on", "val": "validated on"}.get(part, "scored (a record of zero confusion matrices)")


def _overlaps(split: str, arrays: dict[str, np.ndarray], count: int, ids: Sequence[str]) -> Iterator[str]:
    names = list(arrays)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            shared = np.intersect1d(arrays[first], arrays[second])
            if shared.size:
                tile = int(shared[0])
                label = f"tile {tile} ({ids[tile]})" if 0 <= tile < count else f"tile {tile}"
                yield (
                    f"split {split!r}: parts {first!r} and {second!r} share {shared.size} tile(s), e.g. {label}; "
                    "a tile trained on must never be scored"
                )


def readable_datasets(store: TileStore) -> tuple[list[str] | None, list[str]]:
    """The modalities and label variants whose datasets hold every tile at the promised shape (the ones whose
    values can be read back tile by tile); (None, []) when the attributes or tile ids are unusable."""
    if list(_attribute_problems(store)) or f"{TILES_GROUP}/ids" not in store.raw_file:
        return None, []
    try:
        height, width = store.tile_size
    except StoreError:
        return None, []
    count, file = store.num_tiles, store.raw_file
    modalities = []
    for name in store.modality_names:
        path = f"{MODALITIES_GROUP}/{name}"
        if path in file and len(file[path].shape) == 4 and file[path].shape[0] == count:
            if file[path].shape[2:] == (height, width):
                modalities.append(name)
    variants = [
        variant
        for variant in store.label_variants
        if f"{LABELS_GROUP}/{variant}" in file and file[f"{LABELS_GROUP}/{variant}"].shape == (count, height, width)
    ]
    return modalities, variants


# -- values ---------------------------------------------------------------------------------------------------


def label_problem(variant: str, index: int, tile_id: str, label: np.ndarray, classes: int, ignore: int) -> str | None:
    """A sentence when the label holds a value that is neither a class nor the ignore index."""
    if label.size == 0 or (int(label.max()) < classes and int(label.min()) >= 0):
        return None
    invalid = (label >= classes) | (label < 0)
    invalid &= label != ignore
    if not invalid.any():
        return None
    values = sorted(np.unique(label[invalid]).tolist())[:5]
    return f"label {variant!r} tile {index} ({tile_id}) has values {values} outside the {classes} classes"


def modality_problem(name: str, index: int, tile_id: str, values: np.ndarray) -> str | None:
    """A sentence when a float modality tile holds NaN or inf."""
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return None
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    return f"modality {name!r} tile {index} ({tile_id}) has NaN/inf values ({bad} of {values.size})"


def tile_problems(store: TileStore, index: int, modalities: Sequence[str], variants: Sequence[str]) -> Iterator[str]:
    """The value problems of one whole tile (each unreadable chunk is one too)."""
    tile_id = store.tile_ids[index]
    for name in modalities:
        try:
            values = store.read_modality(name, index)
        except StoreError as exc:
            yield str(exc).split(": ", 1)[-1]
            continue
        problem = modality_problem(name, index, tile_id, values)
        if problem:
            yield problem
    for variant in variants:
        try:
            label = store.read_label(variant, index)
        except StoreError as exc:
            yield str(exc).split(": ", 1)[-1]
            continue
        problem = label_problem(variant, index, tile_id, label, len(store.classes), store.ignore_index)
        if problem:
            yield problem


def check_tile(path: str | Path, problem: str | None) -> None:
    """Raise the loader's one-line error for a problem found in a tile it just read."""
    if problem:
        raise BadTileError(f"{path}: {problem}; no model trains or is scored on it: run 'mmbench data verify {path}'")


# -- the pre-run value scan ------------------------------------------------------------------------------------


def scan_values(
    store: TileStore,
    indices: Sequence[int],
    modalities: Sequence[str],
    variants: Sequence[str],
    fingerprint: str | None,
    progress: Callable[[int], None] | None = None,
) -> str | None:
    """The first value problem among the given tiles, or None. A clean scan is remembered under the store's
    fingerprint (`fingerprint` None: not remembered), so a store is scanned once however many runs use it.
    Skipped (None) when the tiles decode to more than `SCAN_LIMIT_BYTES`: the loader's check then catches
    a bad tile at its first read."""
    if decoded_bytes(store, indices, modalities, variants) > SCAN_LIMIT_BYTES:
        return None
    marker = _scan_marker(fingerprint, modalities, variants, indices)
    if marker is not None and marker.exists():
        return None
    for done, index in enumerate(sorted(set(int(i) for i in indices)), start=1):
        for problem in tile_problems(store, index, modalities, variants):
            return problem
        if progress is not None:
            progress(done)
    if marker is not None:
        from mmbench.atomic import write_text_atomic

        try:
            write_text_atomic(marker, "clean\n")
        except OSError:  # an unwritable cache only costs the next run a scan
            pass
    return None


def decoded_bytes(store: TileStore, indices: Sequence[int], modalities: Sequence[str], variants: Sequence[str]) -> int:
    height, width = store.tile_size
    per_tile = sum(
        store.modalities[name].channels * np.dtype(store.modalities[name].dtype).itemsize for name in modalities
    )
    per_tile += len(variants)
    return len(set(int(i) for i in indices)) * per_tile * height * width


def _scan_marker(
    fingerprint: str | None, modalities: Sequence[str], variants: Sequence[str], indices: Sequence[int]
) -> Path | None:
    if not fingerprint:
        return None
    import hashlib

    from mmbench.paths import cache_dir

    what = json.dumps([sorted(modalities), sorted(variants), sorted(set(int(i) for i in indices))])
    key = hashlib.sha256(what.encode()).hexdigest()[:16]
    return cache_dir() / "store-checks" / f"{fingerprint}-{key}.clean"
