"""Content digests that tie a result to the exact bytes it was computed from."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed so that multi-GB tile stores never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
