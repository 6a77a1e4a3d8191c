"""A run folder's bookkeeping: its status file, its lock, its stale temporaries, and the `--out` check.

- `status.json` ({state, error, pid, host, time}, written atomically): `running` while a process works in the
  folder, then `finished` (the record is written), `interrupted` (Ctrl-C, SIGTERM, a failed write: the
  checkpoint on disk is good, `--resume` continues it) or `failed` (anything else: `--resume` never offers it;
  mmbench/runs/resume_search.py). A run killed with kill -9 keeps `running` with no live lock: resumable.
- `.lock` (`fcntl.flock`, released by the kernel when its process dies, so never stale): one process per run
  folder; a second one (two `--resume` at once) is refused naming the holder's pid and host.
- `.*.tmp` (mmbench/atomic.py's write-then-rename temporaries) that a kill left behind are removed when the
  next process takes the folder.
- A new run that fails before writing any checkpoint leaves nothing: its folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mmbench.atomic import existing_ancestor, write_failure_reason, write_json_atomic
from mmbench.engine.checkpoint import WriteFailed
from mmbench.errors import UserError

STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
STATES = ("running", "failed", "interrupted", "finished")
CHECKPOINTS = ("last.ckpt", "best.ckpt")

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock, everything else works
    fcntl = None  # type: ignore[assignment]


class RunFolderInUse(UserError):
    """Another live process holds the run folder's lock."""


def check_out_folder(out: str | Path) -> None:
    """`--out` (run.out) must be a folder, or not exist yet under a writable folder: checked before anything
    is computed, so a read-only or mistyped target costs seconds, not a training run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; give a folder for the run records (run.out)")
    existing = existing_ancestor(out)
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder; give a folder for the run records")
    try:
        probe_writable(existing)
    except OSError as exc:
        raise UserError(
            f"--out {out} cannot be written ({exc.strerror or exc}: {existing}); give a writable folder (run.out)"
        ) from exc


def probe_writable(folder: Path) -> None:
    """Create and delete a nameless file in `folder` (root ignores permission bits, not a read-only mount)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The folder's status, or None (no file: a run from before status files, or one being set up)."""
    try:
        status = json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) and status.get("state") in STATES else None


def write_status(run_dir: Path, state: str, error: str | None = None) -> None:
    write_json_atomic(
        run_dir / STATUS_FILE,
        {
            "state": state,
            "error": error,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def lock_holder(run_dir: Path) -> str | None:
    """ "process PID (host)" of a live process holding the folder's lock, else None."""
    path = run_dir / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _describe(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(lock: Path) -> str:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
        return f"process {holder['pid']} ({holder['host']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the write-then-rename temporaries a killed process left (call with the lock held)."""
    removed = []
    for path in run_dir.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


class RunFolder:
    """`with RunFolder(run_dir, resumed=...)`: lock the folder, remove stale temporaries, mark it `running`;
    on leaving, mark it by how the run ended (`finish()` marks it `finished`), and unlock. `enabled=False`
    (DDP ranks other than 0) does nothing."""

    def __init__(self, run_dir: Path, *, resumed: bool, enabled: bool = True, dist: Any = None) -> None:
        """`dist` (mmbench.runtime.distributed.DistContext): under DDP, every rank learns whether rank 0 took
        the folder, so that the others stop too (exit 2) instead of waiting for it at the first collective."""
        self.run_dir, self.resumed, self.enabled, self.dist = run_dir, resumed, enabled, dist
        self._fd: int | None = None
        self._finished = False
        self._existed = run_dir

    def __enter__(self) -> RunFolder:
        refusal: BaseException | None = None
        if self.enabled:
            try:
                self._take()
            except BaseException as exc:
                refusal = exc
        if self.dist is not None and getattr(self.dist, "enabled", False):
            message = self.dist.broadcast(None if refusal is None else " ".join(str(refusal).split()) or "failed")
            if refusal is None and message is not None:  # rank 0 could not take the folder: stop here too
                raise UserError(message)
        if refusal is not None:
            raise refusal
        return self

    def _take(self) -> None:
        created = not self.run_dir.exists()
        self._existed = existing_ancestor(self.run_dir)  # the folders below it are this run's to remove
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            remove_stale_temporaries(self.run_dir)
            write_status(self.run_dir, "running")
        except OSError as exc:
            self._unlock()
            if created:
                self._remove_created()
            raise WriteFailed(
                f"cannot write in run folder {self.run_dir} ({exc.strerror or exc}); free disk space or give "
                "another --out"
            ) from exc
        except BaseException:
            self._unlock()
            if created:
                self._remove_created()
            raise

    def finish(self) -> None:
        """The record is written: the run is complete."""
        if self.enabled:
            self._finished = True
            with contextlib.suppress(OSError):
                write_status(self.run_dir, "finished")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self.enabled:
            return
        try:
            if error is not None and not self._finished:
                self._mark(error)
        finally:
            self._unlock()
        if error is not None and not self.resumed and not any((self.run_dir / n).is_file() for n in CHECKPOINTS):
            self._remove_created()  # nothing to keep or resume: leave nothing behind

    def _remove_created(self) -> None:
        """The run folder, and the empty folders above it that this run created (`--out` included)."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for parent in Path(os.path.abspath(self.run_dir)).parents:
            if parent == self._existed or not parent.is_relative_to(self._existed):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty: another run is there
                break

    def _mark(self, error: BaseException) -> None:
        message = " ".join(str(error).split()) or type(error).__name__
        resumable = isinstance(error, KeyboardInterrupt) or bool(getattr(error, "resumable", False))
        resumable = resumable or write_failure_reason(error) is not None
        with contextlib.suppress(OSError):  # a full disk may refuse the status too: the lock still goes
            write_status(self.run_dir, "interrupted" if resumable else "failed", message)

    def _lock(self) -> None:
        if fcntl is None:
            return
        path = self.run_dir / LOCK_FILE
        for _ in range(20):  # the holder may remove the file between our open and our lock: take the new one
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderInUse(
                    f"run folder {self.run_dir} is in use by {_describe(path)}; wait for it to finish, or stop it "
                    "and run again with --resume (or run without --resume to start a new run)"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
                self._fd = fd
                return
            os.close(fd)
        raise RunFolderInUse(f"run folder {self.run_dir} keeps changing hands; try again")

    def _unlock(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.run_dir / LOCK_FILE).unlink()  # while still locked: a waiting process sees the inode change
        os.close(self._fd)
        self._fd = None
