"""Content digests that tie a result to the exact bytes it was computed from.

Hashing a multi-GB store on every run would cost tens of seconds, so digests are cached per file,
keyed by (size, modification time in ns); any write to the file changes the key and forces a re-hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def weights_sha256(state: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of a model's weights alone: every state_dict entry's name, dtype, shape and bytes, in name
    order. A checkpoint file's sha256 also covers what is stored beside the weights (the run's config, optimizer
    and RNG state: mmbench/engine/checkpoint.py), so the same weights saved at two commits whose configs differ
    by one key get two file hashes; this hash is equal exactly when the weights are (docs/run-record.md,
    "Same seed, same numbers")."""
    import torch  # here, not at module level: hashing a store must not pay for importing torch

    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        digest.update(name.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode() + b"\0")
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:  # a non-tensor extra state entry
            digest.update(repr(value).encode())
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


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
