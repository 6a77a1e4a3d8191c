"""Published reference numbers: a data file with provenance, validated on load, never ranked."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from mmbench.config import parse_yaml
from mmbench.errors import ConfigError

FIELDS = ("dataset", "protocol", "setting", "method", "metric", "value", "source", "provenance")
PROVENANCE = ("paper", "third-party")


def load_references(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The packaged references (or `path`); a malformed entry is a one-line error naming it and the field."""
    if path is None:
        origin = "mmbench/leaderboard/references.yaml"
        text = resources.files("mmbench.leaderboard").joinpath("references.yaml").read_text(encoding="utf-8")
    else:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"references file {origin}: cannot be read ({exc.strerror or exc})") from exc
    data = parse_yaml(text, origin)
    entries = data.get("references") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"references file {origin}: needs a top-level 'references' list")
    for index, entry in enumerate(entries):
        where = f"references file {origin}, entry {index + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping with {', '.join(FIELDS)}")
        missing = [field for field in FIELDS if field not in entry]
        if missing:
            raise ConfigError(f"{where}: lacks {missing[0]!r} (every entry needs {', '.join(FIELDS)})")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}")
        if isinstance(entry["value"], bool) or not isinstance(entry["value"], (int, float)):
            raise ConfigError(f"{where}: value {entry['value']!r} must be a number (percent, as printed)")
        if entry["provenance"] not in PROVENANCE:
            raise ConfigError(f"{where}: provenance {entry['provenance']!r}; use {' or '.join(PROVENANCE)}")
        if not str(entry["source"]).strip():
            raise ConfigError(f"{where}: source is empty; every number needs the place it was read")
    return [dict(entry) for entry in entries]
