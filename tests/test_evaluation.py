"""The evaluation engine and the protocols, end to end on a small synthetic store with a test-only
method: scenario sets, aggregates, per-sample and pixel-wise schedules, sliding windows, the split
interface, and the rule that a missing modality is never read."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.engine.checkpoint import save_checkpoint
from mmbench.errors import ConfigError
from mmbench.evaluation.engine import evaluate
from mmbench.evaluation.tiling import WindowRegion, average_over_windows, window_starts
from mmbench.protocol import bernoulli_expectation
from mmbench.records import read_record
from mmbench.records.fingerprint import weights_sha256

MODALITIES = {"optical": 3, "dsm": 1, "sar": 1}
CLASSES = ["impervious_surface", "building", "low_vegetation", "tree", "car", "clutter"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("eval") / "s.h5", SyntheticConfig(tiles=12, size=64))


def make_method(plain: bool = False, kernel: int = 3, seed: int = 0, modalities=MODALITIES):
    from tiny_methods import TinyFusion, TinyFusionPlain

    torch.manual_seed(seed)
    cls = TinyFusionPlain if plain else TinyFusion
    return cls(modalities, len(CLASSES), {"width": 8, "kernel": kernel})


def protocol(name: str, **overrides):
    from mmbench.config import load_defaults
    from mmbench.registry import PROTOCOLS

    spec = PROTOCOLS.get(name)
    return spec.load()({**load_defaults(spec.defaults, name), **overrides})


def matrices(result):
    return {entry["name"]: entry["confusion_matrix"] for entry in result.scenarios}


def test_last1_and_missing1_and_full_scenarios(store):
    method = make_method()
    last1 = evaluate(method, store, protocol("last1"))
    assert [e["name"] for e in last1.scenarios] == ["optical only", "dsm only", "sar only"]
    assert [e["available"] for e in last1.scenarios] == [["optical"], ["dsm"], ["sar"]]
    assert all(e["missing"] == 2 for e in last1.scenarios)
    mious = [e["metrics"]["miou"] for e in last1.scenarios]
    aggregate = last1.aggregate
    assert aggregate["mean"]["miou"] == pytest.approx(sum(mious) / 3)
    assert aggregate["worst"]["miou"] == min(mious)
    assert aggregate["worst"]["scenario"] == last1.scenarios[mious.index(min(mious))]["name"]
    total = sum(sum(row) for row in last1.scenarios[0]["confusion_matrix"])
    assert total == 2 * 64 * 64  # the test part: 2 tiles, full labels have no ignore
    missing1 = evaluate(method, store, protocol("missing1"))
    assert [e["name"] for e in missing1.scenarios] == ["optical+dsm", "optical+sar", "dsm+sar"]
    full = evaluate(method, store, protocol("full"))
    assert [e["name"] for e in full.scenarios] == ["optical+dsm+sar"]
    assert full.aggregate["miou"] == full.scenarios[0]["metrics"]["miou"]
    assert last1.settings["ignore_index"] == 255 and last1.settings["part"] == "test"
    assert last1.settings["classes_scored"] == CLASSES
    # the synthetic store has no area metadata: scored tile by tile, whole 64 px tiles
    assert last1.settings["evaluation_unit"] == "tile"
    assert last1.settings["sliding_window"] == {"size": 64, "stride": 64}
    assert last1.settings["conversion_tiling"] == {"tile_size": 64, "stride": None}


def test_subsets_mean_and_bernoulli_expectation(store):
    result = evaluate(make_method(), store, protocol("subsets"))
    assert len(result.scenarios) == 7
    assert [e["missing"] for e in result.scenarios] == [0, 1, 1, 1, 2, 2, 2]
    values = [e["metrics"]["miou"] for e in result.scenarios]
    missing = [e["missing"] for e in result.scenarios]
    assert result.aggregate["mean"]["miou"] == pytest.approx(sum(values) / 7)
    for p in (0.2, 0.1, 0.05):
        weights = [p**k * (1 - p) ** (3 - k) for k in missing]
        expected = sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)
        assert result.aggregate["expectation"][f"p={p:g}"]["miou"] == pytest.approx(expected)
    # E(p) tends to the full-set value as p -> 0
    assert bernoulli_expectation(values, missing, 3, 1e-9) == pytest.approx(values[0])


def test_the_split_interface_gives_the_same_numbers_as_whole_forward_passes(store):
    split = evaluate(make_method(), store, protocol("subsets"))
    plain = evaluate(make_method(plain=True), store, protocol("subsets"))
    assert make_method().has_split_interface and not make_method(plain=True).has_split_interface
    assert matrices(split) == matrices(plain)


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("name", ["last1", "random-drop", "subsets"])
def test_missing_modalities_are_never_read(store, name, plain):
    """NaN in every missing input (or feature row) must change nothing: the engine would raise on NaN logits."""
    zeros = evaluate(make_method(plain=plain), store, protocol(name))
    nans = evaluate(make_method(plain=plain), store, protocol(name), missing_fill=math.nan)
    assert matrices(zeros) == matrices(nans)


def test_a_method_that_reads_missing_inputs_is_caught(store):
    from tiny_methods import TinyFusionPlain

    class Leaky(TinyFusionPlain):
        def forward(self, inputs, available):
            return super().forward(inputs, torch.ones_like(available))  # ignores availability

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="NaN/inf logits in scenario 'optical only'"):
        evaluate(Leaky(MODALITIES, 6, {"width": 8, "kernel": 3}), store, protocol("last1"), missing_fill=math.nan)


def test_random_drop_is_seeded_per_sample_and_never_drops_everything(store):
    first = evaluate(make_method(), store, protocol("random-drop", part="train", repeats=3))
    again = evaluate(make_method(), store, protocol("random-drop", part="train", repeats=3))
    other = evaluate(make_method(), store, protocol("random-drop", part="train", repeats=3, seed=1))
    assert [e["patterns"] for e in first.scenarios] == [e["patterns"] for e in again.scenarios]
    assert [e["patterns"] for e in first.scenarios] != [e["patterns"] for e in other.scenarios]
    for entry in first.scenarios:
        assert sum(entry["patterns"].values()) == 8 and "" not in entry["patterns"]
        assert entry["drop_probability"] == 0.5
    assert len({json.dumps(e["patterns"], sort_keys=True) for e in first.scenarios}) > 1, "repeats must differ"
    stats = first.aggregate["miou"]
    values = [e["metrics"]["miou"] for e in first.scenarios]
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(sum(values) / 3)
    assert stats["std"] == pytest.approx(torch.tensor(values, dtype=torch.float64).std().item())


def test_pixel_drop_degrades_without_removing(store):
    result = evaluate(make_method(), store, protocol("pixel-drop", ratios=[0.5, 0.75]))
    names = [e["name"] for e in result.scenarios]
    assert names[0] == "intact" and len(names) == 1 + 2 * 6
    assert "dsm+sar degraded r=0.5" in names
    degraded = next(e for e in result.scenarios if e["name"] == "dsm+sar degraded r=0.5")
    assert degraded["available"] == ["optical", "dsm", "sar"] and degraded["corrupted"] == {"dsm": 0.5, "sar": 0.5}
    full = evaluate(make_method(), store, protocol("full"))
    assert result.scenarios[0]["confusion_matrix"] == full.scenarios[0]["confusion_matrix"]
    assert set(result.aggregate["per_ratio"]) == {"r=0.5", "r=0.75"}
    assert result.aggregate["per_ratio"]["r=0.5"]["expectation"]["p=0.2"]["miou"] is not None
    again = evaluate(make_method(), store, protocol("pixel-drop", ratios=[0.5, 0.75]))
    assert matrices(again) == matrices(result)


def test_minority_classes_come_from_the_training_split(store):
    result = evaluate(make_method(), store, protocol("minority"))
    aggregate = result.aggregate
    assert aggregate["minority_classes"] == ["car", "clutter"]
    assert set(aggregate["per_scenario"]) == {"optical only", "dsm only", "sar only"}
    assert set(aggregate["per_scenario"]["dsm only"]["f1"]) == {"car", "clutter"}
    assert aggregate["base"]["protocol"] == "last1"
    assert result.settings["minority_classes"] == ["car", "clutter"]
    assert 0 < aggregate["train_class_frequencies"]["car"] < 0.05


def test_minority_classes_are_only_scored_classes(store):
    """ISPRS scoring leaves clutter out of the means; it must then not be a minority class either."""
    result = evaluate(make_method(), store, protocol("minority", classes_scored=CLASSES[:5]))
    assert result.aggregate["minority_classes"] == ["car"] == result.settings["minority_classes"]
    assert set(result.aggregate["per_scenario"]["dsm only"]["f1"]) == {"car"}
    per_class = result.scenarios[0]["metrics"]["per_class"]
    assert result.aggregate["per_scenario"]["optical only"]["minority_miou"] == per_class["car"]["iou"]
    assert result.aggregate["train_class_frequencies"]["clutter"] < 0.05  # rare, but not scored
    with pytest.raises(ConfigError, match="no scored class is below 5.0% of the training pixels"):
        evaluate(make_method(), store, protocol("minority", classes_scored=CLASSES[:4]))


def test_sliding_windows_match_whole_tiles_for_a_pixelwise_method(store):
    """A 1x1-conv method has no context, so windows (with overlap averaging) must not change its output."""
    whole = evaluate(make_method(kernel=1), store, protocol("last1"))
    windowed = evaluate(make_method(kernel=1), store, protocol("last1", window=40, stride=24, batch_size=1))
    assert matrices(whole) == matrices(windowed)
    contextual = evaluate(make_method(kernel=3), store, protocol("last1", window=40, stride=24))
    assert contextual.settings["window"] == 40 and contextual.settings["stride"] == 24


@pytest.mark.parametrize(("height", "width", "window", "stride"), [(10, 7, 4, 3), (9, 9, 4, 4), (5, 6, None, None)])
def test_average_over_windows_averages_each_pixel_over_the_windows_covering_it(height, width, window, stride):
    """Each window's output is its own constant (its call index): a pixel must get the mean of the constants of
    exactly the windows that cover it, counted here by brute force from window_starts."""
    calls: list[WindowRegion] = []

    def constant_per_window(region: WindowRegion) -> list[torch.Tensor]:
        calls.append(region)
        rows = len(range(height)[region[0]])
        cols = len(range(width)[region[1]])
        return [torch.full((2, 3, rows, cols), float(len(calls)), dtype=torch.float64)]

    (averaged,) = average_over_windows(height, width, window, stride, constant_per_window)
    size_h, size_w = min(window or height, height), min(window or width, width)
    starts = [
        (top, left)
        for top in window_starts(height, size_h, stride or size_h)
        for left in window_starts(width, size_w, stride or size_w)
    ]
    assert len(calls) == len(starts) and averaged.shape == (2, 3, height, width)
    for y in range(height):
        for x in range(width):
            covering = [
                index + 1
                for index, (top, left) in enumerate(starts)
                if top <= y < top + size_h and left <= x < left + size_w
            ]
            assert covering and averaged[1, 2, y, x].item() == pytest.approx(sum(covering) / len(covering))


def test_classes_scored_changes_the_means_only(store):
    everything = evaluate(make_method(), store, protocol("full"))
    without = evaluate(make_method(), store, protocol("full", classes_scored=CLASSES[:5]))
    assert everything.scenarios[0]["confusion_matrix"] == without.scenarios[0]["confusion_matrix"]
    per_class = everything.scenarios[0]["metrics"]["per_class"]
    expected = [per_class[name]["iou"] for name in CLASSES[:5] if per_class[name]["iou"] is not None]
    assert without.scenarios[0]["metrics"]["miou"] == pytest.approx(sum(expected) / len(expected))


def _checkpoint(tmp_path, store, method=None, classes=CLASSES, modalities=MODALITIES):
    method = method or make_method()
    path = tmp_path / "model.ckpt"
    save_checkpoint(
        path,
        method={"name": "tiny-fusion", "version": "1"},
        config={"run": {}, "method": {"width": 8, "kernel": 3}, "protocol": {}, "dataset": {}},
        dataset={
            "name": "synthetic",
            "fingerprint": None,
            "classes": list(classes),
            "modalities": dict(modalities),
            "ignore_index": 255,
        },
        model=method,
    )
    return path


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_mmbench_eval_writes_a_complete_record(capsys, tmp_path, store, tiny_methods):
    checkpoint = _checkpoint(tmp_path, store)
    code, out, err = cli(
        capsys, "eval", str(checkpoint), "-p", "last1", "-d", str(store), "--out", str(tmp_path / "runs"), "--seed", "3"
    )
    assert code == 0, err
    assert "optical only" in out and "mean" in out
    (path,) = (tmp_path / "runs" / "s" / "last1" / "tiny-fusion").glob("*/result.json")
    record = read_record(path)
    assert [s["name"] for s in record["scenarios"]] == ["optical only", "dsm only", "sar only"]
    assert record["aggregate"]["worst"]["scenario"] in {"optical only", "dsm only", "sar only"}
    assert record["method"]["params"] == sum(p.numel() for p in make_method().parameters())
    assert record["method"]["checkpoint"]["sha256"].startswith("sha256:")
    assert record["method"]["checkpoint"]["weights_sha256"] == weights_sha256(torch.load(checkpoint)["model"])
    assert record["protocol"]["settings"]["label_variant"] == "full"
    assert record["config"]["method"] == {"width": 8, "kernel": 3}
    direct = evaluate(make_method(), store, protocol("last1"))
    assert [s["confusion_matrix"] for s in record["scenarios"]] == [s["confusion_matrix"] for s in direct.scenarios]


@pytest.mark.parametrize(
    ("build", "argv", "message"),
    [
        (lambda t, s: _checkpoint(t, s, classes=CLASSES[:5]), [], "trained on 'synthetic' with 5 classes"),
        (
            lambda t, s: _checkpoint(
                t, s, method=make_method(modalities={"optical": 3, "dsm": 1}), modalities={"optical": 3, "dsm": 1}
            ),
            [],
            "trained on modalities optical:3, dsm:1",
        ),
        (lambda t, s: _checkpoint(t, s), ["--set", "protocol.modalities=[optical, lidar]"], "needs modality 'lidar'"),
        (lambda t, s: _checkpoint(t, s), ["--set", "protocol.label_variant=noBoundary"], "no label variant"),
        (lambda t, s: _checkpoint(t, s), ["--set", "protocol.split=official"], "no split 'official'"),
        (lambda t, s: _checkpoint(t, s), ["--set", "method.width=4"], "method.width cannot be changed"),
        (lambda t, s: _checkpoint(t, s, method=make_method(kernel=1)), [], "its weights do not fit"),
        (lambda t, s: (t / "junk.ckpt").write_bytes(b"junk") and t / "junk.ckpt", [], "cannot be read"),
        (lambda t, s: t / "absent.ckpt", [], "does not exist"),
        (lambda t, s: _checkpoint(t, s), ["--set", "protocol.window=abc"], "protocol.window='abc'"),
        (
            lambda t, s: _checkpoint(t, s),
            ["--set", "protocol.window=65"],
            "protocol.window=65 is larger than the evaluation unit, the 64x64 px tiles",
        ),
        (lambda t, s: _checkpoint(t, s), ["--set", "protocol.classes_scored=[car, boat]"], "names 'boat'"),
        (lambda t, s: _checkpoint(t, s), ["--set", "protocol.classes_scored=[]"], "a non-empty list"),
    ],
)
def test_bad_evaluations_exit_2_with_one_line_and_write_nothing(
    capsys, tmp_path, store, tiny_methods, build, argv, message
):
    checkpoint = build(tmp_path, store)
    code, _, err = cli(
        capsys, "eval", str(checkpoint), "-p", "last1", "-d", str(store), "--out", str(tmp_path / "runs"), *argv
    )
    assert code == 2, err
    assert message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()
