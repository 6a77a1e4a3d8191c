"""The HDF5 tile store: exact round trips, refusal of bad tiles, atomic writing, and readable errors
for missing, truncated, corrupt and future-version files."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from store_helpers import CLASSES, MODALITIES, tile_arrays, write_store

from mmbench.data.store_format import CODECS, FORMAT_VERSION, StoreError
from mmbench.data.store_reader import TileStore
from mmbench.data.store_stats import band_statistics
from mmbench.data.store_writer import TileStoreWriter


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_is_exact_for_every_codec(tmp_path, codec):
    path = write_store(tmp_path / "s.h5", codec=codec)
    with TileStore(path) as store:
        assert store.codec == codec and store.num_tiles == 6 and store.tile_size == (24, 24)
        for index in range(6):
            modalities, labels = tile_arrays(index)
            np.testing.assert_array_equal(store.read_modality("optical", index), modalities["optical"])
            np.testing.assert_array_equal(store.read_modality("dsm", index), modalities["dsm"])
            np.testing.assert_array_equal(store.read_label("full", index), labels["full"])
        window = store.read_modality("optical", 3, (2, 5, 10, 7))
        np.testing.assert_array_equal(window, tile_arrays(3)[0]["optical"][:, 2:12, 5:12])
        assert list(store.verify()) == []


def test_metadata_splits_tiles_and_statistics(tmp_path):
    path = write_store(tmp_path / "s.h5")
    with TileStore(path) as store:
        assert store.name == "tiny" and store.classes == CLASSES and store.ignore_index == 255
        assert store.format_version == FORMAT_VERSION and store.provenance == {"test": True}
        assert store.modalities["optical"].bands == ("IR", "R", "G")
        assert store.modalities["dsm"].units == "m" and store.modalities["dsm"].dtype == "float32"
        assert store.default_split == "main"
        assert store.split_indices(None, "train").tolist() == [0, 1, 2, 3]
        assert store.split_indices("other", "test").tolist() == [0]
        assert store.tile_record(3) == {"id": "t3", "source": "src1", "row": 3, "col": 6, "files": ["file3.tif"]}
        stats = store.modalities["optical"].stats
        train = np.stack([tile_arrays(i)[0]["optical"] for i in range(4)]).astype(np.float64)
        assert stats["computed_on"] == "main/train"
        np.testing.assert_allclose(stats["mean"], train.mean(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(stats["std"], train.std(axis=(0, 2, 3)), rtol=1e-9)
        assert stats["min"] == train.min(axis=(0, 2, 3)).tolist()
        with pytest.raises(StoreError, match="no split 'nope'; the store has main, other"):
            store.split_indices("nope", "train")
        with pytest.raises(StoreError, match="no modality 'sar'"):
            store.read_modality("sar", 0)
        with pytest.raises(StoreError, match="no label variant 'eroded'"):
            store.read_label("eroded", 0)
        histogram = store.class_histogram("full", np.arange(6))
        assert histogram[-1] == 6 * 4 and histogram.sum() == 6 * 24 * 24


def test_band_statistics_are_stable_for_large_offsets():
    rng = np.random.default_rng(0)
    tiles = [(300.0 + rng.normal(0, 0.01, (1, 64, 64))).astype(np.float32) for _ in range(8)]
    stats = band_statistics(iter(tiles))
    values = np.concatenate([t.ravel() for t in tiles]).astype(np.float64)
    assert stats["std"][0] == pytest.approx(values.std(), rel=1e-6)
    assert stats["mean"][0] == pytest.approx(values.mean(), rel=1e-12)


def _writer(path, **overrides):
    kwargs = dict(name="x", modalities=MODALITIES, label_variants=("full",), tile_size=24, classes=CLASSES)
    kwargs.update(overrides)
    return TileStoreWriter(path, **kwargs)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m, lab: m.pop("dsm"), "modality 'dsm' is missing"),
        (lambda m, lab: m.__setitem__("dsm", m["dsm"][:, :20]), r"modality 'dsm' has shape \(1, 20, 24\)"),
        (lambda m, lab: m.__setitem__("optical", m["optical"].astype(np.uint16)), "is uint16, expected uint8"),
        (lambda m, lab: m["dsm"].__setitem__((0, 3, 3), np.nan), "modality 'dsm' has 1 NaN/inf values"),
        (lambda m, lab: lab["full"].__setitem__((5, 5), 7), r"label 'full' has values \[7\] outside 0..2"),
        (lambda m, lab: lab.pop("full"), "label variant 'full' is missing"),
        (lambda m, lab: lab.__setitem__("full", lab["full"].astype(np.int64)), "label 'full' is int64"),
    ],
)
def test_bad_tiles_are_refused_and_no_file_is_left(tmp_path, mutate, message):
    path = tmp_path / "out.h5"
    modalities, labels = tile_arrays(0)
    mutate(modalities, labels)
    with pytest.raises(StoreError, match=message) as info:
        with _writer(path) as writer:
            writer.add_tile("t0", modalities, labels, source="source.tif")
    assert "from source.tif" in str(info.value) and "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({}, "no split was defined"),
        ({"s": {"train": [0], "test": [0]}}, "tile 0 is in more than one part"),
        ({"s": {"train": [0], "holdout": [1]}}, "unknown part 'holdout'"),
        ({"s": {"train": [0, 9]}}, "refers to tile 9 of 2"),
    ],
)
def test_bad_splits_are_refused(tmp_path, splits, message):
    with pytest.raises(StoreError, match=message):
        with _writer(tmp_path / "out.h5") as writer:
            for index in range(2):
                writer.add_tile(f"t{index}", *tile_arrays(index), source="s")
            for name, parts in splits.items():
                writer.set_split(name, parts)
    assert os.listdir(tmp_path) == []


def test_an_interrupted_write_leaves_the_previous_store_untouched(tmp_path):
    path = write_store(tmp_path / "s.h5")
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with _writer(path) as writer:
            writer.add_tile("t0", *tile_arrays(0), source="s")
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.h5"]


def test_missing_not_hdf5_and_truncated_files(tmp_path):
    with pytest.raises(StoreError, match="does not exist; check the path"):
        TileStore(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(StoreError, match="is not a readable HDF5 file"):
        TileStore(junk)
    full = write_store(tmp_path / "s.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(StoreError, match="truncated.h5"):
        store = TileStore(truncated)
        list(store.verify())


def test_foreign_and_future_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(StoreError, match="not an mmbench tile store"):
        TileStore(foreign)
    future = write_store(tmp_path / "future.h5")
    with h5py.File(future, "r+") as handle:
        handle.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(StoreError, match=f"format version {FORMAT_VERSION + 1} is newer .* upgrade mmbench"):
        TileStore(future)


def test_a_corrupted_chunk_is_caught_by_its_checksum(tmp_path):
    path = write_store(tmp_path / "s.h5", codec="none")
    with h5py.File(path, "r") as handle:
        info = handle["modalities/dsm"].id.get_chunk_info(2)
    data = bytearray(path.read_bytes())
    data[info.byte_offset + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    with TileStore(path) as store:
        np.testing.assert_array_equal(store.read_modality("dsm", 1), tile_arrays(1)[0]["dsm"])
        with pytest.raises(StoreError, match="cannot read modalities/dsm tile 2 .*corrupt"):
            store.read_modality("dsm", 2)
        problems = list(store.verify())
    assert len(problems) == 1 and "modalities/dsm tile 2" in problems[0]


def test_verify_reports_bad_values_written_behind_the_writers_back(tmp_path):
    path = write_store(tmp_path / "s.h5")
    with h5py.File(path, "r+") as handle:
        handle["labels/full"][1, 0, 0] = 9
        handle["modalities/dsm"][3, 0, 5, 5] = np.inf
        del handle["splits/other/test"]
        handle["splits/other/test"] = np.array([42])
    with TileStore(path) as store:
        problems = list(store.verify())
    assert any("split other/test refers to tile indices outside 0..5" in p for p in problems)
    assert any("label 'full' tile 1 (t1) has values [9]" in p for p in problems)
    assert any("modality 'dsm' tile 3 (t3) has NaN/inf" in p for p in problems)


def test_the_format_is_self_describing(tmp_path):
    path = write_store(tmp_path / "s.h5")
    with h5py.File(path, "r") as handle:
        assert handle.attrs["format"] == "mmbench-tiles"
        assert json.loads(handle.attrs["modalities"]) == ["optical", "dsm"]
        dataset = handle["modalities/optical"]
        assert dataset.chunks == (1, 3, 24, 24) and dataset.fletcher32
        assert handle["labels/full"].chunks == (1, 24, 24) and handle["labels/full"].dtype == np.uint8


# -- area stores (docs/data-format.md, `areas`) ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ([("a", 0, 0, (30, 30)), ("b", 0, 0, None)], "give area_size for every tile of a store or for none"),
        ([("a", 0, 0, None), ("b", 0, 0, (30, 30))], r"for none \(the first tile did not\)"),
        ([("a", 0, 0, (30, 30)), ("a", 6, 0, (30, 31))], "area size 30x31 differs from 30x30"),
        ([("a", 30, 0, (30, 30))], r"offset \(30, 0\) lies outside its 30x30 area"),
        ([("a", 0, 0, (0, 30))], r"area size \(0, 30\) must be positive"),
    ],
)
def test_inconsistent_area_tiles_are_refused(tmp_path, tiles, message):
    with pytest.raises(StoreError, match=message) as info:
        with _writer(tmp_path / "out.h5") as writer:
            for index, (source, row, col, size) in enumerate(tiles):
                writer.add_tile(f"t{index}", *tile_arrays(index), source=source, row=row, col=col, area_size=size)
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_area_stores_count_each_area_pixel_once_and_pad_with_the_training_mean(tmp_path):
    """Statistics and class shares see every pixel of the training areas once, never padding; label padding is
    ignore and modality padding the per-band training mean (rounded for integers), which normalises to ~0."""
    from area_helpers import write_area_store

    from mmbench.data.loader import TileDataset

    path = tmp_path / "areas.h5"
    parts = {"train": ["train0", "small"], "test": ["wide"]}
    arrays = write_area_store(path, parts=parts)  # train0 30x34 in overlapping 16 px tiles, small 9x13 padded
    train = ["train0", "small"]
    with TileStore(path) as store:
        assert [area.name for area in store.areas.values()] == ["train0", "wide", "square", "small"]
        for name in ("optical", "dsm"):
            pixels = np.concatenate([arrays[a][name].reshape(arrays[a][name].shape[0], -1) for a in train], axis=1)
            stats = store.modalities[name].stats
            np.testing.assert_allclose(stats["mean"], pixels.astype(np.float64).mean(axis=1), rtol=1e-12)
            np.testing.assert_allclose(stats["std"], pixels.astype(np.float64).std(axis=1), rtol=1e-9)
            assert stats["min"] == pixels.min(axis=1).astype(np.float64).tolist()
        labels = np.concatenate([arrays[a]["full"].ravel() for a in train])
        histogram = store.class_histogram("full", store.split_indices(None, "train"))
        expected = np.bincount(np.where(labels == 255, 4, labels), minlength=5)
        assert histogram.tolist() == expected.tolist()
        (small,) = [i for i in range(store.num_tiles) if store.tile_record(i)["source"] == "small"]
        assert store.tile_record(small)["area_size"] == [9, 13]
        label = store.read_label("full", small)
        assert (label[9:] == 255).all() and (label[:, 13:] == 255).all()
        np.testing.assert_array_equal(label[:9, :13], arrays["small"]["full"])
        optical = store.read_modality("optical", small)
        mean = np.round(store.modalities["optical"].stats["mean"])
        assert (optical[:, 9:] == mean[:, None, None]).all() and (optical[:, :, 13:] == mean[:, None, None]).all()
        np.testing.assert_array_equal(optical[:, :9, :13], arrays["small"]["optical"])
        position = int(np.flatnonzero(store.split_indices(None, "train") == small)[0])
        std = np.asarray(store.modalities["optical"].stats["std"])
    sample = TileDataset(path, part="train")[position]
    assert sample["inputs"]["dsm"][:, 9:].abs().max() < 1e-5  # float32: the mean itself
    assert (sample["inputs"]["optical"][:, 9:].abs().amax(dim=(1, 2)).numpy() <= 0.5 / std + 1e-6).all()


def test_verify_reports_area_pixels_in_no_tile(tmp_path):
    path = tmp_path / "gap.h5"
    with _writer(path) as writer:
        writer.add_tile("t0", *tile_arrays(0), source="a", row=0, col=0, area_size=(24, 30))
        writer.set_split("s", {"train": [0]})
    with TileStore(path) as store:
        assert list(store.verify()) == ["area 'a': 144 of its pixels are in no tile"]
