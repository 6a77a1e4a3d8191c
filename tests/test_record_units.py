"""Records carry what the leaderboard's statistics need (schema version 2): one confusion matrix per evaluation
unit (tile, or whole area) that sums to the scenario's matrix, named so that records pair unit by unit; the
training facts (total steps, validation curve); version-1 records keep loading; `leaderboard --check` catches an
edited unit matrix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from area_helpers import AREAS, PARTS, linear_fusion, write_area_store
from record_helpers import SCENARIO, minimal_record

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.errors import RecordError
from mmbench.evaluation.engine import evaluate
from mmbench.evaluation.metrics import compute_metrics
from mmbench.records import (
    SCHEMA_VERSION,
    check_unit_confusion,
    decode_unit_confusion,
    encode_unit_confusion,
    read_record,
    record_unit_confusion,
    validate_record,
)
from mmbench.records.unit_confusion import UnitConfusionError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("units") / "s.h5", SyntheticConfig(tiles=12, size=64))


def _register_tiny_trainable(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the function-scoped `tiny_methods` fixture does, usable by a module-scoped fixture."""
    from conftest import _put_on_path
    from plugin_factory import make_distribution

    entry = {"mmbench.methods": {"tiny-trainable": "tiny_methods:TRAINABLE_SPEC"}}
    _put_on_path(make_distribution(root, "mmb-tiny-units", entry, None, "1.0.0"), monkeypatch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    """One real tiny run (tiny-trainable, last1: 12 steps, validation every 4) and its record."""
    from mmbench.registry import refresh_all

    root = tmp_path_factory.mktemp("runs")
    monkeypatch = pytest.MonkeyPatch()
    _register_tiny_trainable(root / "site", monkeypatch)
    try:
        args = ["run", "tiny-trainable", "-p", "last1", "-d", str(store), "--out", str(root / "out"), "--deterministic"]
        assert main(args) == 0
    finally:
        monkeypatch.undo()
        refresh_all()
    (path,) = (root / "out").rglob("result.json")
    return path, read_record(path)


def units_of(scenario):
    return decode_unit_confusion(scenario["unit_confusion"])


# -- the encoding -------------------------------------------------------------------------------------------


def test_the_encoding_round_trips_and_chooses_the_narrowest_dtype():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 1000, (7, 4, 4))
    entry = encode_unit_confusion("tile", [f"t{i}" for i in range(7)], counts)
    assert entry["dtype"] == "<u4" and entry["shape"] == [7, 4, 4] and entry["unit"] == "tile"
    names, decoded = decode_unit_confusion(json.loads(json.dumps(entry)))
    assert names == [f"t{i}" for i in range(7)] and decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, counts)
    large = counts.copy()
    large[3, 1, 1] = 2**40
    wide = encode_unit_confusion("area", [f"a{i}" for i in range(7)], large)
    assert wide["dtype"] == "<u8"
    np.testing.assert_array_equal(decode_unit_confusion(wide)[1], large)


def test_the_documented_hand_decoding_reads_the_data():
    """docs/run-record.md tells readers outside mmbench how to decode `data`; it must stay true."""
    import base64
    import zlib

    counts = np.arange(2 * 3 * 3).reshape(2, 3, 3) * 70_000  # several non-zero bytes per count
    entry = encode_unit_confusion("area", ["x", "y"], counts)
    dtype = np.dtype(entry["dtype"])
    planes = np.frombuffer(zlib.decompress(base64.b64decode(entry["data"])), np.uint8)
    decoded = np.ascontiguousarray(planes.reshape(dtype.itemsize, -1).T).view(dtype).reshape(entry["shape"])
    np.testing.assert_array_equal(decoded, counts)
    assert entry["encoding"] in (REPO / "docs" / "run-record.md").read_text()


def test_the_encoding_is_small_for_a_realistic_record():
    """500 tiles x 6 classes: far below the ~5 characters per count a flat JSON list of ints would take."""
    rng = np.random.default_rng(1)
    counts = np.zeros((500, 6, 6), dtype=np.int64)
    diagonal = rng.integers(0, 60_000, (500, 6))
    counts[:, range(6), range(6)] = diagonal
    counts[:, 0, 1] = rng.integers(0, 500, 500)
    entry = encode_unit_confusion("tile", [str(i) for i in range(500)], counts)
    flat = len(json.dumps(counts.tolist()))
    assert len(entry["data"]) < flat / 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.__setitem__("data", e["data"][:-8]), "cannot be decoded|bytes"),
        (lambda e: e.__setitem__("shape", [2, 3, 3]), "unit names for 2 units|bytes"),
        (lambda e: e.__setitem__("dtype", "<f8"), "dtype"),
        (lambda e: e["names"].__setitem__(1, e["names"][0]), "not unique"),
        (lambda e: e.__setitem__("encoding", "raw"), "encoding"),
    ],
)
def test_corrupt_entries_are_one_line_errors(mutate, message):
    entry = encode_unit_confusion("tile", ["a", "b", "c"], np.ones((3, 2, 2), dtype=np.int64))
    mutate(entry)
    with pytest.raises(UnitConfusionError, match=message):
        decode_unit_confusion(entry)


