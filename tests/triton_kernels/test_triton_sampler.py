"""Triton class-balanced sampler == PyTorch reference, bit for bit, on awkward inputs and block sizes."""

from __future__ import annotations

import pytest
import torch

from mmbench.kernels import sampling_triton
from mmbench.kernels.psa import MODES, class_balanced_sample
from mmbench.kernels.sampling import class_balanced_sample_torch

IGNORE = 255


def labels_with(
    sizes: dict[int, int], shape: tuple[int, ...], seed: int = 0, ignore: int = IGNORE, dtype: torch.dtype = torch.int64
) -> torch.Tensor:
    """Exactly `sizes[c]` pixels of class c, the rest `ignore`, in random places."""
    numel = 1
    for side in shape:
        numel *= side
    flat = torch.full((numel,), ignore, dtype=torch.int64)
    start = 0
    for c, n in sizes.items():
        flat[start : start + n] = c
        start += n
    assert start <= numel
    flat = flat[torch.randperm(numel, generator=torch.Generator().manual_seed(seed))]
    return flat.reshape(shape).to(dtype)


def assert_same(labels: torch.Tensor, num_classes: int, device: torch.device, **kwargs) -> tuple[torch.Tensor, ...]:
    kwargs.setdefault("ignore_index", IGNORE)
    expected = class_balanced_sample_torch(labels, num_classes, **kwargs)
    got = class_balanced_sample(labels.to(device), num_classes, backend="triton", **kwargs)
    assert got[0].dtype == torch.int64 and got[1].dtype == torch.int64
    assert torch.equal(got[0].cpu(), expected[0]), "indices differ from the reference"
    assert torch.equal(got[1].cpu(), expected[1]), "labels differ from the reference"
    return got


CASES = {
    # 3 x 17 x 23 = 1173 pixels: not a multiple of any block size
    "mixed": ({0: 600, 1: 40, 2: 7, 3: 1, 5: 300}, (3, 17, 23), 6),
    "absent classes": ({2: 200, 7: 90}, (1, 31, 13), 9),
    "single class": ({4: 403}, (1, 403), 5),
    "all ignore": ({}, (2, 9, 11), 4),
    "quota above every class": ({0: 5, 1: 9, 2: 3}, (1, 40), 3),
    "every pixel labelled": ({0: 500, 1: 333, 2: 1}, (834,), 3),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("max_samples,max_views", [(1024, 100), (64, 100), (300, 1000)])
def test_matches_the_reference(device, case, mode, max_samples, max_views):
    sizes, shape, num_classes = CASES[case]
    labels = labels_with(sizes, shape, seed=len(case))
    assert_same(labels, num_classes, device, max_samples=max_samples, max_views=max_views, mode=mode, seed=11)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("max_samples,max_views", [(1024, 100), (200, 100), (64, 1000)])
def test_per_image_quotas_match_the_reference(device, mode, max_samples, max_views):
    labels = labels_with({0: 700, 1: 300, 2: 45, 3: 2, 5: 120}, (4, 19, 17), seed=5)
    labels[1] = IGNORE  # an image without any class
    labels[2, :3] = 4  # a class present in one image only
    assert_same(labels, 6, device, max_samples=max_samples, max_views=max_views, mode=mode, seed=21, per_image=True)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_label_dtypes(device, dtype):
    labels = labels_with({0: 300, 1: 50, 2: 4}, (2, 19, 21), dtype=dtype)
    assert_same(labels, 3, device, max_samples=120, max_views=100, seed=5)


def test_ignore_index_inside_the_class_range_and_negative(device):
    labels = labels_with({0: 300, 1: 200, 2: 50}, (1, 600), ignore=3)
    assert_same(labels, 4, device, ignore_index=1, max_samples=90, seed=2)  # class 1 is ignored here
    negative = labels_with({0: 300, 1: 200, 2: 50}, (1, 600), ignore=-1)
    assert_same(negative, 4, device, ignore_index=-1, max_samples=90, seed=2)


def test_same_seed_same_indices_for_every_block_size(device):
    labels = labels_with({0: 2000, 1: 900, 2: 30, 4: 5}, (2, 50, 41), seed=3)
    results = [
        class_balanced_sample(labels.to(device), 5, backend="triton", seed=99, max_views=64, ignore_index=IGNORE)
        if block is None
        else sampling_triton.class_balanced_sample_triton(
            labels.to(device), 5, seed=99, max_views=64, ignore_index=IGNORE, block_size=block
        )
        for block in (None, 16, 128, 1024, 4096)
    ]
    for indices, classes in results[1:]:
        assert torch.equal(indices, results[0][0]) and torch.equal(classes, results[0][1])
    other = sampling_triton.class_balanced_sample_triton(
        labels.to(device), 5, seed=100, max_views=64, ignore_index=IGNORE
    )
    assert not torch.equal(other[0], results[0][0]), "a new seed must give a new draw"


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1, 2**40 + 3, -5, 2**64 - 1])
def test_seeds_across_the_integer_range(device, seed):
    labels = labels_with({0: 500, 1: 500, 2: 100}, (1100,), seed=1)
    assert_same(labels, 3, device, max_views=50, seed=seed)


