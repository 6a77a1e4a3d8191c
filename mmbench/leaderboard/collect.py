"""Find and load run records; a bad record is one line in the report, never the end of the board."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbench.errors import RecordError, UserError
from mmbench.records import RECORD_FILENAME, read_record


@dataclass(frozen=True)
class LoadedRecord:
    path: Path
    record: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def record_files(roots: Iterable[str | Path]) -> list[Path]:
    """Every record under the given folders (or the given record files), sorted, without duplicates."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.add(root.resolve())
        elif root.is_dir():
            found.update(path.resolve() for path in root.rglob(RECORD_FILENAME))
            found.update(
                path.resolve()
                for path in root.rglob("*.json")
                if path.name != RECORD_FILENAME and _looks_like_record(path)
            )
        else:
            raise UserError(f"runs folder {str(root)!r} does not exist; check the path")
    return sorted(found)


def _looks_like_record(path: Path) -> bool:
    """Records copied out of a runs tree keep their content but not their name (docs/results/records)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return '"schema_version"' in handle.read(256)
    except (OSError, UnicodeDecodeError):
        return False


def collect_records(roots: Iterable[str | Path]) -> tuple[list[LoadedRecord], list[Skipped]]:
    """(valid records, skipped files with a one-line reason each)."""
    roots = list(roots)
    files = record_files(roots)
    if not files:
        raise UserError(
            f"no run records ({RECORD_FILENAME}) under {', '.join(map(str, roots))}; "
            "run 'mmbench run METHOD --protocol P' first or point to the folder given as --out"
        )
    loaded, skipped = [], []
    for path in files:
        try:
            loaded.append(LoadedRecord(path, read_record(path)))
        except RecordError as exc:
            message = str(exc)
            prefix = f"{path}: "
            skipped.append(Skipped(path, message[len(prefix) :] if message.startswith(prefix) else message))
    return loaded, skipped
