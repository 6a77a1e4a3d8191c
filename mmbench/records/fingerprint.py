"""Content digests that tie a result to the exact bytes it was computed from.

Hashing a multi-GB store on every run would cost tens of seconds, so digests are cached per file,
keyed by (size, modification time in ns); any write to the file changes the key and forces a re-hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from mmbench.paths import cache_dir

_CHUNK = 4 * 1024 * 1024


def file_sha256(path: str | Path, use_cache: bool = True) -> str:
    """`sha256:<hex>` of a file's bytes, streamed so that large stores never sit in memory."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    cache = _load_cache() if use_cache else {}
    cached = cache.get(str(path))
    if cached is not None and cached.get("key") == key:
        return cached["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    value = f"sha256:{digest.hexdigest()}"
    if use_cache:
        cache[str(path)] = {"key": key, "sha256": value}
        _save_cache(cache)
    return value


def _cache_path() -> Path:
    return cache_dir() / "fingerprints.json"


def _load_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    # A lost or racing cache write only costs a re-hash later; it must never fail a run.
    with contextlib.suppress(OSError):
        from mmbench.atomic import write_json_atomic

        # Forget entries whose files are gone, so the cache does not grow without bound.
        live = {path: entry for path, entry in cache.items() if os.path.exists(path)}
        write_json_atomic(_cache_path(), live)