def test_a_short_class_is_repaired_exactly(device, monkeypatch):
    """Candidates under the threshold can (rarely) be fewer than K: the pass reruns for that class."""
    labels = labels_with({0: 3000, 1: 2000, 2: 700}, (1, 5700), seed=4)
    for oversample in (1.0, 20.0):  # expected 1 or 20 candidates per class against K = 100: always short
        got = sampling_triton.class_balanced_sample_triton(
            labels.to(device), 3, seed=8, ignore_index=IGNORE, oversample=oversample
        )
        expected = class_balanced_sample_torch(labels, 3, seed=8, ignore_index=IGNORE)
        assert torch.equal(got[0].cpu(), expected[0])


@pytest.mark.parametrize("max_views", [1, 100, 1000])
def test_one_candidate_pass_is_enough_normally(device, monkeypatch, max_views):
    calls = []
    original = sampling_triton.collect_candidates
    monkeypatch.setattr(sampling_triton, "collect_candidates", lambda *args: calls.append(1) or original(*args))
    labels = labels_with({0: 5000, 1: 2000, 2: 300, 3: 9}, (2, 60, 70), seed=2)
    assert_same(labels, 4, device, max_samples=4000, max_views=max_views, seed=3)
    assert len(calls) == 1


def test_an_overflowing_candidate_buffer_is_regrown(device, monkeypatch):
    calls = []
    original = sampling_triton.collect_candidates

    def spy(flat, num_classes, image_size, thresholds, active, capacity, *args):
        calls.append(capacity)
        return original(flat, num_classes, image_size, thresholds, active, capacity, *args)

    monkeypatch.setattr(sampling_triton, "_capacity", lambda expected: 1)
    monkeypatch.setattr(sampling_triton, "collect_candidates", spy)
    labels = labels_with({0: 3000, 1: 2000}, (1, 5100), seed=6)
    got = sampling_triton.class_balanced_sample_triton(labels.to(device), 2, seed=1, max_views=20, ignore_index=IGNORE)
    expected = class_balanced_sample_torch(labels, 2, seed=1, max_views=20, ignore_index=IGNORE)
    assert torch.equal(got[0].cpu(), expected[0])
    assert len(calls) == 2 and calls[1] > calls[0], calls


def test_ignored_pixels_are_never_selected_and_replace_has_fixed_shape(device):
    labels = labels_with({0: 10, 1: 3, 2: 400}, (1, 1000), seed=9)
    indices, classes = class_balanced_sample(
        labels.to(device), 3, backend="triton", mode="replace", max_views=50, ignore_index=IGNORE
    )
    assert indices.numel() == 3 * 50
    assert torch.equal(labels.reshape(-1)[indices.cpu()], classes.cpu())
    assert bool((labels.reshape(-1)[indices.cpu()] != IGNORE).all())


def test_out_of_range_labels_are_refused_like_the_reference(device):
    labels = labels_with({0: 30, 1: 30}, (1, 80))
    labels[0, 5] = 7
    with pytest.raises(ValueError, match=r"label 7 is neither a class id in \[0, 3\) nor ignore_index=255"):
        class_balanced_sample(labels.to(device), 3, backend="triton")
    with pytest.raises(ValueError, match=r"label -2 is neither"):
        class_balanced_sample(torch.full((1, 4), -2).to(device), 3, backend="triton")


def test_empty_labels(device):
    indices, classes = class_balanced_sample(torch.zeros(0, 5, dtype=torch.int64).to(device), 3, backend="triton")
    assert indices.numel() == 0 and classes.numel() == 0 and indices.dtype == torch.int64


def test_block_size_must_be_a_power_of_two(device):
    with pytest.raises(ValueError, match="power of two"):
        sampling_triton.class_balanced_sample_triton(torch.zeros(10, dtype=torch.int64).to(device), 2, block_size=100)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_paper_scale_on_cuda(mode):
    """B=8 at 128 x 128 with 6 classes and quotas from 100 to 1024, compiled: still bit-identical."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (8, 128, 128), generator=generator)
    labels[:, :8] = IGNORE
    for max_views in (100, 1024):
        assert_same(labels, 6, torch.device("cuda"), max_samples=8192, max_views=max_views, mode=mode, seed=3)
