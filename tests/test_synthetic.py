"""The synthetic benchmark: deterministic bytes, ISPRS-like imbalance, and the documented rule that
every modality carries information the others lack."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mmbench.data.store_reader import TileStore
from mmbench.datasets.synthetic import (
    BUILDING,
    CAR,
    CLASSES,
    CLUTTER,
    IMPERVIOUS,
    LOW_VEGETATION,
    SURFACE_KINDS,
    TREE,
    SyntheticConfig,
    erode_labels,
    generate_tile,
    write_synthetic,
)
from mmbench.datasets.synthetic_probes import class_f1

SMALL = SyntheticConfig(tiles=18, size=128)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synth") / "small.h5", SMALL)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_seed_gives_byte_identical_files(tmp_path, small_store):
    again = write_synthetic(tmp_path / "again.h5", SMALL)
    assert sha256(again) == sha256(small_store)
    other = write_synthetic(tmp_path / "other.h5", SyntheticConfig(tiles=18, size=128, seed=1))
    assert sha256(other) != sha256(small_store)


def test_store_layout_and_isprs_like_imbalance(small_store):
    with TileStore(small_store) as store:
        assert store.modality_names == ("optical", "dsm", "sar")
        assert store.modalities["optical"].bands == ("IR", "R", "G")
        assert store.label_variants == ("full", "eroded")
        assert store.classes == CLASSES
        parts = store.splits["default"]
        assert [len(parts[p]) for p in ("train", "val", "test")] == [12, 3, 3]
        counts = store.class_histogram("full", np.arange(store.num_tiles))
        assert list(store.verify()) == []
    share = counts[:-1] / counts[:-1].sum()
    assert counts[-1] == 0
    for minority in (CAR, CLUTTER):
        assert 0.005 < share[minority] < 0.03, f"{CLASSES[minority]}: {share[minority]:.3%}"
    for majority in (IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE):
        assert share[majority] > 0.1


def test_erosion_ignores_a_band_around_boundaries():
    label = np.zeros((9, 9), dtype=np.uint8)
    label[:, 5:] = 1
    eroded = erode_labels(label, radius=1)
    assert (eroded[:, 4:6] == 255).all()
    assert (eroded[:, :4] == 0).all() and (eroded[:, 6:] == 1).all()
    assert (erode_labels(label, radius=0) == label).all()


def test_physics_of_each_modality():
    scene = generate_tile(np.random.default_rng(7), 192)
    label, optical, dsm, sar = scene["label"], scene["optical"].astype(float), scene["dsm"][0], scene["sar"][0]
    ground = np.median(dsm[(label == IMPERVIOUS) | (label == LOW_VEGETATION)])
    assert np.median(dsm[label == BUILDING]) - ground > 4
    assert np.median(dsm[label == TREE]) - ground > 2
    infrared = optical[0]
    # Vegetation is bright in infrared, pavement is not; roofs look like pavement, trees like grass.
    assert infrared[label == LOW_VEGETATION].mean() - infrared[label == IMPERVIOUS].mean() > 50
    assert abs(infrared[label == TREE].mean() - infrared[label == LOW_VEGETATION].mean()) < 10
    assert abs(infrared[label == BUILDING].mean() - infrared[label == IMPERVIOUS].mean()) < 30
    assert np.median(sar[label == CAR]) - np.median(sar[label == IMPERVIOUS]) > 6


def test_losing_each_modality_costs_the_classes_it_alone_explains(small_store):
    """The generator's contract, checked with a classifier that cannot cheat by learning shapes.
    (SAR's unique class, hidden clutter, is checked directly in the next test: one Gaussian per class
    cannot model clutter's two modes, dark visible blobs and SAR-bright hidden ones.)"""
    with TileStore(small_store) as store:
        full = class_f1(store, ("optical", "dsm", "sar"))
        no_optical = class_f1(store, ("dsm", "sar"))
        no_dsm = class_f1(store, ("optical", "sar"))
    # Without optical, grass and pavement blur together.
    assert full[LOW_VEGETATION] - no_optical[LOW_VEGETATION] > 0.1
    assert full[IMPERVIOUS] - no_optical[IMPERVIOUS] > 0.1
    # Without the DSM, roofs look like pavement and trees like grass.
    assert full[BUILDING] - no_dsm[BUILDING] > 0.2
    assert full[TREE] - no_dsm[TREE] > 0.1
    assert full[CAR] - no_optical[CAR] > 0.2


def _separability(a: np.ndarray, b: np.ndarray) -> float:
    """d' between two pixel populations: mean gap over pooled standard deviation."""
    return abs(a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)


def test_hidden_clutter_is_visible_only_in_sar():
    """Half the clutter is metal debris in grass: only SAR separates it from low vegetation."""
    hidden_kind, grass_kind = SURFACE_KINDS.index("hidden_clutter"), SURFACE_KINDS.index("grass")
    hidden = {"optical": [], "dsm": [], "sar": []}
    grass = {"optical": [], "dsm": [], "sar": []}
    for tile in range(6):
        scene = generate_tile(np.random.default_rng([3, tile]), 128)
        ground = np.percentile(scene["dsm"][0], 5)
        sar = scene["sar"][0]
        padded = np.pad(sar, 1, mode="edge")
        smoothed = sum(padded[dy : dy + 128, dx : dx + 128] for dy in range(3) for dx in range(3)) / 9
        values = {"optical": scene["optical"][0].astype(float), "dsm": scene["dsm"][0] - ground, "sar": smoothed}
        for name, array in values.items():
            hidden[name].append(array[scene["surface"] == hidden_kind])
            grass[name].append(array[scene["surface"] == grass_kind])
    d = {name: _separability(np.concatenate(hidden[name]), np.concatenate(grass[name])) for name in hidden}
    assert d["sar"] > 2.5, d
    assert d["optical"] < 0.2 and d["dsm"] < 0.75, d
