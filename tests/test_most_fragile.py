"""The most fragile single modality (mmbench/runs/fragile.py): last1 records name the modality whose loss
costs most on validation and score only that drop-one scenario on test; the numbers agree with evaluating
the same checkpoint under missing1 on each part; other protocols' records do not get the figure."""

from __future__ import annotations

import pytest

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.protocol import Protocol
from mmbench.records import read_record
from mmbench.runs.fragile import reports_most_fragile

MODALITIES = ["optical", "dsm", "sar"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("fragile") / "s.h5", SyntheticConfig(tiles=12, size=64))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()


def record_under(root):
    (path,) = root.rglob("result.json")
    return read_record(path)


def per_scenario_miou(record):
    return {tuple(s["available"]): s["metrics"]["miou"] for s in record["scenarios"]}


def test_last1_records_the_modality_chosen_on_validation_and_its_test_score(capsys, tmp_path, store, tiny_methods):
    common = ["--dataset", store, "--deterministic"]
    run(capsys, "run", "tiny-trainable", "-p", "last1", *common, "--out", tmp_path / "run")
    record = record_under(tmp_path / "run")
    figure = record["aggregate"]["most_fragile"]
    assert set(figure["val_miou_without"]) == set(MODALITIES)
    assert record["timing"]["most_fragile_s"] > 0

    # The same checkpoint under missing1 on the validation part gives the values the choice was made on ...
    checkpoint = record["method"]["checkpoint"]["path"]
    run(capsys, "eval", checkpoint, "-p", "missing1", "--set", "protocol.part=val", *common, "--out", tmp_path / "val")
    validation = per_scenario_miou(record_under(tmp_path / "val"))
    without = {name: tuple(m for m in MODALITIES if m != name) for name in MODALITIES}
    assert figure["val_miou_without"] == pytest.approx({name: validation[without[name]] for name in MODALITIES})
    lowest = min(MODALITIES, key=lambda name: (validation[without[name]], MODALITIES.index(name)))
    assert figure["modality"] == lowest

    # ... and on the test part the score recorded for the chosen scenario, whatever missing1's worst is.
    run(capsys, "eval", checkpoint, "-p", "missing1", *common, "--out", tmp_path / "test")
    test = record_under(tmp_path / "test")
    (chosen,) = [s for s in test["scenarios"] if tuple(s["available"]) == without[lowest]]
    assert figure["scenario"] == chosen["name"] and figure["part"] == "test"
    for key in ("miou", "mf1", "oa"):
        assert figure[key] == pytest.approx(chosen["metrics"][key])

    # mmbench eval of the checkpoint under last1 records the same figure; missing1 records none.
    run(capsys, "eval", checkpoint, "-p", "last1", *common, "--out", tmp_path / "eval")
    assert record_under(tmp_path / "eval")["aggregate"]["most_fragile"] == figure
    assert "most_fragile" not in test["aggregate"]


def test_other_protocols_do_not_get_the_figure_unless_they_ask(capsys, tmp_path, store, tiny_methods):
    run(capsys, "run", "tiny-trainable", "-p", "full", "--dataset", store, "--smoke", "--out", tmp_path / "full")
    assert "most_fragile" not in record_under(tmp_path / "full")["aggregate"]

    one_left = [{"available": [name], "missing": 2} for name in MODALITIES]
    two_left = [{"available": ["optical", "dsm"], "missing": 1}, {"available": ["sar"], "missing": 2}]
    per_sample = [{**entry, "drop_probability": 0.5} for entry in one_left]
    plain = Protocol({})
    assert reports_most_fragile(plain, one_left)
    assert not reports_most_fragile(plain, two_left) and not reports_most_fragile(plain, per_sample)
    assert not reports_most_fragile(plain, one_left[:1])  # a single modality: nothing to lose

    class Asking(Protocol):
        reports_most_fragile = True

    class Declining(Protocol):
        reports_most_fragile = False

    assert reports_most_fragile(Asking({}), two_left) and not reports_most_fragile(Declining({}), one_left)