# -- a real run ---------------------------------------------------------------------------------------------


def test_a_real_run_stores_per_tile_matrices_that_sum_to_each_scenario(trained, store):
    from mmbench.data.store_reader import TileStore

    _, record = trained
    assert record["schema_version"] == SCHEMA_VERSION == 2
    classes = list(record["scenarios"][0]["metrics"]["per_class"])
    with TileStore(store) as tiles:
        test_ids = [tiles.tile_ids[int(i)] for i in tiles.split_indices(None, "test")]
    for scenario in record["scenarios"]:
        names, counts = units_of(scenario)
        assert scenario["unit_confusion"]["unit"] == "tile"
        assert names == test_ids  # the store's tile ids, in evaluation order: pairable across records
        assert counts.shape == (len(test_ids), len(classes), len(classes))
        np.testing.assert_array_equal(counts.sum(0), np.asarray(scenario["confusion_matrix"]))
        assert check_unit_confusion(scenario) is None
        # every tile holds pixels, and the metrics follow from the summed unit matrices exactly
        assert (counts.sum(axis=(1, 2)) > 0).all()
        recomputed = compute_metrics(counts.sum(0), classes, record["protocol"]["settings"].get("classes_scored"))
        assert recomputed["miou"] == scenario["metrics"]["miou"]
        per_unit = [compute_metrics(matrix, classes)["miou"] for matrix in counts]
        assert all(value is None or 0.0 <= value <= 1.0 for value in per_unit)
    names, stacked = record_unit_confusion(record)
    assert stacked.shape[:2] == (len(record["scenarios"]), len(test_ids)) and names == test_ids


def test_the_record_states_total_steps_and_the_validation_curve(trained):
    path, record = trained
    checkpoint = record["method"]["checkpoint"]
    assert checkpoint["total_steps"] == 12
    curve = checkpoint["validation_curve"]
    assert [point["step"] for point in curve] == [4, 8, 12]
    best = max(curve, key=lambda point: point["score"])
    assert best["step"] == checkpoint["selected_step"] and best["score"] == checkpoint["best_val_score"]
    events = [json.loads(line) for line in (path.parent / "train_log.jsonl").read_text().splitlines()]
    assert [e["score"] for e in events if e["event"] == "val"] == [point["score"] for point in curve]


def test_eval_of_the_selected_checkpoint_copies_its_training_facts(trained, store, tmp_path):
    path, record = trained
    checkpoint = Path(record["method"]["checkpoint"]["path"])
    from mmbench.engine.checkpoint import load_checkpoint
    from mmbench.records.fingerprint import file_sha256

    assert file_sha256(checkpoint) == record["method"]["checkpoint"]["sha256"]  # annotated before it was hashed
    from mmbench.records.fingerprint import weights_sha256

    assert weights_sha256(load_checkpoint(checkpoint)["model"]) == record["method"]["checkpoint"]["weights_sha256"]
    assert load_checkpoint(checkpoint)["training"]["total_steps"] == 12
    from mmbench.registry import refresh_all

    monkeypatch = pytest.MonkeyPatch()
    _register_tiny_trainable(tmp_path / "site", monkeypatch)
    try:
        assert main(["eval", str(checkpoint), "-p", "full", "-d", str(store), "--out", str(tmp_path / "e")]) == 0
    finally:
        monkeypatch.undo()
        refresh_all()
    (evaluated,) = (tmp_path / "e").rglob("result.json")
    facts = read_record(evaluated)["method"]["checkpoint"]
    original = record["method"]["checkpoint"]
    for key in ("selected_step", "total_steps", "validation_curve"):
        assert facts[key] == original[key], key


def test_eval_of_a_checkpoint_without_training_facts_says_null(tmp_path):
    from behaviour_pins import pinned_store

    store = pinned_store(tmp_path / "s.h5")
    checkpoint = REPO / "tests" / "fixtures" / "unimodal_tiny.ckpt"
    assert main(["eval", str(checkpoint), "-p", "full", "-d", str(store), "--out", str(tmp_path / "e")]) == 0
    (path,) = (tmp_path / "e").rglob("result.json")
    record = read_record(path)
    facts = record["method"]["checkpoint"]
    assert facts["total_steps"] is None and facts["validation_curve"] is None
    for scenario in record["scenarios"]:
        assert check_unit_confusion(scenario) is None and scenario["unit_confusion"]["unit"] == "tile"


