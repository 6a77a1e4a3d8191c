"""Whole-area evaluation: areas cut into overlapping tiles are stitched back, every area pixel is scored once,
the result equals predicting the whole area at once, the unit is recorded, a window larger than the unit is
refused with one line and exit code 2, and stores without area metadata keep tile-by-tile scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from area_helpers import (
    AREAS,
    CHANNELS,
    CLASSES,
    linear_fusion,
    tile_by_tile_pixels,
    whole_area_matrix,
    write_area_store,
)

from mmbench.cli.main import main
from mmbench.data.store_reader import TileStore
from mmbench.engine.checkpoint import save_checkpoint
from mmbench.errors import ConfigError
from mmbench.evaluation.engine import evaluate
from mmbench.evaluation.stitching import count_windows
from mmbench.evaluation.units import plan_units
from mmbench.records import read_record


@pytest.fixture(scope="module")
def area_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("areas") / "areas.h5"
    return path, write_area_store(path)


def make_method(kernel: int = 1, plain: bool = False):
    return linear_fusion(kernel=kernel, plain=plain)


def tiny_fusion():
    """The registered test method (tests/tiny_methods.py), for `mmbench eval` of a checkpoint."""
    from tiny_methods import TinyFusion

    torch.manual_seed(0)
    return TinyFusion(CHANNELS, len(CLASSES), {"width": 8, "kernel": 1})


def protocol(name: str, **overrides):
    from mmbench.config import load_defaults
    from mmbench.registry import PROTOCOLS

    spec = PROTOCOLS.get(name)
    return spec.load()({**load_defaults(spec.defaults, name), **overrides})


def matrices(result):
    return {entry["name"]: entry["confusion_matrix"] for entry in result.scenarios}


def scored(result) -> int:
    return sum(map(sum, result.scenarios[0]["confusion_matrix"]))


def valid_pixels(arrays, names) -> int:
    return sum(int(np.count_nonzero(arrays[name]["full"] != 255)) for name in names)


@pytest.mark.parametrize(
    ("window", "stride"),
    [(None, None), (16, 8), (24, 10), (37, None)],
)
@pytest.mark.parametrize("plain", [False, True])
def test_stitched_areas_equal_the_whole_areas_predicted_at_once(area_store, window, stride, plain):
    """A per-pixel (1x1 conv) method gives the same prediction whatever the windows: the stitched confusion
    matrix must be exactly the one of each whole area predicted in one pass, every pixel counted once."""
    path, arrays = area_store
    result = evaluate(make_method(plain=plain), path, protocol("last1", window=window, stride=stride, batch_size=3))
    for entry in result.scenarios:
        expected = whole_area_matrix(make_method(), path, arrays, ["wide", "square"], entry["available"])
        assert entry["confusion_matrix"] == expected, (entry["name"], window, stride)
        assert sum(1 for column in zip(*expected, strict=True) if sum(column)) > 1, "predictions must vary"
    assert scored(result) == valid_pixels(arrays, ["wide", "square"])
    assert scored(result) < tile_by_tile_pixels(path, "test")  # overlapping tiles would count pixels twice


def test_one_window_over_a_whole_area_keeps_all_context(tmp_path):
    """With 3x3 convolutions the output depends on neighbours: one window as large as the area must give the
    whole area's prediction exactly, so tiles are pasted back at the right offsets."""
    path = tmp_path / "square.h5"
    arrays = write_area_store(path, parts={"train": ["train0"], "test": ["square"]})
    method = make_method(kernel=3)
    result = evaluate(method, path, protocol("subsets", window=40, batch_size=1))
    for entry in result.scenarios:
        assert entry["confusion_matrix"] == whole_area_matrix(method, path, arrays, ["square"], entry["available"])
    by_tiles = evaluate(method, path, protocol("subsets", window=16, stride=16))
    assert matrices(by_tiles) != matrices(result), "16 px windows lose context at their borders"
    assert scored(by_tiles) == scored(result) == valid_pixels(arrays, ["square"])


def test_the_unit_and_the_conversion_tiling_are_in_the_settings(area_store, tmp_path):
    path, _ = area_store
    result = evaluate(make_method(), path, protocol("full", window=24, stride=10))
    assert result.settings["evaluation_unit"] == "area"
    assert result.settings["conversion_tiling"] == {"tile_size": 16, "stride": 12}
    assert result.settings["sliding_window"] == {"size": 24, "stride": 10}
    assert result.settings["window"] == 24  # the protocol's own settings stay as configured
    default = evaluate(make_method(), path, protocol("full"))
    assert default.settings["sliding_window"] == {"size": 16, "stride": 16}
    tiles = tmp_path / "tiles.h5"
    write_area_store(tiles, with_areas=False)
    by_tile = evaluate(make_method(), tiles, protocol("full"))
    assert by_tile.settings["evaluation_unit"] == "tile"
    assert by_tile.settings["sliding_window"] == {"size": 16, "stride": 16}


def test_a_store_without_area_metadata_scores_every_stored_tile(tmp_path):
    """Same tiles, no area sizes: every stored tile is scored on its own, overlaps counted once per tile."""
    path = tmp_path / "tiles.h5"
    write_area_store(path, with_areas=False)
    with TileStore(path) as store:
        assert store.areas is None and "area_size" not in store.tile_record(0)
    result = evaluate(make_method(), path, protocol("full"))
    assert scored(result) == tile_by_tile_pixels(path, "test")


