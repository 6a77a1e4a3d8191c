"""Write-then-rename file output, so that no reader ever sees a half-written record or checkpoint.

A crash, Ctrl-C or full disk while writing leaves at most a hidden temporary file beside the target
(removed when the failure is seen); the target is either the old complete file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_output(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a file open on a temporary name in the target's folder; rename it over `path` on success."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_output writes whole files: mode must be 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, shared_file_mode())
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def shared_file_mode() -> int:
    """The mode a plain `open()` would give a new file (0666 minus the umask); mkstemp uses 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_output(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: str | Path, data: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Serialize first, then write: a value json cannot encode fails before any file is touched."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False, default=default) + "\n"
    write_text_atomic(path, text)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform or filesystem allows opening a folder.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
