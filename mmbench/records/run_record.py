"""Run records: mmbench's output, one self-describing JSON file per run.

A record carries everything needed to judge and reproduce a number (resolved config, seed, plugin
versions, dataset fingerprint, library versions, hardware, git commit) and the per-scenario confusion
matrices from which every metric can be recomputed (since schema version 2 also one matrix per evaluation
unit: mmbench/records/unit_confusion.py). Records are validated against the packaged JSON Schema before they
are written, and written atomically, so a record on disk is always complete. Version 2 is written; version 1
records (no per-unit matrices, no training facts) still validate and load, newer ones are refused.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mmbench.atomic import write_json_atomic
from mmbench.errors import RecordError

SCHEMA_VERSION = 2
RECORD_FILENAME = "result.json"
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@lru_cache(maxsize=1)
def record_schema() -> dict[str, Any]:
    """The packaged JSON Schema of the current record version."""
    text = resources.files("mmbench").joinpath("schemas/run_record.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate_record(record: Any) -> None:
    """Raise `RecordError` naming the first offending field if `record` does not match the schema."""
    import jsonschema

    if not isinstance(record, dict):
        raise RecordError(f"a run record must be a JSON object, not {type(record).__name__}")
    version = record.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise RecordError(
            f"record has schema_version {version}, newer than this mmbench understands ({SCHEMA_VERSION}); "
            "upgrade mmbench"
        )
    validator = jsonschema.Draft202012Validator(record_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(record))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise RecordError(f"run record field {where}: {error.message}")
    for where, value in (
        ("created", record["created"]),
        ("timing/started", record["timing"]["started"]),
        ("timing/finished", record["timing"]["finished"]),
    ):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(f"run record field {where}: {value!r} is not an ISO 8601 date-time") from None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def new_run_id(created: datetime, seed: int) -> str:
    """Sortable by time, readable, and unique even for runs started in the same second."""
    return f"{created.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-s{seed}-{secrets.token_hex(3)}"


def safe_path_component(name: str) -> str:
    """Plugin names are already path-safe; dataset names taken from file names may not be."""
    cleaned = _UNSAFE_PATH_CHARS.sub("_", name).strip("._")
    return cleaned or "unnamed"


def record_path(out_root: str | Path, dataset: str, protocol: str, method: str, run_id: str) -> Path:
    """`<out>/<dataset>/<protocol>/<method>/<run_id>/result.json`."""
    parts = [safe_path_component(part) for part in (dataset, protocol, method, run_id)]
    return Path(out_root).joinpath(*parts, RECORD_FILENAME)


def write_record(record: dict[str, Any], path: str | Path) -> Path:
    """Validate, then write atomically. An invalid record is a bug in mmbench or a plugin, never written."""
    try:
        validate_record(record)
    except RecordError as exc:
        raise RuntimeError(f"refusing to write an invalid run record to {path}: {exc}") from exc
    write_json_atomic(path, record)
    return Path(path)


def read_record(path: str | Path) -> dict[str, Any]:
    """Load and validate a record; any problem is a one-line `RecordError` naming the file."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: no such run record") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); truncated or corrupt") from exc
    try:
        validate_record(record)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from exc
    return record