# -- whole areas and per-sample protocols -------------------------------------------------------------------


def _protocol(name: str, **overrides):
    from mmbench.config import load_defaults
    from mmbench.registry import PROTOCOLS

    spec = PROTOCOLS.get(name)
    return spec.load()({**load_defaults(spec.defaults, name), **overrides})


@pytest.fixture(scope="module")
def area_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("areas") / "areas.h5"
    write_area_store(path)
    return path


def test_a_whole_area_store_gives_one_unit_per_area(area_store):
    result = evaluate(linear_fusion(), area_store, _protocol("subsets", window=16, stride=8), show_progress=False)
    test_areas = [name for name in AREAS if name in PARTS["test"]]
    assert result.settings["evaluation_unit"] == "area"
    for scenario in result.scenarios:
        names, counts = units_of(scenario)
        assert scenario["unit_confusion"]["unit"] == "area" and names == test_areas
        np.testing.assert_array_equal(counts.sum(0), np.asarray(scenario["confusion_matrix"]))
        assert (counts.sum(axis=(1, 2)) > 0).all()


@pytest.mark.parametrize("name", ["random-drop", "pixel-drop"])
def test_per_sample_protocols_give_unit_matrices_consistent_with_their_scenario(area_store, tmp_path, name):
    """Availability drawn per window (areas) or per tile (tile stores) stays inside one unit."""
    tiles = tmp_path / "tiles.h5"
    write_area_store(tiles, with_areas=False)
    for path, kind in ((area_store, "area"), (tiles, "tile")):
        window = {"window": 16, "stride": 8} if kind == "area" else {}
        result = evaluate(linear_fusion(), path, _protocol(name, **window), show_progress=False)
        for scenario in result.scenarios:
            assert scenario["unit_confusion"]["unit"] == kind
            names, counts = units_of(scenario)
            np.testing.assert_array_equal(counts.sum(0), np.asarray(scenario["confusion_matrix"]))
            if "patterns" in scenario:
                assert sum(scenario["patterns"].values()) > 0


# -- version 1 and the leaderboard check --------------------------------------------------------------------


