"""Per evaluation unit confusion matrices in run records (schema version 2): the one writer and reader.

Why: a scenario's single `confusion_matrix` gives its metrics but no sense of their uncertainty. The leaderboard's
confidence intervals resample seeds, then evaluation units (tiles, or whole stitched areas:
mmbench/evaluation/units.py; one unit draw per replicate, shared by its seeds: docs/leaderboard.md), and recompute
the metric from the summed matrices; paired tests
between methods pair by seed and unit. Both need every unit's matrix and a name that is the same in every record
of the same store and protocol.

Encoding (docs/run-record.md, "Per-unit confusion matrices"), one object per scenario:

    {"unit": "tile" | "area", "names": [U unit names, in evaluation order],
     "shape": [U, K, K], "dtype": "<u4" | "<u8", "encoding": "byteshuffle+zlib+base64", "data": "<base64>"}

`data` is the base64 text of the zlib-compressed, byte-shuffled bytes of a C-order (U, K, K) little-endian unsigned
integer array (rows = ground truth, columns = prediction, as `confusion_matrix`): the N = U*K*K counts' bytes are
written as `itemsize` planes, all first bytes, then all second bytes, ... (the filter of HDF5/Blosc "shuffle"),
which puts the mostly-zero high bytes together. `dtype` is `<u4` when every count fits in 32 bits, else `<u8`.
Measured on 500 tiles x 6 classes of 512 x 512 px with every cell non-zero: 41 kB (2.6 ms to encode) against
53 kB (112 ms) for plain zlib and 102 kB for a flat JSON list of the counts; matrices with empty cells shrink
much further.
Names: a tile's store id (`tiles/ids`), an area's store id (`areas/ids`), so two records of the same store and
protocol pair unit by unit by name. Invariant: the matrices sum over units to the scenario's `confusion_matrix`
exactly (`check_unit_confusion`, run by `mmbench leaderboard --check`).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmbench.errors import RecordError

__all__ = [
    "ENCODING",
    "UNIT_KINDS",
    "UnitConfusionError",
    "check_unit_confusion",
    "decode_unit_confusion",
    "encode_unit_confusion",
    "record_unit_confusion",
]

ENCODING = "byteshuffle+zlib+base64"
UNIT_KINDS = ("tile", "area")
_DTYPES = {"<u4": np.dtype("<u4"), "<u8": np.dtype("<u8")}


class UnitConfusionError(RecordError):
    """A `unit_confusion` entry that cannot be decoded (a user-fixable record problem: exit 2, one line; the
    caller adds the record's path)."""


def encode_unit_confusion(kind: str, names: Sequence[str], counts: Any) -> dict[str, Any]:
    """The record entry of a (U, K, K) array of non-negative integer counts, one matrix per named unit."""
    array = np.asarray(counts)
    if array.ndim != 3 or array.shape[1] != array.shape[2] or array.shape[1] == 0:
        raise ValueError(f"unit confusion matrices must have shape (U, K, K) with K >= 1, got {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"unit confusion matrices hold integer counts, not {array.dtype}")
    if array.size and int(array.min()) < 0:
        raise ValueError("unit confusion matrices cannot hold negative counts")
    if kind not in UNIT_KINDS:
        raise ValueError(f"unit kind must be one of {', '.join(UNIT_KINDS)}, not {kind!r}")
    names = [str(name) for name in names]
    if len(names) != array.shape[0]:
        raise ValueError(f"{len(names)} unit names for {array.shape[0]} unit matrices")
    if len(set(names)) != len(names):
        raise ValueError("unit names must be unique")
    dtype = "<u4" if not array.size or int(array.max()) < 2**32 else "<u8"
    typed = np.ascontiguousarray(array.astype(_DTYPES[dtype]))
    raw = typed.view(np.uint8).reshape(-1, typed.itemsize).T.tobytes()  # byte planes (C order of the transpose)
    return {
        "unit": kind,
        "names": names,
        "shape": [int(size) for size in array.shape],
        "dtype": dtype,
        "encoding": ENCODING,
        "data": base64.b64encode(zlib.compress(raw, 6)).decode("ascii"),
    }


def decode_unit_confusion(entry: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """(unit names, int64 (U, K, K) counts) of a record entry; `UnitConfusionError` on any inconsistency."""
    if not isinstance(entry, Mapping):
        raise UnitConfusionError(f"unit_confusion must be an object, not {type(entry).__name__}")
    if entry.get("encoding") != ENCODING:
        raise UnitConfusionError(f"unit_confusion encoding {entry.get('encoding')!r} is not {ENCODING!r}")
    dtype = _DTYPES.get(entry.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise UnitConfusionError(f"unit_confusion dtype {entry.get('dtype')!r} is not one of {', '.join(_DTYPES)}")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)
        or shape[1] != shape[2]
    ):
        raise UnitConfusionError(f"unit_confusion shape {shape!r} is not [units, classes, classes]")
    names = entry.get("names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise UnitConfusionError("unit_confusion names must be a list of strings")
    if len(names) != shape[0]:
        raise UnitConfusionError(f"unit_confusion lists {len(names)} unit names for {shape[0]} units")
    if len(set(names)) != len(names):
        raise UnitConfusionError("unit_confusion names are not unique")
    try:
        raw = zlib.decompress(base64.b64decode(str(entry.get("data", "")), validate=True))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise UnitConfusionError(f"unit_confusion data cannot be decoded ({exc}); the record is corrupt") from None
    expected = shape[0] * shape[1] * shape[2] * dtype.itemsize
    if len(raw) != expected:
        raise UnitConfusionError(
            f"unit_confusion data holds {len(raw)} bytes, expected {expected} for shape {shape} of {dtype.str}"
        )
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(dtype.itemsize, -1)
    counts = np.ascontiguousarray(planes.T).view(dtype).reshape(shape)
    if dtype.itemsize == 8 and counts.size and int(counts.max()) > np.iinfo(np.int64).max:
        raise UnitConfusionError("unit_confusion counts do not fit in int64")
    return list(names), counts.astype(np.int64)


def check_unit_confusion(scenario: Mapping[str, Any]) -> str | None:
    """Why a scenario's `unit_confusion` is not consistent with its `confusion_matrix` (None when it is, or when
    the scenario has none: version-1 records and runs of a method's own executor)."""
    entry = scenario.get("unit_confusion")
    if entry is None:
        return None
    try:
        _, counts = decode_unit_confusion(entry)
    except UnitConfusionError as exc:
        return str(exc)
    total = np.asarray(scenario.get("confusion_matrix"), dtype=np.int64)
    if total.shape != counts.shape[1:]:
        return (
            f"unit_confusion matrices are {counts.shape[1]}x{counts.shape[2]} but confusion_matrix is "
            f"{'x'.join(map(str, total.shape))}"
        )
    summed = counts.sum(axis=0)
    if not np.array_equal(summed, total):
        cells = int((summed != total).sum())
        return (
            f"unit_confusion does not sum to confusion_matrix ({cells} cells differ, "
            f"{int(np.abs(summed - total).sum())} pixels in all); the record was edited or is corrupt"
        )
    return None


def record_unit_confusion(record: Mapping[str, Any]) -> tuple[list[str], np.ndarray] | None:
    """(unit names, int64 (S, U, K, K)) of every scenario of a record, in record order; None when any scenario
    lacks per-unit matrices (version-1 records, a method's own executor). Scenarios of one record share their
    units (one evaluation), which is checked."""
    names: list[str] | None = None
    stacked = []
    for scenario in record.get("scenarios", []):
        entry = scenario.get("unit_confusion")
        if entry is None:
            return None
        scenario_names, counts = decode_unit_confusion(entry)
        if names is None:
            names = scenario_names
        elif scenario_names != names:
            raise UnitConfusionError(f"scenario {scenario.get('name')!r} lists other units than the first scenario")
        stacked.append(counts)
    if names is None:
        return None
    return names, np.stack(stacked)
