"""The JSON-lines training log beside the record (`train_log.jsonl`, written by rank 0 only): one entry per
logged step, validation and final test; a resumed run drops the entries after its checkpoint first.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
            lines = path.read_text().splitlines()
            kept = "".join(line + "\n" for line in lines if json.loads(line).get("step", 0) <= resume_step)
        path.write_text(kept)

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"time": round(time.time(), 3), **entry}, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
