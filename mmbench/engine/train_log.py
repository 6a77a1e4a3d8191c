"""The JSON-lines training log beside the record (`train_log.jsonl`, written by rank 0 only): one entry per
logged step, validation and final test; a resumed run drops the entries after its checkpoint first (and the
final test entry of a run whose record could not be written, and a line cut short by a kill), so the log
never repeats a step. A failed write is one line with the resume hint (`WriteFailed`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbench.atomic import write_text_atomic
from mmbench.engine.checkpoint import WriteFailed


class TrainLog:
    """Appends one JSON object per line, stamped with the wall-clock time."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = ""
        if resume_step is not None and path.exists():
            # Entries written after the checkpoint we resume from will be written again: drop them.
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = "".join(line + "\n" for line in lines if _step(line) is not None and _step(line) <= resume_step)
        self._guarded(lambda: write_text_atomic(path, kept))

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            line = json.dumps({"time": round(time.time(), 3), **entry}, default=_jsonable) + "\n"
            self._guarded(lambda: self._append(line))

    def _append(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)

    def _guarded(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:
            raise WriteFailed(
                f"cannot write the training log {self.path} ({exc.strerror or exc}); free disk space, then continue "
                "with the same command and --resume"
            ) from exc


def _step(line: str) -> int | None:
    """The step of a logged entry; None for the final test entry and for a line cut short by a kill."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    step = entry.get("step") if isinstance(entry, dict) else None
    return step if isinstance(step, int) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
