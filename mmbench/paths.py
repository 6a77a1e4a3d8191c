"""Where mmbench keeps files that are not results: generated datasets and digest caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$MMBENCH_CACHE, else $XDG_CACHE_HOME/mmbench, else ~/.cache/mmbench."""
    if os.environ.get("MMBENCH_CACHE"):
        return Path(os.environ["MMBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmbench"