def test_windows_larger_than_the_unit_are_refused(area_store, tmp_path):
    path, _ = area_store
    with pytest.raises(
        ConfigError, match=r"protocol.window=38 is larger than the evaluation unit, area 'wide' of 37x45"
    ):
        evaluate(make_method(), path, protocol("full", window=38))
    with pytest.raises(ConfigError, match=r"area 'small' of 16x16 px \(padding included\) in part 'val'"):
        plan_units(path, {"split": "default", "window": 17}, "val")
    tiles = tmp_path / "tiles.h5"
    write_area_store(tiles, with_areas=False)
    with pytest.raises(ConfigError, match=r"protocol.window=17 is larger than the evaluation unit, the 16x16 px tiles"):
        evaluate(make_method(), tiles, protocol("full", window=17))


def test_a_padded_area_counts_its_real_pixels_only(area_store):
    path, arrays = area_store
    result = evaluate(make_method(), path, protocol("full", part="val"))
    assert scored(result) == valid_pixels(arrays, ["small"])  # 9x13 of a 16x16 tile


def test_limited_evaluations_score_whole_areas(area_store):
    path, arrays = area_store
    units = plan_units(path, {"split": "default"}, "test", limit_tiles=2)
    assert [unit.area.name for unit in units.areas] == ["wide"]
    result = evaluate(make_method(), path, protocol("full"), limit_tiles=2)
    assert scored(result) == valid_pixels(arrays, ["wide"]) and result.tiles == units.tiles > 2


def test_random_drop_draws_per_window_and_pixel_drop_per_area_row(area_store):
    path, _ = area_store
    drop = protocol("random-drop", repeats=2, window=16, stride=12)
    first, again = evaluate(make_method(), path, drop), evaluate(make_method(), path, drop)
    windows = count_windows(plan_units(path, drop.config, "test"))
    assert [e["patterns"] for e in first.scenarios] == [e["patterns"] for e in again.scenarios]
    assert all(sum(e["patterns"].values()) == windows for e in first.scenarios)
    # pixel-drop masks belong to area pixels: a per-pixel method sees the same degraded inputs in any layout
    coarse = evaluate(make_method(), path, protocol("pixel-drop", ratios=[0.5], window=16, stride=16))
    fine = evaluate(make_method(), path, protocol("pixel-drop", ratios=[0.5], window=24, stride=7))
    assert matrices(coarse) == matrices(fine)
    assert matrices(coarse)["intact"] != matrices(coarse)["optical degraded r=0.5"]


def test_an_area_split_across_parts_cannot_be_stitched(tmp_path):
    """A part holding only some tiles of an area (possible in a hand-made store) fails in one line."""
    import h5py

    from mmbench.data.store_format import StoreError

    path = tmp_path / "split.h5"
    write_area_store(path, areas={"train0": (30, 34), "wide": (37, 45)}, parts={"train": ["train0"], "test": ["wide"]})
    with h5py.File(path, "r+") as handle:
        test = handle["splits/default/test"][:]
        del handle["splits/default/test"]
        handle["splits/default/test"] = test[1:]
    with pytest.raises(StoreError, match=r"area 'wide' is only partly in split part 'test' \(\d+ of its pixels"):
        evaluate(make_method(), path, protocol("full"))


def _checkpoint(tmp_path, method):
    path = tmp_path / "model.ckpt"
    save_checkpoint(
        path,
        method={"name": "tiny-fusion", "version": "1"},
        config={"run": {}, "method": {"width": 8, "kernel": 1}, "protocol": {}, "dataset": {}},
        dataset={
            "name": "areas",
            "fingerprint": None,
            "classes": list(CLASSES),
            "modalities": dict(CHANNELS),
            "ignore_index": 255,
        },
        model=method,
    )
    return path


def test_mmbench_eval_records_the_area_unit(capsys, tmp_path, area_store, tiny_methods):
    path, arrays = area_store
    checkpoint = _checkpoint(tmp_path, tiny_fusion())
    code = main(["eval", str(checkpoint), "-p", "full", "-d", str(path), "--out", str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr().err
    (record_path,) = (tmp_path / "runs").glob("*/full/tiny-fusion/*/result.json")
    settings = read_record(record_path)["protocol"]["settings"]
    assert settings["evaluation_unit"] == "area"
    assert settings["conversion_tiling"] == {"tile_size": 16, "stride": 12}
    assert sum(map(sum, read_record(record_path)["scenarios"][0]["confusion_matrix"])) == valid_pixels(
        arrays, ["wide", "square"]
    )


def test_mmbench_eval_refuses_a_window_larger_than_an_area_in_one_line(capsys, tmp_path, area_store, tiny_methods):
    path, _ = area_store
    checkpoint = _checkpoint(tmp_path, tiny_fusion())
    out = tmp_path / "runs"
    code = main(
        ["eval", str(checkpoint), "-p", "full", "-d", str(path), "--out", str(out), "--set", "protocol.window=64"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0
    assert "protocol.window=64 is larger than the evaluation unit" in err and "at most 37" in err
    assert not out.exists()


def test_area_metadata_is_in_the_store(area_store):
    path, _ = area_store
    with TileStore(path) as store:
        assert list(store.areas) == list(AREAS)
        assert store.areas["wide"].height == 37 and store.areas["wide"].width == 45
        assert store.tile_record(0)["area_size"] == [30, 34]
        assert list(store.verify()) == []


def test_mmbench_run_refuses_a_window_larger_than_the_unit_before_training(tmp_path, capsys):
    """The check runs when the trainer is built, so no training step is spent before the refusal."""
    from mmbench.cli.main import main
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

    store = write_synthetic(tmp_path / "s.h5", SyntheticConfig(tiles=6, size=64))
    code = main(
        ["run", "unimodal", "-p", "full", "-d", str(store), "--smoke", "--out", str(tmp_path / "runs")]
        + ["--set", "protocol.window=65", "--set", "method.train.crop_size=16"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "protocol.window=65 is larger than the evaluation unit" in err and "\n" not in err
    assert not list((tmp_path / "runs").rglob("train_log.jsonl"))
