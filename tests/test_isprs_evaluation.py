"""ISPRS stores from the official layouts, evaluated by area: the ISPRS preset (eroded labels, clutter out of the
means, 512/256 windows over whole areas) and the pixel counts of stitched versus tile-by-tile scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from converter_fixtures import make_potsdam, make_vaihingen

from mmbench.cli.main import main
from mmbench.config import read_config_source, resolve_run_config
from mmbench.data.store_reader import TileStore
from mmbench.datasets.converters import convert
from mmbench.datasets.converters.isprs import CLASSES, EVALUATION_PRESET
from mmbench.engine.checkpoint import save_checkpoint
from mmbench.evaluation.engine import evaluate
from mmbench.records import read_record

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = REPO_ROOT / "datasets" / "converters" / "isprs_protocol.yaml"
MODALITIES = {"optical": 3, "dsm": 1}


def tiny_fusion(channels=MODALITIES):
    from tiny_methods import TinyFusion

    torch.manual_seed(0)
    return TinyFusion(channels, len(CLASSES), {"width": 8, "kernel": 3})


def protocol(name: str, **overrides):
    from mmbench.config import load_defaults
    from mmbench.registry import PROTOCOLS

    spec = PROTOCOLS.get(name)
    return spec.load()({**load_defaults(spec.defaults, name), **overrides})


def valid_pixels(expected, sources, variant) -> int:
    return sum(int(np.count_nonzero(expected[source][variant] != 255)) for source in sources)


def tile_by_tile_pixels(path: Path, variant: str, part: str = "test") -> int:
    with TileStore(path) as store:
        return sum(
            int(np.count_nonzero(store.read_label(variant, int(i)) != 255)) for i in store.split_indices(None, part)
        )


def scored(result) -> int:
    return sum(map(sum, result.scenarios[0]["confusion_matrix"]))


def test_the_isprs_preset_is_the_field_convention(tmp_path):
    section = read_config_source(PRESET)["protocol"]
    assert section == {
        "label_variant": "eroded",
        "classes_scored": ["impervious_surface", "building", "low_vegetation", "tree", "car"],
        "window": 512,
        "stride": 256,
    }
    assert section["classes_scored"] == list(CLASSES[:-1]) and CLASSES[-1] == "clutter"
    # from an installed copy: a one-line file naming the packaged preset
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"_base_: {EVALUATION_PRESET}\nprotocol:\n  stride: 512\n")
    assert read_config_source(mine)["protocol"] == {**section, "stride": 512}
    # every key is a protocol setting whose value passes the protocol's checks, for any protocol
    from mmbench.registry import DATASETS, METHODS, PROTOCOLS

    for name in ("full", "last1", "minority"):
        specs = {"method": METHODS.get("stars"), "protocol": PROTOCOLS.get(name), "dataset": DATASETS.get("synthetic")}
        resolved = resolve_run_config(specs, config_file=PRESET).section("protocol")
        assert {key: resolved[key] for key in section} == section


@pytest.fixture(scope="module")
def vaihingen_512(tmp_path_factory):
    """Vaihingen-like areas larger than one 512 px window, sizes not multiples of it (area 2 is the test area)."""
    root = tmp_path_factory.mktemp("v512")
    fixture = make_vaihingen(root / "src", ndsm=False, areas={1: (530, 560), 2: (540, 700), 11: (515, 520)})
    convert("isprs-vaihingen", fixture.root, root / "v.h5", tile_size=512, codec="lzf")
    return root / "v.h5", fixture


def test_the_isprs_preset_scores_whole_areas_on_eroded_labels_without_clutter(
    capsys, tmp_path, vaihingen_512, tiny_methods
):
    store, fixture = vaihingen_512
    checkpoint = tmp_path / "model.ckpt"
    save_checkpoint(
        checkpoint,
        method={"name": "tiny-fusion", "version": "1"},
        config={"run": {}, "method": {"width": 8, "kernel": 3}, "protocol": {}, "dataset": {}},
        dataset={
            "name": "isprs-vaihingen",
            "fingerprint": None,
            "classes": list(CLASSES),
            "modalities": MODALITIES,
            "ignore_index": 255,
        },
        model=tiny_fusion(),
    )
    out = tmp_path / "runs"
    code = main(["eval", str(checkpoint), "-p", "full", "-d", str(store), "--config", str(PRESET), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (path,) = out.glob("*/full/tiny-fusion/*/result.json")
    record = read_record(path)
    settings = record["protocol"]["settings"]
    assert settings["evaluation_unit"] == "area" and settings["label_variant"] == "eroded"
    assert settings["sliding_window"] == {"size": 512, "stride": 256}
    assert settings["conversion_tiling"] == {"tile_size": 512, "stride": 512}
    assert settings["classes_scored"] == list(CLASSES[:-1])
    (scenario,) = record["scenarios"]
    assert sum(map(sum, scenario["confusion_matrix"])) == valid_pixels(fixture.expected, ["area2"], "eroded")
    assert len(scenario["confusion_matrix"]) == 6  # clutter stays in the stored matrix
    ious = [scenario["metrics"]["per_class"][name]["iou"] for name in CLASSES[:-1]]
    assert scenario["metrics"]["miou"] == pytest.approx(np.mean([v for v in ious if v is not None]))


@pytest.mark.parametrize(
    ("fmt", "build", "sources", "optical", "stride"),
    [
        ("isprs-vaihingen", lambda root: make_vaihingen(root, ndsm=False), ["area2"], 3, 16),
        ("isprs-vaihingen", lambda root: make_vaihingen(root, ndsm=False), ["area2"], 3, 8),
        ("isprs-potsdam", lambda root: make_potsdam(root, ndsm=False), ["2_13"], 4, 16),
        ("isprs-potsdam", lambda root: make_potsdam(root, ndsm=False), ["2_13"], 4, 8),
    ],
)
def test_official_layouts_are_scored_once_per_area_pixel(tmp_path, fmt, build, sources, optical, stride):
    """Converted from the official layouts at any stride, the test areas are scored once per pixel; scoring the
    stored tiles one by one would count the overlaps of the shifted-back last row and column again."""
    fixture = build(tmp_path / "src")
    path = tmp_path / "s.h5"
    convert(fmt, fixture.root, path, tile_size=16, stride=stride, codec="lzf")
    for variant in ("full", "eroded"):
        result = evaluate(tiny_fusion({"optical": optical, "dsm": 1}), path, protocol("full", label_variant=variant))
        assert scored(result) == valid_pixels(fixture.expected, sources, variant)
        assert tile_by_tile_pixels(path, variant) > scored(result)
