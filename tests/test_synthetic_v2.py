"""Synthetic benchmark version 2: version 1 stays byte for byte, redundancy 0 is version 1's arrays, and the
redundancy knob makes each modality's class cues recoverable from the others (datasets/synthetic_couplings.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mmbench.data.store_reader import TileStore
from mmbench.datasets import synthetic_couplings
from mmbench.datasets.synthetic import (
    BUILDING,
    IMPERVIOUS,
    SURFACE_KINDS,
    SyntheticConfig,
    cached_store_path,
    generate_tile,
    write_synthetic,
)
from mmbench.datasets.synthetic_probes import box_mean
from mmbench.records.fingerprint import file_sha256

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "results" / "records"


def _v1_fingerprints() -> set[str]:
    """The store fingerprints the committed version-1 records carry."""
    fingerprints = set()
    for path in RECORDS.rglob("*.json"):
        dataset = json.loads(path.read_text()).get("dataset") or {}
        if str(dataset.get("path", "")).endswith("synthetic-v1-s0-n48-px192-blosc-lz4.h5"):
            fingerprints.add(dataset["fingerprint"])
    return fingerprints


def test_version_1_default_store_keeps_the_committed_records_fingerprint(tmp_path):
    fingerprints = _v1_fingerprints()
    assert len(fingerprints) == 1, fingerprints  # every committed record used the same store
    store = write_synthetic(tmp_path / "v1.h5", SyntheticConfig())
    assert file_sha256(store) in fingerprints
    assert cached_store_path(SyntheticConfig()).name == "synthetic-v1-s0-n48-px192-blosc-lz4.h5"


@pytest.mark.parametrize("tile", [0, 5])
def test_redundancy_0_renders_version_1_arrays(tile):
    v1 = generate_tile(np.random.default_rng([0, tile]), 128)
    v2 = generate_tile(np.random.default_rng([0, tile]), 128, 0.0, np.random.default_rng([0, tile, 2]))
    for key in ("label", "optical", "dsm", "sar", "surface", "ground"):
        assert v1[key].dtype == v2[key].dtype
        assert np.array_equal(v1[key], v2[key]), key
    # ... and a positive redundancy changes every modality but not the scene.
    coupled = generate_tile(np.random.default_rng([0, tile]), 128, 0.5, np.random.default_rng([0, tile, 2]))
    assert np.array_equal(v1["label"], coupled["label"])
    for key in ("optical", "dsm", "sar"):
        assert not np.array_equal(v1[key], coupled[key]), key


def test_coupling_surface_indices_match_the_generator():
    names = ("grass", "pavement_or_roof", "tree", "car", "visible_clutter", "hidden_clutter")
    assert SURFACE_KINDS == names
    indices = (
        synthetic_couplings.GRASS,
        synthetic_couplings.PAVED,
        synthetic_couplings.TREE,
        synthetic_couplings.CAR,
        synthetic_couplings.VISIBLE_CLUTTER,
        synthetic_couplings.HIDDEN_CLUTTER,
    )
    assert indices == tuple(range(6))


def test_version_2_store_is_deterministic_records_its_settings_and_enlarges_only_the_test_part(tmp_path):
    config = SyntheticConfig(tiles=14, size=64, version=2, redundancy=0.5, test_share=0.3)
    first = write_synthetic(tmp_path / "a.h5", config)
    again = write_synthetic(tmp_path / "b.h5", config)
    assert file_sha256(first) == file_sha256(again)
    stronger = SyntheticConfig(tiles=14, size=64, version=2, redundancy=1.0, test_share=0.3)
    other = write_synthetic(tmp_path / "c.h5", stronger)
    assert file_sha256(other) != file_sha256(first)
    with TileStore(first) as store:
        parts = store.splits["default"]
        assert [len(parts[p]) for p in ("train", "val", "test")] == [8, 2, 4]
        assert store.provenance["generator_version"] == "2"
        assert store.provenance["redundancy"] == 0.5
    # The train tiles are the same scenes whatever the test part's size.
    wider = SyntheticConfig(tiles=20, size=64, version=2, redundancy=0.5, test_share=0.5)
    assert wider.parts["train"] == config.parts["train"]
    assert cached_store_path(config) != cached_store_path(SyntheticConfig(**{**config.__dict__, "redundancy": 1.0}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"version": 1, "redundancy": 0.5}, "needs generator version 2"),
        ({"version": 2, "redundancy": 1.5}, "outside [0, 1]"),
        ({"version": 3}, "generator version 3 is unknown"),
        ({"test_share": 1.0}, "test_share 1.0 is outside (0, 1)"),
        ({"tiles": 5, "test_share": 0.9}, "every part needs a tile"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SyntheticConfig(**settings)


def test_a_redundancy_without_the_coupling_stream_is_refused_not_ignored():
    with pytest.raises(ValueError, match="needs version 2's coupling_rng"):
        generate_tile(np.random.default_rng(0), 64, 0.5)


def _separability(a: np.ndarray, b: np.ndarray) -> float:
    return abs(a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)


def _cues(redundancy: float) -> dict[str, float]:
    """d' of cues version 1 gives to one modality only, measured in another, on six 128 px tiles."""
    pairs: dict[str, tuple[list, list]] = {}
    kinds = ("grass", "tree", "visible_clutter", "hidden_clutter")
    grass, tree, visible, hidden = (SURFACE_KINDS.index(kind) for kind in kinds)
    for tile in range(6):
        scene = generate_tile(np.random.default_rng([3, tile]), 128, redundancy, np.random.default_rng([3, tile, 2]))
        surface, label = scene["surface"], scene["label"]
        raw = scene["optical"].astype(float)
        optical = np.stack([box_mean(band, 5) for band in raw])  # 5x5 means
        texture = np.sqrt(np.maximum(box_mean(raw[0] ** 2, 5) - optical[0] ** 2, 0))  # 5x5 IR standard deviation
        dsm = scene["dsm"][0].astype(float) - scene["ground"]  # height above the ground
        sar = box_mean(scene["sar"][0].astype(float), 5)
        ground = (surface == grass) | (label == IMPERVIOUS)
        for name, a, b in (
            ("tree vs grass, optical IR texture", texture[surface == tree], texture[surface == grass]),
            ("hidden clutter vs grass, optical IR", optical[0][surface == hidden], optical[0][surface == grass]),
            ("hidden clutter vs grass, DSM", dsm[surface == hidden], dsm[surface == grass]),
            ("visible clutter vs ground, DSM", dsm[surface == visible], dsm[ground]),
            ("visible clutter vs ground, SAR", sar[surface == visible], sar[ground]),
            ("building vs impervious, SAR", sar[label == BUILDING], sar[label == IMPERVIOUS]),
            ("building vs impervious, optical R", optical[1][label == BUILDING], optical[1][label == IMPERVIOUS]),
            ("low vegetation vs impervious, DSM", dsm[surface == grass], dsm[label == IMPERVIOUS]),
        ):
            pairs.setdefault(name, ([], []))
            pairs[name][0].append(a)
            pairs[name][1].append(b)
    return {name: _separability(np.concatenate(a), np.concatenate(b)) for name, (a, b) in pairs.items()}


def test_redundancy_makes_each_single_modality_cue_visible_in_another_modality():
    """Every cue version 1 keeps to one modality grows monotonically with redundancy, from near nothing."""
    levels = {r: _cues(r) for r in (0.0, 0.5, 1.0)}
    for name in levels[0.0]:
        none, half, full = (levels[r][name] for r in (0.0, 0.5, 1.0))
        assert none < half < full, (name, none, half, full)
        assert full - none > 0.5, (name, none, full)
