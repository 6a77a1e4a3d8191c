"""mmbench/engine/train_time.py: a resumed run's training time adds the earlier segments' seconds when the
note beside the checkpoint is from the step it resumes at, and is unknown (never guessed) otherwise; and
the board's use of it (mmbench/leaderboard/budget.py `whole_training_seconds`)."""

from __future__ import annotations

import json

import pytest
from board_records import RECORDS

from mmbench.engine.train_time import FILENAME, TrainClock
from mmbench.leaderboard.budget import whole_training_seconds


def test_a_fresh_run_counts_from_zero_and_notes_its_total_at_each_save(tmp_path):
    clock = TrainClock(tmp_path, resume_step=None)
    assert clock.before == 0.0 and 0 <= clock.segment() <= clock.total()
    clock.save(250)
    clock.save(500)
    notes = json.loads((tmp_path / FILENAME).read_text())["train_s_at_step"]
    assert list(notes) == ["250", "500"] and 0 <= notes["250"] <= notes["500"]


@pytest.mark.parametrize(
    ("note", "before"),
    [
        ({"train_s_at_step": {"250": 120.5, "500": 240.0}}, 120.5),  # its step (best.ckpt, older): carries over
        ({"train_s_at_step": {"500": 240.0}}, None),  # no note at its step: unknown
        (None, None),  # a checkpoint from before the notes existed
        ("{ truncated", None),
        ({"train_s_at_step": {"250": True}}, None),
    ],
    ids=["same-step", "other-step", "missing", "corrupt", "not-a-number"],
)
def test_a_resumed_run_adds_the_seconds_noted_at_its_step_or_knows_it_cannot(tmp_path, note, before):
    if note is not None:
        (tmp_path / FILENAME).write_text(note if isinstance(note, str) else json.dumps(note))
    clock = TrainClock(tmp_path, resume_step=250)
    assert clock.before == before
    if before is None:
        assert clock.total() is None
        clock.save(300)  # an unknown total is not written as if it were known
        assert (tmp_path / FILENAME).exists() == (note is not None)
    else:
        assert clock.total() >= before


def test_the_board_uses_train_s_only_when_it_covers_the_whole_training():
    def record(**timing):
        return {"timing": timing, "method": {"checkpoint": {"total_steps": 3000}}}

    assert whole_training_seconds(record(train_s=1000.0, steps_per_s=3.0)) == 1000.0
    # written before resumed runs added earlier segments: 412 s at 3.49 steps/s is 1,440 of 3,000 steps
    assert whole_training_seconds(record(train_s=412.66, steps_per_s=3.4896)) is None
    assert whole_training_seconds(record(train_s=1000.0, steps_per_s=5.0, resumed_at_step=1500)) == 1000.0
    assert whole_training_seconds(record(train_s=None, steps_per_s=5.0, resumed_at_step=1500)) is None
    committed = json.loads((RECORDS.parents[0] / "synthetic-v2" / "sgma-seed0-last1.json").read_text())
    assert whole_training_seconds(committed) is None  # a committed record of that kind
