"""`mmbench eval CHECKPOINT --protocol P1 --protocol P2,P3` (issue 17): one process evaluates a checkpoint
under several protocols, loading the checkpoint, the model and the store once, and writes for each protocol
the record a separate `mmbench eval` writes (mmbench/runs/checkpoint_eval.py).

The checkpoint is tests/fixtures/unimodal_tiny.ckpt on the pinned 6-tile store (tests/behaviour_pins.py),
so each evaluation takes a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from behaviour_pins import pinned_store

from mmbench.cli.main import main
from mmbench.cli.run_command import protocol_configs, protocol_names
from mmbench.errors import UserError
from mmbench.records import read_record

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "tests" / "fixtures" / "unimodal_tiny.ckpt"
PROTOCOLS = ("full", "missing1", "subsets")
# What differs between two evaluations of the same thing: when and how it was run.
VOLATILE = ("timing", "run_id", "created", "command")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pinned_store(tmp_path_factory.mktemp("eval-many") / "s.h5")


def evaluate(store: Path, out: Path, *protocol_args: str, extra: tuple[str, ...] = ()) -> int:
    argv = ["eval", str(CHECKPOINT), "-d", str(store), "--out", str(out), "--device", "cpu"]
    for argument in protocol_args:
        argv += ["-p", argument]
    return main([*argv, *extra])


def records_by_protocol(out: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(out.rglob("result.json")):
        record = read_record(path)
        found[record["protocol"]["name"]] = record
    return found


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without what says when and how it ran, nor `run.out` (the tests write to two roots)."""
    kept = json.loads(json.dumps({key: value for key, value in record.items() if key not in VOLATILE}))
    del kept["config"]["run"]["out"]
    return kept


class Counter:
    """Wraps a callable and counts its calls."""

    def __init__(self, function: Any) -> None:
        self.function, self.calls = function, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.function(*args, **kwargs)


def test_several_protocols_write_exactly_the_records_of_separate_evaluations(store, tmp_path):
    assert evaluate(store, tmp_path / "many", "full,missing1", "last1") == 0
    for protocol in ("full", "missing1", "last1"):
        assert evaluate(store, tmp_path / "one", protocol) == 0
    many, one = records_by_protocol(tmp_path / "many"), records_by_protocol(tmp_path / "one")
    assert sorted(many) == sorted(one) == ["full", "last1", "missing1"]
    for protocol in many:
        assert [s["confusion_matrix"] for s in many[protocol]["scenarios"]] == [
            s["confusion_matrix"] for s in one[protocol]["scenarios"]
        ]
        assert many[protocol]["aggregate"] == one[protocol]["aggregate"]  # last1's includes most_fragile
        assert stable(many[protocol]) == stable(one[protocol]), protocol
    assert "most_fragile" in many["last1"]["aggregate"]


def test_the_checkpoint_the_model_and_the_store_are_loaded_once(store, tmp_path, monkeypatch):
    import mmbench.runs.checkpoint_eval as checkpoint_eval
    from mmbench.context import DatasetFacts
    from mmbench.data.loader import TileDataset

    loads = Counter(checkpoint_eval.load_checkpoint)
    builds = Counter(checkpoint_eval.model_from_checkpoint)
    facts = Counter(DatasetFacts.from_store.__func__)  # type: ignore[attr-defined]
    datasets = Counter(TileDataset.__init__)

    def counted_init(self: TileDataset, *args: Any, **kwargs: Any) -> None:
        datasets(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint_eval, "load_checkpoint", loads)
    monkeypatch.setattr(checkpoint_eval, "model_from_checkpoint", builds)
    monkeypatch.setattr(DatasetFacts, "from_store", classmethod(facts))
    monkeypatch.setattr(TileDataset, "__init__", counted_init)

    assert evaluate(store, tmp_path / "many", *PROTOCOLS) == 0
    assert len(records_by_protocol(tmp_path / "many")) == 3
    assert (loads.calls, builds.calls, facts.calls, datasets.calls) == (1, 1, 1, 1)

    for protocol in PROTOCOLS:  # the counters do count: separate evaluations load everything each time
        assert evaluate(store, tmp_path / "one", protocol) == 0
    assert (loads.calls, builds.calls, facts.calls, datasets.calls) == (4, 4, 4, 4)


def test_an_unknown_protocol_or_a_bad_config_stops_everything_before_anything_is_written(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate(store, out, "full,nonexistent") == 2
    assert "nonexistent" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol:\n  no_such_setting: 1\n")
    assert evaluate(store, out, "full", "missing1", extra=("--config", f"missing1={bad}")) == 2
    err = capsys.readouterr().err
    assert "no_such_setting" in err and len(err.strip().splitlines()) == 1
    assert evaluate(store, out, "full", "full") == 2
    assert "given twice" in capsys.readouterr().err
    assert not out.exists()


def test_a_failing_protocol_writes_nothing_the_others_still_run(store, tmp_path, monkeypatch, capsys):
    import mmbench.evaluation.engine as engine
    from mmbench.errors import ConfigError

    real = engine.evaluate

    def failing(model, facts, protocol, **kwargs):
        if protocol.name == "missing1":
            raise ConfigError("missing1 cannot be evaluated here")
        return real(model, facts, protocol, **kwargs)

    monkeypatch.setattr(engine, "evaluate", failing)
    assert evaluate(store, tmp_path / "out", *PROTOCOLS) == 2
    assert sorted(records_by_protocol(tmp_path / "out")) == ["full", "subsets"]
    assert not list((tmp_path / "out").rglob("missing1/**/*.json"))
    err = capsys.readouterr().err
    assert "mmbench eval: protocol missing1 failed: missing1 cannot be evaluated here" in err
    assert err.strip().splitlines()[-1] == "mmbench eval: error: missing1 cannot be evaluated here"


def test_per_protocol_config_files_apply_to_their_protocol_only(store, tmp_path):
    seeded = tmp_path / "seed7.yaml"
    seeded.write_text("run:\n  seed: 7\n")
    assert evaluate(store, tmp_path / "out", "full,missing1", extra=("--config", f"missing1={seeded}")) == 0
    found = records_by_protocol(tmp_path / "out")
    assert found["full"]["seed"] == 0 and found["missing1"]["seed"] == 7


def test_protocol_and_config_arguments_are_read_as_documented(tmp_path):
    assert protocol_names("last1") == ["last1"]  # `mmbench run --checkpoint` gives one string
    assert protocol_names(["full,missing1", "last1"]) == ["full", "missing1", "last1"]
    with pytest.raises(UserError, match="empty protocol"):
        protocol_names(["full,"])
    assert protocol_configs(None, ["a", "b"]) == {"a": None, "b": None}
    assert protocol_configs("c.yaml", ["a"]) == {"a": "c.yaml"}
    assert protocol_configs(["c.yaml", "b=d.yaml"], ["a", "b"]) == {"a": "c.yaml", "b": "d.yaml"}
    with pytest.raises(UserError, match="not a protocol"):
        protocol_configs(["x=d.yaml"], ["a", "b"])
    with pytest.raises(UserError, match="given twice"):
        protocol_configs(["c.yaml", "e.yaml"], ["a"])
