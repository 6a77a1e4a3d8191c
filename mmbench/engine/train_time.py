"""How long a training took over all its segments: a run resumed after an interruption adds the seconds of
the segments before it, so the record's `timing.train_s` (the board's "train s" budget column) is the time
of the whole training, not of its last part.

Why a file of its own beside the checkpoints (`train_time.json`) instead of a field in them: a checkpoint's
bytes depend only on the seed and the config, so the same seed gives the same checkpoint; wall time would
break that. The file maps each step a checkpoint was saved at to the training seconds up to it
(`{"train_s_at_step": {"250": 81.2, ...}}`), so a resume from `last.ckpt` or from an older `best.ckpt`
finds its step; a checkpoint written before this file existed finds none, and the earlier segments' time
is then unknown (None), never guessed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mmbench.atomic import write_json_atomic

FILENAME = "train_time.json"


class TrainClock:
    """Seconds of training: the segments before this one (read at a resume) plus this one's so far."""

    def __init__(self, run_dir: Path, *, resume_step: int | None) -> None:
        self.path = run_dir / FILENAME
        self.started = time.perf_counter()
        self.at_step: dict[str, float] = {} if resume_step is None else read_notes(self.path)
        self.before: float | None = 0.0 if resume_step is None else self.at_step.get(str(resume_step))

    def segment(self) -> float:
        """Seconds since this segment started."""
        return time.perf_counter() - self.started

    def total(self) -> float | None:
        """Seconds over every segment; None when an earlier segment's time is unknown."""
        return None if self.before is None else self.before + self.segment()

    def save(self, step: int) -> None:
        """Note the total at `step` (called with each checkpoint save; raises OSError like the save)."""
        total = self.total()
        if total is not None:
            self.at_step[str(step)] = round(total, 3)
            write_json_atomic(self.path, {"train_s_at_step": self.at_step})


def read_notes(path: Path) -> dict[str, float]:
    """{step: training seconds up to it} of the run whose notes are at `path`; {} when there are none or they
    cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    notes = data.get("train_s_at_step") if isinstance(data, dict) else None
    if not isinstance(notes, dict):
        return {}
    return {
        str(step): float(seconds)
        for step, seconds in notes.items()
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    }