def test_version_1_records_still_load_and_newer_ones_ask_for_an_upgrade(tmp_path):
    from mmbench.leaderboard.collect import collect_records

    loaded, skipped = collect_records([REPO / "docs" / "results" / "records"])
    assert loaded and not skipped
    version_1 = [item for item in loaded if item.record["schema_version"] == 1]
    assert version_1, "the committed version-1 records are the compatibility fixture"
    for item in version_1:
        assert record_unit_confusion(item.record) is None
    old = minimal_record()
    old["schema_version"] = 1
    validate_record(old)
    future = minimal_record()
    future["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(RecordError, match="upgrade mmbench"):
        validate_record(future)


@pytest.mark.parametrize("fmt", ["json", "md", "html"])
def test_the_board_still_renders_the_committed_version_1_records(capsys, fmt):
    code = main(["leaderboard", str(REPO / "docs" / "results" / "records"), "--check", "--format", fmt])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "stars" in out.out and "check passed" in out.err


def _record_with_units() -> dict:
    record = minimal_record()
    scenario = copy.deepcopy(SCENARIO)
    scenario["unit_confusion"] = encode_unit_confusion(
        "tile", ["a", "b"], np.array([[[2, 1], [0, 0]], [[1, 0], [0, 2]]])
    )
    record["scenarios"] = [scenario]
    return record


def test_a_version_2_record_with_units_validates_and_its_matrices_sum(tmp_path):
    record = _record_with_units()
    validate_record(record)
    assert check_unit_confusion(record["scenarios"][0]) is None
    broken = copy.deepcopy(record)
    broken["scenarios"][0]["unit_confusion"]["unit"] = "pixel"
    with pytest.raises(RecordError, match="scenarios/0/unit_confusion"):
        validate_record(broken)


def test_leaderboard_check_catches_an_edited_unit_matrix(trained, tmp_path, capsys):
    path, record = trained
    runs = tmp_path / "runs"
    good = runs / "good" / "result.json"
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps(record))
    assert main(["leaderboard", str(runs), "--check", "--format", "json"]) == 0
    capsys.readouterr()
    edited = copy.deepcopy(record)
    scenario = edited["scenarios"][0]
    names, counts = units_of(scenario)
    counts[0, 0, 0] += 5  # one unit's count changed; the scenario matrix and metrics left as they were
    scenario["unit_confusion"] = encode_unit_confusion("tile", names, counts)
    bad = runs / "bad" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps(edited))
    code = main(["leaderboard", str(runs), "--check", "--format", "json"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("mismatch") and "unit_confusion" in line]
    assert len(lines) == 1 and str(bad) in lines[0] and "does not sum to confusion_matrix" in lines[0]
    assert str(good) not in err.replace(str(bad), "")


@pytest.mark.parametrize("kind", ["area", "tile"])
def test_a_unit_matrix_is_what_scoring_that_unit_alone_gives(area_store, tmp_path, kind):
    """Pixels are attributed to the right unit: the first unit of a full evaluation equals an evaluation of that
    unit alone (`limit_tiles=1` keeps the first tile, or the first whole area), and its mIoU (metrics.py) too."""
    path = area_store
    if kind == "tile":
        path = tmp_path / "tiles.h5"
        write_area_store(path, with_areas=False)
    window = {"window": 16, "stride": 8} if kind == "area" else {}
    full = evaluate(linear_fusion(), path, _protocol("subsets", **window), show_progress=False)
    alone = evaluate(linear_fusion(), path, _protocol("subsets", **window), show_progress=False, limit_tiles=1)
    for whole, single in zip(full.scenarios, alone.scenarios, strict=True):
        names, counts = units_of(whole)
        (name,), (matrix,) = units_of(single)
        assert name == names[0] and len(names) > 1
        np.testing.assert_array_equal(counts[0], matrix)
        np.testing.assert_array_equal(matrix, np.asarray(single["confusion_matrix"]))
        classes = list(single["metrics"]["per_class"])
        assert compute_metrics(counts[0], classes)["miou"] == single["metrics"]["miou"]


def test_weights_sha256_names_the_weights_not_the_file(tmp_path):
    """Same weights saved with configs that differ by one key: the file hashes differ (the config is stored beside
    the weights), the weights hash does not; one changed value changes it (docs/run-record.md)."""
    import torch

    from mmbench.records.fingerprint import file_sha256, weights_sha256

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    state = model.state_dict()
    for name, config in (("a.ckpt", {"width": 8}), ("b.ckpt", {"width": 8, "decoder_norm": "per_branch"})):
        torch.save({"config": config, "model": state}, tmp_path / name)
    assert file_sha256(tmp_path / "a.ckpt", use_cache=False) != file_sha256(tmp_path / "b.ckpt", use_cache=False)
    loaded = [torch.load(tmp_path / name, weights_only=True)["model"] for name in ("a.ckpt", "b.ckpt")]
    assert weights_sha256(loaded[0]) == weights_sha256(loaded[1]) == weights_sha256(dict(reversed(state.items())))
    changed = {name: value.clone() for name, value in state.items()}
    changed["0.weight"].view(-1)[0] += 1e-6
    assert weights_sha256(changed) != weights_sha256(state)
    recast = {name: value.double() if value.is_floating_point() else value for name, value in state.items()}
    assert weights_sha256(recast) != weights_sha256(state)  # same values, other dtype: other weights


def test_weights_sha256_covers_extra_state_and_every_tensor_kind():
    """A module's non-tensor extra state (nn.Module.get_extra_state) is part of its weights: equal extra state keeps
    the hash, a changed one changes it; bool and 0-dim tensors hash by their bytes like any other."""
    import torch

    from mmbench.records.fingerprint import weights_sha256

    class WithExtraState(torch.nn.Module):
        def __init__(self, extra: dict) -> None:
            super().__init__()
            self.extra = extra
            self.register_buffer("mask", torch.tensor([True, False, True]))
            self.register_buffer("scale", torch.tensor(2.0))

        def get_extra_state(self) -> dict:
            return self.extra

        def set_extra_state(self, state: dict) -> None:
            self.extra = state

    state = WithExtraState({"momentum": 0.1, "classes": [0, 2]}).state_dict()
    assert "_extra_state" in state
    assert weights_sha256(state) == weights_sha256(WithExtraState({"momentum": 0.1, "classes": [0, 2]}).state_dict())
    assert weights_sha256(state) != weights_sha256(WithExtraState({"momentum": 0.2, "classes": [0, 2]}).state_dict())
    flipped = dict(state, mask=torch.tensor([True, True, True]))
    assert weights_sha256(flipped) != weights_sha256(state)
    rescaled = dict(state, scale=torch.tensor(3.0))
    assert weights_sha256(rescaled) != weights_sha256(state)
