"""Write-then-rename file output, so that no reader ever sees a half-written record or checkpoint.

A crash, Ctrl-C or full disk while writing leaves at most a hidden temporary file beside the target
(removed when the failure is seen; a kill -9 leaves it, and the next run in that folder removes it:
mmbench/runs/run_dir.py); the target is either the old complete file or the new one. `write_failure_reason`
tells a failed write (OSError, or torch.save's RuntimeError over one) from other errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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


def write_failure_reason(error: BaseException) -> str | None:
    """Why a write failed ("No space left on device"), or None when `error` is not a write failure.

    An `OSError` is one. `torch.save` reports a full disk as a `RuntimeError` ("[enforce fail at
    inline_container.cc:672] . unexpected pos ...") raised while handling the `OSError` of the failed write
    (its `__context__`), so the chain is searched; a RuntimeError naming torch's archive writer without one
    counts too."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError):
            return seen.strerror or str(seen) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    if isinstance(error, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text):
        return " ".join(text.split())
    return None


def free_bytes(path: str | Path) -> int:
    """Free space (bytes) for an unprivileged writer on the filesystem holding `path` or, when it does not
    exist yet, its nearest existing folder."""
    return shutil.disk_usage(existing_ancestor(Path(path))).free


def existing_ancestor(path: Path) -> Path:
    """`path` itself when it exists, else its nearest existing parent."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
