"""The rich consoles every command prints through: results to stdout, progress and notes to stderr."""

from __future__ import annotations

from functools import lru_cache

from rich.console import Console


@lru_cache(maxsize=1)
def stdout() -> Console:
    return Console()


@lru_cache(maxsize=1)
def stderr() -> Console:
    return Console(stderr=True)
