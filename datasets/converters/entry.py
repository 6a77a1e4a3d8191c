"""One file of a dataset source: its logical path, where it is read from, and how it is named in messages.

Its own module because both the layouts (whose id and split functions receive entries, `layout`) and the
source index (which creates them, `sources`) need it, and `sources` reads the layouts' file rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One file: `parts` is its logical path (relative to the source folder, or `<archive stem>/<member>`)."""

    parts: tuple[str, ...]
    display: str
    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def archive(self) -> str | None:
        return self.path.name if self.member is not None else None
