"""PSA operators: class-balanced sampling (quota rule, determinism, uniformity), pixel gathering and
the cross-modal InfoNCE loss against plainly written references."""

from __future__ import annotations

import pytest
import torch

from mmbench.kernels import psa
from mmbench.kernels.psa import (
    MODES,
    class_balanced_sample,
    counter_keys,
    cross_modal_infonce,
    gather_pixels,
    mix64,
    naive_class_balanced_sample,
    pixel_keys,
    select_class_balanced,
)
from mmbench.kernels.triton_runtime import interpreter_requested

IGNORE = 255
SHAPE = (3, 17, 23)  # odd on purpose: 1173 pixels
SIZES = {0: 300, 1: 40, 2: 7, 3: 1, 5: 20}  # class 3 is below min_pixels, class 4 is absent


def make_labels(sizes: dict[int, int] = SIZES, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> torch.Tensor:
    """Labels with exactly `sizes[c]` pixels of class c, the rest ignored, shuffled."""
    numel = 1
    for side in shape:
        numel *= side
    flat = torch.full((numel,), IGNORE, dtype=torch.int64)
    start = 0
    for c, n in sizes.items():
        flat[start : start + n] = c
        start += n
    perm = torch.randperm(numel, generator=torch.Generator().manual_seed(seed))
    return flat[perm].reshape(shape)


def expected_counts(
    labels: torch.Tensor, num_classes: int, max_samples: int, max_views: int, min_pixels: int, mode: str
) -> dict[int, int]:
    """The quota rule written out plainly: class -> number of samples."""
    flat = labels.reshape(-1).tolist()
    n = {c: sum(1 for v in flat if v == c) for c in range(num_classes)}
    present = [c for c in range(num_classes) if n[c] >= min_pixels]
    if not present:
        return {}
    k = min(max_views, max_samples // len(present))
    out = {}
    for c in present:
        if mode == "all":
            out[c] = min(n[c], k)
        elif mode == "replace":
            out[c] = k
        elif n[c] >= k:
            out[c] = k
    return {c: v for c, v in out.items() if v > 0}


def counts_of(sampled_labels: torch.Tensor) -> dict[int, int]:
    values, counts = torch.unique(sampled_labels, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def sample(labels: torch.Tensor, num_classes: int = 6, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    kwargs.setdefault("ignore_index", IGNORE)
    return class_balanced_sample(labels, num_classes, **kwargs)


# --------------------------------------------------------------------------------------------- quota


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("max_samples,max_views", [(64, 100), (1024, 10), (1024, 100), (3, 100)])
def test_counts_follow_the_quota_rule(mode, max_samples, max_views):
    labels = make_labels()
    indices, sampled = sample(labels, max_samples=max_samples, max_views=max_views, mode=mode)
    assert counts_of(sampled) == expected_counts(labels, 6, max_samples, max_views, 2, mode)
    assert indices.dtype == sampled.dtype == torch.int64


def test_quota_is_recomputed_from_the_number_of_present_classes():
    three = make_labels({0: 50, 1: 50, 2: 50})
    four = make_labels({0: 50, 1: 50, 2: 50, 3: 50})
    assert set(counts_of(sample(three, max_samples=12)[1]).values()) == {4}
    assert set(counts_of(sample(four, max_samples=12)[1]).values()) == {3}
    # a class under min_pixels is not present: it neither gets samples nor shrinks the quota
    with_single = make_labels({0: 50, 1: 50, 2: 50, 3: 1})
    assert counts_of(sample(with_single, max_samples=12)[1]) == {0: 4, 1: 4, 2: 4}
    assert counts_of(sample(with_single, max_samples=12, min_pixels=1)[1]) == {0: 3, 1: 3, 2: 3, 3: 1}
    assert counts_of(sample(with_single, max_samples=12, min_pixels=51)[1]) == {}


def test_ignored_pixels_are_never_selected_and_all_ignore_is_empty():
    labels = make_labels()
    for mode in MODES:
        indices, _ = sample(labels, mode=mode, max_samples=10_000, max_views=10_000)
        assert not (labels.reshape(-1)[indices] == IGNORE).any()
    for empty_labels in (torch.full(SHAPE, IGNORE), torch.zeros(0, 4, 4, dtype=torch.int64)):
        indices, sampled = sample(empty_labels)
        assert indices.shape == sampled.shape == (0,)
        assert indices.dtype == sampled.dtype == torch.int64


def test_single_class_and_a_class_of_exactly_the_quota():
    single = make_labels({2: 500})
    assert counts_of(sample(single, max_samples=1024, max_views=100)[1]) == {2: 100}
    assert counts_of(sample(single, max_samples=64, max_views=100)[1]) == {2: 64}
    exact = make_labels({0: 300, 1: 16, 2: 5, 3: 200})  # K = 64 // 4 = 16
    for mode in MODES:
        indices, sampled = sample(exact, max_samples=64, mode=mode)
        class1 = indices[sampled == 1]
        assert torch.equal(class1, torch.nonzero(exact.reshape(-1) == 1).squeeze(1)), mode
    assert 2 not in counts_of(sample(exact, max_samples=64, mode="drop")[1])


def test_many_more_classes_than_present_and_small_integer_dtypes():
    labels = make_labels({7: 30, 180: 30, 3: 4})
    for dtype in (torch.uint8, torch.int32, torch.int64):
        indices, sampled = class_balanced_sample(labels.to(dtype), 200, max_samples=30, ignore_index=IGNORE)
        assert counts_of(sampled) == {3: 4, 7: 10, 180: 10}


def test_ignore_index_may_be_negative_or_a_class_id():
    labels = make_labels({0: 30, 1: 30})
    minus_one = torch.where(labels == IGNORE, -1, labels)
    assert counts_of(class_balanced_sample(minus_one, 2, ignore_index=-1)[1]) == {0: 30, 1: 30}
    background = make_labels({0: 30, 1: 30, 2: 30})
    background = torch.where(background == IGNORE, 0, background)  # background 0 treated as ignore
    assert counts_of(class_balanced_sample(background, 3, ignore_index=0)[1]) == {1: 30, 2: 30}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_indices_point_to_their_class_are_unique_and_canonical(mode, seed):
    labels = make_labels(seed=seed)
    indices, sampled = sample(labels, max_samples=64, mode=mode, seed=seed)
    assert torch.equal(sampled, labels.reshape(-1)[indices])
    keys = sampled * labels.numel() + indices
    assert torch.equal(keys, torch.sort(keys).values)  # sorted by (class, index)
    if mode != "replace":
        assert indices.unique().numel() == indices.numel()


def test_replace_duplicates_only_small_classes_and_equals_all_for_large_ones():
    labels = make_labels()
    all_idx, all_lab = sample(labels, max_samples=64, mode="all", seed=3)
    rep_idx, rep_lab = sample(labels, max_samples=64, mode="replace", seed=3)
    for c in (0, 1, 5):  # n_c >= K = 16
        assert torch.equal(all_idx[all_lab == c], rep_idx[rep_lab == c])
    small = rep_idx[rep_lab == 2]  # n_c = 7 < 16
    assert small.numel() == 16 and small.unique().numel() <= 7
    assert set(small.tolist()) <= set(torch.nonzero(labels.reshape(-1) == 2).squeeze(1).tolist())


@pytest.mark.parametrize("mode", MODES)
def test_naive_baseline_matches_counts_and_candidates(mode):
    labels = make_labels()
    fast_idx, fast_lab = sample(labels, max_samples=64, mode=mode, seed=4)
    naive_idx, naive_lab = naive_class_balanced_sample(
        labels, 6, max_samples=64, mode=mode, seed=4, ignore_index=IGNORE
    )
    assert counts_of(fast_lab) == counts_of(naive_lab)
    assert torch.equal(naive_lab, labels.reshape(-1)[naive_idx])
    keys = naive_lab * labels.numel() + naive_idx
    assert torch.equal(keys, torch.sort(keys).values)
    if mode == "all":  # same candidates: a class below quota yields all its pixels in both
        assert torch.equal(fast_idx[fast_lab == 2], naive_idx[naive_lab == 2])


# ------------------------------------------------------------------------------------ determinism


def test_mixer_reproduces_the_splitmix64_test_vector():
    golden = 0x9E3779B97F4A7C15
    states = [(1234567 + (i + 1) * golden) % 2**64 for i in range(5)]
    signed = torch.tensor([s - 2**64 if s >= 2**63 else s for s in states], dtype=torch.int64)
    got = [v % 2**64 for v in mix64(signed).tolist()]
    assert got == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


def test_keys_are_distinct_and_depend_only_on_seed_and_pixel_id():
    keys = pixel_keys(50_000, seed=7)
    assert keys.unique().numel() == keys.numel()
    ids = torch.tensor([49_999, 3, 12_345], dtype=torch.int32)
    assert torch.equal(counter_keys(ids, 7), keys[ids.long()])
    assert not torch.equal(pixel_keys(100, seed=8), pixel_keys(100, seed=7))


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_sample_different_seed_different_sample(mode):
    labels = make_labels()
    first = sample(labels, max_samples=64, mode=mode, seed=11)
    again = sample(labels, max_samples=64, mode=mode, seed=11)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    for other in (12, -11, 2**63 + 11):
        indices, sampled = sample(labels, max_samples=64, mode=mode, seed=other)
        assert not torch.equal(indices[sampled == 0], first[0][first[1] == 0])  # class 0: 300 px, K = 16
    wrapped = sample(labels, max_samples=64, mode=mode, seed=2**64 + 11)  # seeds are taken modulo 2**64
    assert all(torch.equal(x, y) for x, y in zip(first, wrapped, strict=True))


@pytest.mark.parametrize("mode", MODES)
def test_selection_is_independent_of_the_pixel_layout(mode):
    labels = make_labels()
    direct = sample(labels, max_samples=64, mode=mode, seed=5)
    for view in (labels.reshape(-1), labels.reshape(51, 23), labels.reshape(1, 3, 391)):
        other = sample(view, max_samples=64, mode=mode, seed=5)
        assert all(torch.equal(x, y) for x, y in zip(direct, other, strict=True))
    # visit the pixels in a shuffled order, keyed by their original ids, then map positions back
    flat = labels.reshape(-1)
    perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(1))
    positions, sampled = select_class_balanced(
        flat[perm], counter_keys(perm, 5), 6, max_samples=64, max_views=100, min_pixels=2, seed=5,
        ignore_index=IGNORE, mode=mode,
    )  # fmt: skip
    mapped = perm[positions]
    order = torch.argsort(sampled * flat.numel() + mapped, stable=True)
    assert torch.equal(mapped[order], direct[0]) and torch.equal(sampled[order], direct[1])


def test_global_rng_state_is_untouched():
    labels = make_labels()
    before = torch.get_rng_state()
    for mode in MODES:
        sample(labels, max_samples=64, mode=mode, seed=9)
        naive_class_balanced_sample(labels, 6, max_samples=64, mode=mode, seed=9, ignore_index=IGNORE)
    assert torch.equal(before, torch.get_rng_state())


def test_without_replacement_every_pixel_is_chosen_half_the_time_when_n_is_twice_k():
    labels = make_labels({1: 20}, shape=(2, 9, 7))  # K = max_views = 10 = n / 2
    ids = torch.nonzero(labels.reshape(-1) == 1).squeeze(1)
    hits = torch.zeros(labels.numel())
    seeds = 400
    for seed in range(seeds):
        indices, _ = sample(labels, max_views=10, seed=seed)
        assert indices.numel() == 10
        hits[indices] += 1
    frequency = hits[ids] / seeds
    assert (frequency - 0.5).abs().max() < 0.1
    assert hits.sum() == hits[ids].sum()


def test_with_replacement_draws_are_uniform_and_not_a_fixed_pattern():
    labels = make_labels({1: 5}, shape=(4, 4))  # n = 5 < K = 10
    ids = torch.nonzero(labels.reshape(-1) == 1).squeeze(1)
    hits = torch.zeros(labels.numel())
    patterns = set()
    for seed in range(200):
        indices, _ = sample(labels, max_views=10, seed=seed, mode="replace")
        hits.index_add_(0, indices, torch.ones(indices.numel()))
        patterns.add(tuple(torch.bincount(indices, minlength=16)[ids].tolist()))
    assert ((hits[ids] / 200) - 2.0).abs().max() < 0.3  # each pixel twice per draw on average
    assert len(patterns) > 50


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", MODES)
def test_cpu_and_cuda_choose_the_same_pixels(mode):
    labels = make_labels(shape=(3, 17, 23))
    cpu = sample(labels, max_samples=64, mode=mode, seed=21)
    gpu = sample(labels.cuda(), max_samples=64, mode=mode, seed=21)
    assert all(torch.equal(x, y.cpu()) for x, y in zip(cpu, gpu, strict=True))
    assert torch.equal(pixel_keys(4096, 21), pixel_keys(4096, 21, "cuda").cpu())


# -------------------------------------------------------------------------------------- arguments


def test_backend_dispatch():
    labels = make_labels()
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    for backend in ("auto", "torch"):
        assert sample(labels, backend=backend)[0].numel() > 0
        assert cross_modal_infonce(z, z, torch.arange(4), backend=backend).ndim == 0
    if not interpreter_requested():  # compiled Triton refuses CPU tensors with the fix in the message
        for call in (
            lambda: sample(labels, backend="triton"),
            lambda: cross_modal_infonce(z, z, torch.arange(4), backend="triton"),
            lambda: gather_pixels(z, torch.arange(2), backend="triton"),
        ):
            with pytest.raises(RuntimeError, match="need CUDA tensors.*TRITON_INTERPRET=1"):
                call()
    with pytest.raises(ValueError, match="backend"):
        sample(labels, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        cross_modal_infonce(z, z, torch.arange(4), backend="fused")


def test_a_registered_triton_implementation_is_used_when_asked(monkeypatch):
    calls = []

    def fake(labels, num_classes, **kwargs):
        calls.append(kwargs["mode"])
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)

    monkeypatch.setitem(psa._IMPLEMENTATIONS["class_balanced_sample"], "triton", fake)
    sample(make_labels(), backend="triton", mode="drop")
    sample(make_labels(), backend="auto")  # CPU tensors stay on the reference
    assert calls == ["drop"]


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"mode": "oversample"}, ValueError),
        ({"max_views": 0}, ValueError),
        ({"max_samples": 0}, ValueError),
        ({"min_pixels": 0}, ValueError),
        ({"seed": 1.5}, TypeError),
        ({"num_classes": 0}, ValueError),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error):
    num_classes = kwargs.pop("num_classes", 6)
    with pytest.raises(error):
        sample(make_labels(), num_classes, **kwargs)


