"""Issue 18, item 3: what the board may aggregate as seeds of one row, and what it reads from a protocol.

- a checkpoint trained on one store and evaluated on another is a transfer: its own row, labelled and
  flagged, never a "seed" of the model trained on the evaluated store (mmbench/leaderboard/board.py);
- the mean column is the protocol's own `aggregate` value; when that differs from the mean over scenarios
  (a custom aggregate) the table says so and the mean column has no bootstrap interval, which would be for
  another statistic (mmbench/leaderboard/table_statistics.py);
- the dirty flag names what made the tree dirty.

Records are the committed synthetic ones (tests/test_leaderboard.py) or tests/board_records.py's cheap
schema-2 records.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from board_records import ground_truth, real, schema2_record, template, write

from mmbench.leaderboard.board import build_board, config_id, record_values, transfer_source
from mmbench.leaderboard.collect import collect_records
from mmbench.leaderboard.render_text import render_markdown

OTHER_FINGERPRINT = "sha256:" + "ab" * 32


def board_of(root: Path, **options) -> dict:
    records, skipped = collect_records([root])
    return build_board(records, skipped, **options)


def seed(record: dict, value: int, *, trained_on: dict | None = None) -> dict:
    record = copy.deepcopy(record)
    record["seed"] = value
    record["config"]["run"]["seed"] = value
    if trained_on is not None:
        record["method"]["trained_on"] = trained_on
    return record


def test_a_checkpoint_evaluated_on_another_store_is_its_own_transfer_row(tmp_path):
    stars = real("stars-last1")
    evaluated = {"name": stars["dataset"]["name"], "fingerprint": stars["dataset"]["fingerprint"]}
    write(tmp_path, "old", stars)  # written before the field: trained on the evaluated store
    write(tmp_path, "same", seed(stars, 1, trained_on=evaluated))
    write(tmp_path, "transfer", seed(stars, 2, trained_on={"name": "other", "fingerprint": OTHER_FINGERPRINT}))
    (table,) = board_of(tmp_path, n_boot=50)["tables"]
    rows = {row["label"]: row for row in table["rows"]}
    assert set(rows) == {"stars", "stars (trained on other)"}
    assert rows["stars"]["seeds"] == [0, 1]  # the field, when it names the evaluated store, changes nothing
    transfer = rows["stars (trained on other)"]
    assert transfer["seeds"] == [2] and transfer["config_id"] != rows["stars"]["config_id"]
    assert transfer["trained_on"] == {"name": "other", "fingerprint": OTHER_FINGERPRINT}
    assert f"transfer: trained on other (sha256:{'ab' * 6}…)" in transfer["flags"]
    assert not any(flag.startswith("transfer") for flag in rows["stars"]["flags"])
    assert "stars (trained on other)" in render_markdown(board_of(tmp_path, n_boot=50))


def test_older_eval_records_name_their_training_store_in_the_checkpoint_block(tmp_path):
    stars = real("stars-last1")
    older = seed(stars, 1)
    older["method"]["checkpoint"].update(trained_on="other", trained_on_fingerprint=OTHER_FINGERPRINT)
    assert transfer_source(older) == {"name": "other", "fingerprint": OTHER_FINGERPRINT}
    same = seed(stars, 2)
    same["method"]["checkpoint"].update(trained_on="synthetic", trained_on_fingerprint=stars["dataset"]["fingerprint"])
    assert transfer_source(same) is None
    assert config_id(same) == config_id(stars) != config_id(older)


def test_two_transfers_from_different_stores_are_different_rows(tmp_path):
    stars = real("stars-last1")
    write(tmp_path, "a", seed(stars, 0, trained_on={"name": "other", "fingerprint": OTHER_FINGERPRINT}))
    write(tmp_path, "b", seed(stars, 1, trained_on={"name": "third", "fingerprint": "sha256:" + "cd" * 32}))
    (table,) = board_of(tmp_path, n_boot=50)["tables"]
    assert sorted(row["label"] for row in table["rows"]) == ["stars (trained on other)", "stars (trained on third)"]


def _schema2_records(tmp_path: Path, *, custom: bool) -> None:
    rng = np.random.default_rng(3)
    truth = ground_truth(8, rng)
    base = template("last1")
    for method, quality in (("good", 0.8), ("bad", 0.6)):
        for value in (0, 1):
            record = schema2_record(base, method=method, seed=value, quality=quality, truth=truth, rng=rng)
            if custom and method == "good":
                record["aggregate"]["mean"]["miou"] = 0.123  # e.g. a weighted mean the protocol defines
            write(tmp_path, f"{method}-{value}", record)


def test_a_custom_protocol_mean_is_shown_without_a_mismatched_interval(tmp_path):
    _schema2_records(tmp_path / "plain", custom=False)
    (plain,) = board_of(tmp_path / "plain", n_boot=50)["tables"]
    assert plain["custom_aggregate"] is None
    assert all(row["values"]["mean"]["ci"] is not None for row in plain["rows"])

    _schema2_records(tmp_path / "custom", custom=True)
    (table,) = board_of(tmp_path / "custom", n_boot=50)["tables"]
    assert "differs from the mean over its scenarios" in table["custom_aggregate"]
    rows = {row["label"]: row for row in table["rows"]}
    assert rows["good"]["values"]["mean"]["mean"] == pytest.approx(0.123)  # the protocol's value, not recomputed
    assert all(row["values"]["mean"]["ci"] is None for row in table["rows"])
    assert all(row["values"]["scenario:optical only"]["ci"] is not None for row in table["rows"])
    assert "protocol computes its own mean" in table["statistics"]["reason"]
    assert "differs from the mean over its scenarios" in render_markdown(board_of(tmp_path / "custom", n_boot=50))


def test_the_mean_of_repeated_draws_comes_from_the_protocols_aggregate():
    record = real("stars-last1")
    record["aggregate"] = {"miou": {"mean": 0.4242, "std": 0.01, "n": 3}}
    assert record_values(record)["mean"] == pytest.approx(0.4242)


def test_pixel_drop_per_ratio_means_become_columns():
    record = real("stars-last1")
    per_ratio = {"r=0.25": {"mean": {"miou": 0.61}}, "r=0.75": {"mean": {"miou": 0.42}, "expectation": {}}}
    record["aggregate"] = {"per_ratio": per_ratio, "per_nothing": {"x": {"mean": 0.3}}, "performance": {"a": 1}}
    values = record_values(record)
    assert values["mean r=0.25"] == pytest.approx(0.61) and values["mean r=0.75"] == pytest.approx(0.42)
    assert not any(key.startswith("mean x") or key.startswith("mean a") for key in values)


def test_the_dirty_flag_says_what_made_the_tree_dirty(tmp_path):
    stars = real("stars-last1")
    dirty = seed(stars, 1)
    dirty["git"].update(dirty=True, dirty_paths={"count": 2, "paths": ["mmbench/x.py", "methods/y.py"]})
    write(tmp_path, "a", stars)
    write(tmp_path, "b", dirty)
    (table,) = board_of(tmp_path, n_boot=50)["tables"]
    (row,) = table["rows"]
    assert "dirty git tree (1 of 2 records): 2 changed files (mmbench/x.py, methods/y.py)" in row["flags"]
