"""Run records: schema validation, atomic writing, and readable failures for bad records."""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
from record_helpers import minimal_record

from mmbench.atomic import atomic_output, write_json_atomic
from mmbench.errors import RecordError
from mmbench.records import (
    SCHEMA_VERSION,
    new_run_id,
    read_record,
    record_path,
    record_schema,
    utc_now,
    validate_record,
    write_record,
)


def test_the_schema_requires_every_documented_top_level_key():
    assert set(record_schema()["required"]) == {
        "schema_version",
        "run_id",
        "created",
        "command",
        "method",
        "protocol",
        "dataset",
        "seed",
        "config",
        "env",
        "git",
        "scenarios",
        "aggregate",
        "timing",
    }
    validate_record(minimal_record())


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda r: r.pop("seed"), "(top level)"),
        (lambda r: r["method"].pop("version"), "method"),
        (lambda r: r.__setitem__("seed", -1), "seed"),
        (lambda r: r["scenarios"][0]["confusion_matrix"][0].__setitem__(0, 1.5), "scenarios/0/confusion_matrix/0/0"),
        (lambda r: r["scenarios"][0]["metrics"].pop("miou"), "scenarios/0/metrics"),
        (lambda r: r["scenarios"][0].__setitem__("available", []), "scenarios/0/available"),
        (lambda r: r["git"].__setitem__("commit", "not-a-sha"), "git/commit"),
        (lambda r: r["config"].pop("method"), "config"),
        (lambda r: r.__setitem__("created", "yesterday"), "created"),
    ],
)
def test_invalid_records_name_the_offending_field(mutate, where):
    record = copy.deepcopy(minimal_record())
    mutate(record)
    with pytest.raises(RecordError, match=f"run record field {re.escape(where)}"):
        validate_record(record)


def test_future_schema_versions_ask_for_an_upgrade():
    record = minimal_record()
    record["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(RecordError, match="newer than this mmbench understands.*upgrade mmbench"):
        validate_record(record)


def test_write_then_read_round_trip(tmp_path):
    path = record_path(tmp_path, "my data!", "last1", "stars", "run-1")
    assert path == tmp_path / "my_data" / "last1" / "stars" / "run-1" / "result.json"
    write_record(minimal_record(), path)
    assert read_record(path) == minimal_record()
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_an_invalid_record_is_never_written(tmp_path):
    record = minimal_record()
    del record["env"]
    path = tmp_path / "r" / "result.json"
    with pytest.raises(RuntimeError, match="refusing to write an invalid run record"):
        write_record(record, path)
    assert not path.exists()


def test_nan_is_refused_before_any_file_is_touched(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(ValueError):
        write_json_atomic(path, {"miou": float("nan")})
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(b"complete old checkpoint")
    with pytest.raises(OSError, match="disk full"):
        with atomic_output(path, "wb") as handle:
            handle.write(b"half of the new")
            raise OSError("disk full")
    assert path.read_bytes() == b"complete old checkpoint"
    assert os.listdir(tmp_path) == ["checkpoint.bin"]


def test_reading_bad_records_gives_one_line_errors(tmp_path):
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(minimal_record())[:100])
    with pytest.raises(RecordError, match="truncated.json: not valid JSON .* truncated or corrupt"):
        read_record(truncated)
    with pytest.raises(RecordError, match="no such run record"):
        read_record(tmp_path / "absent.json")
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(RecordError, match="incomplete.json: run record field"):
        read_record(incomplete)


def test_run_ids_sort_by_time_and_do_not_collide():
    moment = utc_now()
    ids = {new_run_id(moment, 7) for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith(f"{moment:%Y%m%dT%H%M%SZ}-s7-") for i in ids)