def test_labels_must_be_class_ids_or_ignore():
    with pytest.raises(ValueError, match="label 6"):
        sample(make_labels({6: 10}))
    with pytest.raises(ValueError, match="label -1"):
        sample(torch.tensor([0, 1, -1]))
    with pytest.raises(TypeError):
        sample(make_labels().float())
    with pytest.raises(ValueError, match="label 6"):
        naive_class_balanced_sample(make_labels({6: 10}), 6, ignore_index=IGNORE)


# ---------------------------------------------------------------------------------------- gather


def test_gather_pixels_values_and_accumulating_gradient():
    features = torch.randn(2, 4, 5, 3, requires_grad=True)
    indices = torch.tensor([3, 0, 39, 3, 17, 3])
    rows = gather_pixels(features, indices)
    flat = features.detach().reshape(-1, 3)
    assert torch.equal(rows, torch.stack([flat[i] for i in indices.tolist()]))
    weights = torch.randn(6, 3)
    rows.backward(weights)
    expected = torch.zeros(40, 3)
    for j, i in enumerate(indices.tolist()):
        expected[i] += weights[j]
    assert torch.allclose(features.grad.reshape(40, 3), expected)
    assert torch.allclose(features.grad.reshape(40, 3)[3], weights[0] + weights[3] + weights[5])


