"""The files of a dataset source: an extracted folder, the official zip archives in it, or both.

Zip members are read straight from their archive (nothing is extracted to disk). A member is matched as if its
archive had been extracted into a folder named after it, the convention of the ISPRS distributions
(`4_Ortho_RGBIR.zip` -> `4_Ortho_RGBIR/`), whether or not the archive stores that folder itself. Every file read
is hashed (sha256), and every archive a member was read from is hashed whole, streamed, for the provenance.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Callable, Collection, Iterable
from pathlib import Path, PurePosixPath
from types import TracebackType

from mmbench.data.store_format import StoreError
from mmbench.datasets.converters.entry import Entry
from mmbench.datasets.converters.layout import FileRule

# Folders that hold no data: macOS resource forks that Finder-made archives carry along.
_SKIPPED_FOLDERS = frozenset({"__MACOSX"})
_HASH_CHUNK = 1 << 20


class SourceTree:
    """Index of a source; use as a context manager (archives stay open while the conversion reads them)."""

    def __init__(self, source: str | Path, archives: Collection[str] | None) -> None:
        self.source = Path(source)
        self.entries: list[Entry] = []
        self.unused_archives: list[str] = []
        self.file_hashes: dict[str, str] = {}
        self._zips: dict[Path, zipfile.ZipFile] = {}
        self._archives_read: set[Path] = set()
        self._folder_read = False
        self._wanted = archives

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> SourceTree:
        try:
            self._scan()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._zips.values():
            handle.close()
        self._zips.clear()

    # -- indexing ------------------------------------------------------------------------------
    def _scan(self) -> None:
        if not self.source.exists():
            raise StoreError(
                f"source {str(self.source)!r} does not exist; give the extracted folder or the folder "
                "holding the official zip archives"
            )
        if self.source.is_file():
            if self.source.suffix.lower() != ".zip":
                raise StoreError(
                    f"source {str(self.source)!r} is a file; give the extracted folder or the folder "
                    "holding the official zip archives"
                )
            self._open_zip(self.source)
            return
        for folder, subfolders, files in os.walk(self.source):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in _SKIPPED_FOLDERS)
            relative = Path(folder).relative_to(self.source).parts
            for file_name in sorted(files):
                if file_name.startswith("."):
                    continue  # hidden files, including a store being written into the source folder
                path = Path(folder) / file_name
                if not relative and file_name.lower().endswith(".zip"):
                    self._open_zip(path)
                    continue
                parts = (*relative, file_name)
                self.entries.append(Entry(parts, "/".join(parts), path))

    def _open_zip(self, path: Path) -> None:
        if self._wanted is not None and path.name not in self._wanted:
            self.unused_archives.append(path.name)
            return
        try:
            handle = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise StoreError(f"{path}: not a readable zip archive ({exc}); download it again") from exc
        self._zips[path] = handle
        stem = path.name[: -len(".zip")]
        for info in handle.infolist():
            member = PurePosixPath(info.filename)
            if info.is_dir() or not member.parts or member.name.startswith("."):
                continue
            if _SKIPPED_FOLDERS & set(member.parts):
                continue
            parts = member.parts if member.parts[0] == stem else (stem, *member.parts)
            self.entries.append(Entry(parts, f"{path.name}/{info.filename}", path, info.filename))

    @property
    def archives(self) -> list[str]:
        return sorted(path.name for path in self._zips)

    # -- matching ------------------------------------------------------------------------------
    def roots(self, rules: Iterable[FileRule]) -> set[tuple[str, ...]]:
        """Dataset roots: the source folder, each archive's own folder, and every folder holding a rule folder."""
        folders = {parts for rule in rules for parts in rule.folder_parts if parts}
        roots: set[tuple[str, ...]] = {()}
        for entry in self.entries:
            parent = entry.parts[:-1]
            if entry.member is not None:
                roots.add(entry.parts[:1])
            for folder in folders:
                if len(parent) >= len(folder) and parent[len(parent) - len(folder) :] == folder:
                    roots.add(parent[: len(parent) - len(folder)])
        return roots

    def find(self, rule: FileRule, roots: set[tuple[str, ...]]) -> dict[str, Entry]:
        """Source-tile id -> file for one rule. An extracted file wins over the same file inside an archive."""
        found: dict[str, Entry] = {}
        for entry in self.entries:
            match = rule.regex.fullmatch(entry.name)
            if match is None:
                continue
            if entry.member is not None and rule.archives is not None and entry.archive not in rule.archives:
                continue
            source = _identify(rule, entry, match, roots)
            if source is None:
                continue
            previous = found.get(source)
            if previous is None:
                found[source] = entry
            elif (previous.member is None) == (entry.member is None):
                raise StoreError(
                    f"two files for tile {source!r}: {previous.display} and {entry.display}; "
                    "keep one of them in the source"
                )
            elif previous.member is not None:
                found[source] = entry  # prefer the extracted copy
        return found

    # -- reading -------------------------------------------------------------------------------
    def read(self, entry: Entry) -> bytes:
        """The file's bytes; records their sha256 under the file's display name."""
        if entry.member is None:
            try:
                data = entry.path.read_bytes()
            except OSError as exc:
                raise StoreError(f"{entry.display}: cannot read the file ({exc.strerror or exc})") from exc
            self._folder_read = True
        else:
            try:
                data = self._zips[entry.path].read(entry.member)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise StoreError(
                    f"{entry.display}: cannot read the archive member ({exc}); the archive is "
                    "damaged, download it again"
                ) from exc
            self._archives_read.add(entry.path)
        self.file_hashes[entry.display] = hashlib.sha256(data).hexdigest()
        return data

    def archive_hashes(self, progress: Callable[[str], None] | None = None) -> dict[str, str]:
        """sha256 of every archive a member was read from, streamed in 1 MiB chunks."""
        hashes = {}
        for path in sorted(self._archives_read):
            if progress is not None:
                progress(path.name)
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
                    digest.update(chunk)
            hashes[path.name] = digest.hexdigest()
        return hashes

    def layout_kind(self) -> str:
        if self._folder_read and self._archives_read:
            return "extracted folder and zip archives"
        return "zip archives" if self._archives_read else "extracted folder"


def _identify(rule: FileRule, entry: Entry, match: re.Match, roots: set[tuple[str, ...]]) -> str | None:
    parent = entry.parts[:-1]
    for folder in rule.folder_parts:
        if not folder:
            if parent in roots:
                return rule.ident(match, parent)
        elif len(parent) >= len(folder) and parent[len(parent) - len(folder) :] == folder:
            return rule.ident(match, parent[: len(parent) - len(folder)])
    return None
