"""The torch Dataset over a store: shapes, normalisation, reproducible crops independent of worker
count, lazy per-process handles, and augmentation that moves every modality and the label together."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from store_helpers import tile_arrays, write_store
from torch.utils.data import DataLoader

from mmbench.data.augment import AugmentConfig, JointAugment
from mmbench.data.loader import TileDataset
from mmbench.data.store_format import StoreError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("loader") / "s.h5", tiles=6, size=24)


def test_whole_tiles_with_normalisation(store):
    dataset = TileDataset(store, part="train")
    assert len(dataset) == 4 and dataset.modalities == ("optical", "dsm")
    sample = dataset[1]
    assert sample["inputs"]["optical"].shape == (3, 24, 24) and sample["inputs"]["optical"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (24, 24)
    assert sample["available"].tolist() == [True, True]
    assert sample["tile_id"] == "t1" and sample["index"] == 1 and sample["window"].tolist() == [0, 0, 24, 24]
    train = torch.stack([dataset[i]["inputs"]["optical"] for i in range(4)])
    torch.testing.assert_close(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    raw = TileDataset(store, part="test", normalize=False)[0]
    np.testing.assert_array_equal(raw["inputs"]["optical"].numpy(), tile_arrays(5)[0]["optical"])
    np.testing.assert_array_equal(raw["label"].numpy(), tile_arrays(5)[1]["full"])


def test_crops_are_reproducible_and_change_with_epoch_and_seed(store):
    dataset = TileDataset(store, crop_size=10, seed=3)
    first = [dataset[i]["window"].tolist() for i in range(4)]
    assert [dataset[i]["window"].tolist() for i in range(4)] == first
    sample = dataset[2]
    top, left = sample["window"][:2].tolist()
    np.testing.assert_array_equal(sample["label"].numpy(), tile_arrays(2)[1]["full"][top : top + 10, left : left + 10])
    dataset.set_epoch(1)
    assert [dataset[i]["window"].tolist() for i in range(4)] != first
    assert [TileDataset(store, crop_size=10, seed=4)[i]["window"].tolist() for i in range(4)] != first


def test_worker_count_and_persistent_workers_do_not_change_the_data(store):
    dataset = TileDataset(store, crop_size=12, seed=1, augment=JointAugment())

    def epoch_batches(**loader_options):
        loader = DataLoader(dataset, batch_size=2, shuffle=False, **loader_options)
        return [torch.cat([b["inputs"]["optical"].flatten(), b["label"].flatten().float()]) for b in loader]

    single = epoch_batches(num_workers=0)
    for options in ({"num_workers": 2}, {"num_workers": 2, "persistent_workers": True}):
        batches = epoch_batches(**options)
        assert all(torch.equal(a, b) for a, b in zip(single, batches, strict=True))


def test_the_dataset_pickles_without_its_file_handle(store):
    dataset = TileDataset(store)
    dataset[0]
    assert dataset._store is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._store is None
    assert torch.equal(clone[0]["label"], dataset[0]["label"])


def test_geometric_augmentation_moves_modalities_and_label_together(store):
    # In this store the DSM equals label + tile index: any misalignment would break the equality.
    augment = JointAugment(AugmentConfig(scale=None, brightness=None, contrast=None))
    dataset = TileDataset(store, crop_size=16, augment=augment, normalize=False, seed=0)
    changed = 0
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for item in range(len(dataset)):
            sample = dataset[item]
            dsm, label = sample["inputs"]["dsm"][0], sample["label"]
            valid = label != 255
            torch.testing.assert_close(dsm[valid] - sample["index"], label[valid].float(), atol=0, rtol=0)
            top, left = sample["window"][:2].tolist()
            plain = torch.from_numpy(tile_arrays(sample["index"])[1]["full"][top : top + 16, left : left + 16]).long()
            changed += int(not torch.equal(plain, label))
    assert changed > 0, "augmentation never changed a sample"


def test_scale_augmentation_keeps_label_ids_and_photometric_touches_optical_only(store):
    plain = TileDataset(store, crop_size=16, normalize=False, seed=0)
    augmented = TileDataset(
        store,
        crop_size=16,
        normalize=False,
        seed=0,
        augment=JointAugment(AugmentConfig(hflip=0, vflip=0, rot90=False, scale=None)),
    )
    a, b = plain[0], augmented[0]
    assert torch.equal(a["inputs"]["dsm"], b["inputs"]["dsm"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["inputs"]["optical"], b["inputs"]["optical"])
    zoom = TileDataset(store, crop_size=16, seed=0, augment=JointAugment(AugmentConfig(scale=(0.3, 0.5))))
    for item in range(len(zoom)):
        assert set(zoom[item]["label"].unique().tolist()) <= {0, 1, 2, 255}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"modalities": ["optical", "sar"]}, "no modality 'sar'; the store has optical, dsm"),
        ({"label_variant": "eroded"}, "no label variant 'eroded'"),
        ({"split": "missing"}, "no split 'missing'"),
        ({"part": "holdout"}, "no part 'holdout'"),
        ({"crop_size": 99}, "crop size 99 does not fit tiles of"),
    ],
)
def test_bad_requests_fail_with_one_line(store, options, message):
    with pytest.raises(StoreError, match=message):
        TileDataset(store, **options)