def test_gather_pixels_of_a_replace_sample_from_nchw_features():
    labels = make_labels({0: 30, 1: 3}, shape=(2, 4, 5))
    indices, _ = sample(labels, max_samples=16, mode="replace", seed=2)
    nchw = torch.randn(2, 7, 4, 5)
    rows = gather_pixels(nchw.permute(0, 2, 3, 1), indices)
    b, rest = indices // 20, indices % 20
    assert torch.equal(rows, nchw[b, :, rest // 5, rest % 5])


# -------------------------------------------------------------------------------------- InfoNCE


def reference_direction(queries, keys, labels, temperature):
    """L_{Q->K} as written in the method card, one scalar at a time."""
    n = queries.shape[0]
    total = 0.0
    for i in range(n):
        denominator = sum(torch.exp(queries[i] @ keys[k] / temperature) for k in range(n))
        positives = [p for p in range(n) if labels[p] == labels[i]]
        log_probs = [torch.log(torch.exp(queries[i] @ keys[p] / temperature) / denominator) for p in positives]
        total = total + sum(log_probs) / len(positives)
    return -total / n


def reference_loss(z_a, z_b, labels, temperature):
    forward = reference_direction(z_a, z_b, labels, temperature)
    backward = reference_direction(z_b, z_a, labels, temperature)
    return 0.5 * (forward + backward)


def unit(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


@pytest.mark.parametrize(
    "labels",
    [torch.tensor([0, 1, 2, 0, 1, 2, 2, 5, 0, 1]), torch.zeros(10, dtype=torch.int64), torch.arange(10)],
    ids=["mixed", "one-class", "all-distinct"],
)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_infonce_matches_the_double_loop_reference(labels, temperature):
    z_a, z_b = unit(10, 6, 0), unit(10, 6, 1)
    got = cross_modal_infonce(z_a, z_b, labels, temperature)
    want = reference_loss(z_a.double(), z_b.double(), labels, temperature)
    assert got.dtype == torch.float32 and got.ndim == 0
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=1e-5)
    sg = cross_modal_infonce(z_a, z_b, labels, temperature, stop_grad_keys=True)
    assert torch.allclose(sg, got, atol=1e-6)


def test_infonce_gradients_match_the_reference():
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    z_a, z_b = unit(6, 4, 2).requires_grad_(), unit(6, 4, 3).requires_grad_()
    cross_modal_infonce(z_a, z_b, labels, 0.1).backward()
    r_a, r_b = z_a.detach().clone().requires_grad_(), z_b.detach().clone().requires_grad_()
    reference_loss(r_a, r_b, labels, 0.1).backward()
    assert torch.allclose(z_a.grad, r_a.grad, atol=1e-5) and torch.allclose(z_b.grad, r_b.grad, atol=1e-5)


def test_infonce_gradcheck_in_float64():
    labels = torch.tensor([0, 0, 1, 2, 1])
    z_a, z_b = unit(5, 3, 4, torch.float64).requires_grad_(), unit(5, 3, 5, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: cross_modal_infonce(a, b, labels, 0.2), (z_a, z_b))


def test_stop_grad_keys_detaches_the_keys_of_each_direction():
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    z_a, z_b = unit(6, 4, 6).requires_grad_(), unit(6, 4, 7).requires_grad_()
    cross_modal_infonce(z_a, z_b, labels, 0.1, stop_grad_keys=True).backward()
    # A->B with z_b detached moves only z_a; B->A with z_a detached moves only z_b
    r_a, r_b = z_a.detach().clone().requires_grad_(), z_b.detach().clone().requires_grad_()
    (0.5 * reference_direction(r_a, r_b.detach(), labels, 0.1)).backward()
    (0.5 * reference_direction(r_b, r_a.detach(), labels, 0.1)).backward()
    assert torch.allclose(z_a.grad, r_a.grad, atol=1e-5) and torch.allclose(z_b.grad, r_b.grad, atol=1e-5)
    full_a = z_a.detach().clone().requires_grad_()
    cross_modal_infonce(full_a, z_b.detach(), labels, 0.1).backward()
    assert not torch.allclose(full_a.grad, z_a.grad, atol=1e-4)  # the key path really was cut


def test_infonce_of_no_samples_is_a_differentiable_zero():
    z_a, z_b = torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4, requires_grad=True)
    loss = cross_modal_infonce(z_a, z_b, torch.zeros(0, dtype=torch.int64))
    assert loss.item() == 0.0 and loss.requires_grad and loss.dtype == torch.float32
    (loss + 1.0).backward()
    assert z_a.grad.shape == (0, 4) and z_b.grad.shape == (0, 4)
    plain = cross_modal_infonce(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert plain.item() == 0.0 and not plain.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_an_fp32_loss(dtype):
    labels = torch.arange(64) % 5
    z_a, z_b = unit(64, 32, 8), unit(64, 32, 9)
    half_a, half_b = z_a.to(dtype).requires_grad_(), z_b.to(dtype).requires_grad_()
    loss = cross_modal_infonce(half_a, half_b, labels, 0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    on_rounded = cross_modal_infonce(half_a.detach().float(), half_b.detach().float(), labels, 0.1)
    assert torch.allclose(loss, on_rounded, atol=1e-6)
    assert torch.allclose(loss, cross_modal_infonce(z_a, z_b, labels, 0.1), atol=0.05)
    loss.backward()
    assert half_a.grad.dtype == dtype and torch.isfinite(half_a.grad.float()).all()


def test_infonce_rejects_bad_shapes_and_temperatures():
    z = unit(4, 3, 0)
    with pytest.raises(ValueError):
        cross_modal_infonce(z, unit(5, 3, 1), torch.arange(4))
    with pytest.raises(ValueError):
        cross_modal_infonce(z, z, torch.arange(5))
    with pytest.raises(ValueError):
        cross_modal_infonce(z, z, torch.arange(4), 0.0)


# ------------------------------------------------------------------------------------ per-image quotas


@pytest.mark.parametrize("mode", MODES)
def test_per_image_quotas_follow_contrastiveseg_rule(mode):
    labels = torch.stack([make_labels(seed=s) for s in range(3)]).reshape(3, 3 * 17, 23)
    labels[1] = IGNORE
    indices, classes = sample(labels, max_samples=200, max_views=100, mode=mode, per_image=True)
    per_image = labels.reshape(3, -1)
    expected: dict[tuple[int, int], int] = {}
    pairs = {(b, c): int((per_image[b] == c).sum()) for b in range(3) for c in range(6)}
    present = {pair: n for pair, n in pairs.items() if n >= 2}
    k = min(100, 200 // len(present))
    for pair, n in present.items():
        if mode == "replace" or n >= k:
            expected[pair] = k
        elif mode == "all":
            expected[pair] = n
    image = indices // per_image.shape[1]
    got: dict[tuple[int, int], int] = {}
    for b, c in zip(image.tolist(), classes.tolist(), strict=True):
        got[(b, c)] = got.get((b, c), 0) + 1
    assert got == expected
    assert torch.equal(labels.reshape(-1)[indices], classes)


def test_per_image_with_one_image_is_the_batch_rule():
    labels = make_labels().reshape(1, 3 * 17, 23)
    for mode in MODES:
        batch = sample(labels, max_samples=64, mode=mode, seed=4)
        single = sample(labels, max_samples=64, mode=mode, seed=4, per_image=True)
        assert torch.equal(batch[0], single[0]) and torch.equal(batch[1], single[1])


@pytest.mark.parametrize("mode", MODES)
def test_naive_per_image_baseline_takes_the_same_counts(mode):
    labels = torch.stack([make_labels(seed=s) for s in range(2)]).reshape(2, 3 * 17, 23)
    kwargs = {"max_samples": 150, "max_views": 100, "mode": mode, "per_image": True, "ignore_index": IGNORE}
    reference = sample(labels, seed=1, **kwargs)
    naive = naive_class_balanced_sample(labels, 6, seed=1, **kwargs)
    width = labels[0].numel()

    def group_counts(indices, classes):
        return counts_of(indices // width * 6 + classes)

    assert group_counts(*naive) == group_counts(*reference)


def test_per_image_needs_batched_labels():
    with pytest.raises(ValueError, match="per_image quotas need"):
        sample(make_labels().reshape(-1), per_image=True)


# ------------------------------------------------- the fast reference against the specification


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("oversample", [None, 1.0])  # 1.0: every large group comes up short and is repaired
def test_threshold_filter_returns_exactly_the_specification(mode, per_image, oversample):
    """`class_balanced_sample_torch` sorts only candidates; `select_class_balanced` sorts every pixel."""
    from mmbench.kernels.sampling import class_balanced_sample_torch, image_size

    generator = torch.Generator().manual_seed(3)
    for trial in range(6):
        batch, side = 1 + trial % 3, 9 + 7 * trial
        labels = torch.randint(0, 5, (batch, side, side + 3), generator=generator)
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = IGNORE
        kwargs = {
            "max_samples": 40 + 90 * trial,
            "max_views": 10 + 30 * trial,
            "min_pixels": 2,
            "seed": trial,
            "ignore_index": IGNORE,
            "mode": mode,
        }
        fast = class_balanced_sample_torch(labels, 5, per_image=per_image, oversample=oversample, **kwargs)
        spec = select_class_balanced(
            labels.reshape(-1), pixel_keys(labels.numel(), trial), 5, image_size=image_size(labels, per_image), **kwargs
        )
        assert torch.equal(fast[0], spec[0]) and torch.equal(fast[1], spec[1]), (trial, kwargs)


def test_hard_easy_sample_splits_each_class_quota_as_contrastiveseg_does():
    """K = min(max_views, max_samples // classes): half hard, half easy; a short kind is taken whole and the
    other fills the quota; a class smaller than K gives every pixel; seeded and in (class, index) order."""
    from mmbench.kernels.psa import hard_easy_sample

    labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 6 + [255] * 4)
    hard = torch.zeros_like(labels, dtype=torch.bool)
    hard[:20] = True  # class 0: 20 hard, 20 easy
    hard[40:43] = True  # class 1: 3 hard, 37 easy
    hard[80:86] = True  # class 2: 6 pixels, all hard
    indices, picked = hard_easy_sample(labels, hard, 3, max_samples=30, max_views=100, seed=5)  # K = 10
    kinds = hard[indices]
    counts = {c: (int(kinds[picked == c].sum()), int((~kinds[picked == c]).sum())) for c in range(3)}
    assert counts == {0: (5, 5), 1: (3, 7), 2: (6, 0)}
    assert torch.equal(labels[indices], picked) and (picked != 255).all()
    again, _ = hard_easy_sample(labels, hard, 3, max_samples=30, max_views=100, seed=5)
    other, _ = hard_easy_sample(labels, hard, 3, max_samples=30, max_views=100, seed=6)
    assert torch.equal(indices, again) and not torch.equal(indices, other)
    assert torch.equal(picked, picked.sort().values)


def test_the_cpu_backend_runs_the_fused_cpu_loss_and_auto_follows_auto_on_cpu():
    from mmbench.kernels import psa
    from mmbench.kernels.infonce import cross_modal_infonce_torch
    from mmbench.kernels.infonce_cpu import cross_modal_infonce_cpu

    cpu = torch.device("cpu")
    assert psa.resolve_backend("cross_modal_infonce", "cpu", cpu) is cross_modal_infonce_cpu
    assert psa.resolve_backend("cross_modal_infonce", "torch", cpu) is cross_modal_infonce_torch
    expected = {"cpu": cross_modal_infonce_cpu, "torch": cross_modal_infonce_torch}[psa.AUTO_ON_CPU]
    assert psa.resolve_backend("cross_modal_infonce", "auto", cpu) is expected
    with pytest.raises(ValueError, match="backend='cpu' runs on CPU tensors only"):
        psa.resolve_backend("cross_modal_infonce", "cpu", torch.device("cuda"))
    z = torch.nn.functional.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.arange(40) % 3
    torch.testing.assert_close(
        psa.cross_modal_infonce(z, z.flip(0), labels, backend="cpu"),
        psa.cross_modal_infonce(z, z.flip(0), labels, backend="torch"),
        rtol=1e-5,
        atol=1e-6,
    )
