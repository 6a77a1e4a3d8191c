"""Class-balanced pixel sampling for PSA: the PyTorch reference and a naive baseline.

The reference is the contract a later Triton kernel must reproduce bit for bit, so its randomness is
*counter-based*: every pixel gets a 64-bit key `mix64(pixel_id * GOLDEN + base(seed))`, a pure
function of (seed, flat pixel id), and each class keeps the pixels with the smallest keys. No RNG
state is read or advanced, so the draw does not depend on the device, on how the pixels are split
into blocks or programs, on the order they are visited in, or on anything else the caller did with
`torch.manual_seed`. A kernel reproduces it with uint64 arithmetic (multiplication wraps, shifts are
logical) and by comparing keys as *signed* int64, which is the order used here.

Everything is vectorised: two sorts (by key, then stably by class) and a rank from the class counts
replace the usual per-(image, class) loop of `nonzero` and `randperm`. Host synchronisations: the
label-range check, the quota (it needs the number of present classes) and the output size (which is
data-dependent in modes "all" and "drop"); a fixed number, independent of images and classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MODES = ("all", "replace", "drop")

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64 increment (odd, so `id * GOLDEN` is a bijection mod 2**64)
_MUL1 = 0xBF58476D1CE4E5B9  # splitmix64 finaliser multipliers (Stafford's "Mix13")
_MUL2 = 0x94D049BB133111EB
_STREAM_PIXELS = 0  # stream of per-pixel keys
_STREAM_REPLACE = 1  # stream of with-replacement draws, counter (class << 32) | slot


def _as_int64(value: int) -> int:
    """The int64 with the same 64 bits as `value` (torch scalars must fit in a signed int64)."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _shr(x: Tensor, shift: int) -> Tensor:
    """Logical right shift of int64 bits; torch's `>>` is arithmetic and would copy the sign bit."""
    return (x >> shift) & ((1 << (64 - shift)) - 1)


def mix64(x: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 tensors: a bijection of the 64 bits, identical on CPU and CUDA.

    Multiplications wrap modulo 2**64 (two's complement), which gives the same bits as the unsigned
    arithmetic of the published algorithm; the tests check it against splitmix64's test vector.
    """
    x = (x ^ _shr(x, 30)) * _as_int64(_MUL1)
    x = (x ^ _shr(x, 27)) * _as_int64(_MUL2)
    return x ^ _shr(x, 31)


def _mix64_int(value: int) -> int:
    """`mix64` for one Python integer (unsigned result), used to derive the per-call base from the seed."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * _MUL1) & _MASK64
    value = ((value ^ (value >> 27)) * _MUL2) & _MASK64
    return value ^ (value >> 31)


def _stream_base(seed: int, stream: int) -> int:
    """Offset for one (seed, stream): mixed twice so that nearby seeds give unrelated key sequences."""
    return _as_int64(_mix64_int(_mix64_int(seed) ^ ((stream * _GOLDEN) & _MASK64)))


def counter_keys(counters: Tensor, seed: int, stream: int = _STREAM_PIXELS) -> Tensor:
    """Pseudo-random int64 keys for integer counters (pixel ids): a pure function of (seed, stream, counter).

    For a fixed seed the map counter -> key is a bijection, so distinct pixels never tie and "the K
    smallest keys" is a well-defined set whatever order the pixels are visited in.
    """
    return mix64(counters.long() * _as_int64(_GOLDEN) + _stream_base(seed, stream))


def pixel_keys(num_pixels: int, seed: int, device: torch.device | str | None = None) -> Tensor:
    """The sampling key of every flat pixel id `0 .. num_pixels - 1`."""
    return counter_keys(torch.arange(num_pixels, dtype=torch.int64, device=device), seed)


def empty_sample(device: torch.device) -> tuple[Tensor, Tensor]:
    empty = torch.empty(0, dtype=torch.int64, device=device)
    return empty, empty.clone()


def validate_sample_args(
    labels: Tensor, num_classes: int, max_samples: int, max_views: int, min_pixels: int, seed: int, mode: str
) -> None:
    """Argument checks shared by every backend and the naive baseline (no data access, no sync)."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    for name, value, low in (
        ("num_classes", num_classes, 1),
        ("max_samples", max_samples, 1),
        ("max_views", max_views, 1),
        ("min_pixels", min_pixels, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def check_label_range(flat: Tensor, valid: Tensor, num_classes: int, ignore_index: int) -> None:
    """Labels other than `ignore_index` must be class ids; a stray value is a data bug, not a class."""
    bad = valid & ((flat < 0) | (flat >= num_classes))
    if bool(bad.any()):
        value = int(flat[bad][0])
        raise ValueError(f"label {value} is neither a class id in [0, {num_classes}) nor ignore_index={ignore_index}")


def quota(num_present: int, max_samples: int, max_views: int) -> int:
    """Samples per class, K = min(max_views, max_samples // number of present classes)."""
    return min(max_views, max_samples // num_present) if num_present else 0


INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class QuotaPlan:
    """What the histogram decides: the quota K, which groups are sampled, and each one's key threshold.

    The fast paths keep only the pixels whose key is at most their group's threshold, chosen so that a
    large group keeps about K + 5 sqrt(K) + 8 candidates (binomial: fewer than K has probability
    about 1e-6 or less); smaller groups keep every pixel. The K smallest keys of a group are all
    candidates unless the group comes up short, which `short_groups` detects and the callers repair
    by taking that group whole, so the result is always exactly the specification's.
    """

    k: int
    counts: list[int]
    sampled: list[bool]
    thresholds: list[int]

    def needed(self) -> list[int]:
        """Candidates each group must have for the selection to be exact."""
        return [min(n, self.k) if s else 0 for s, n in zip(self.sampled, self.counts, strict=True)]

    def short_groups(self, got: list[int]) -> list[bool]:
        return [g < need for g, need in zip(got, self.needed(), strict=True)]

    def take_whole(self, groups: list[bool]) -> QuotaPlan:
        thresholds = [INT64_MAX if whole else t for whole, t in zip(groups, self.thresholds, strict=True)]
        return QuotaPlan(self.k, self.counts, self.sampled, thresholds)


def oversampled_count(k: int) -> float:
    """Expected candidates per large group: K plus ~5 standard deviations of the binomial, plus slack."""
    return k + 5.0 * math.sqrt(k) + 8.0


def key_threshold(expected: float, size: int) -> int:
    """Signed key threshold t with P(key <= t) = expected / size (keys are uniform over int64)."""
    fraction = expected / size
    if fraction >= 1.0:
        return INT64_MAX
    return -(1 << 63) + int(fraction * (1 << 64)) - 1


def plan_quota(
    counts: list[int], *, max_samples: int, max_views: int, min_pixels: int, mode: str, oversample: float | None = None
) -> QuotaPlan:
    present = [n >= min_pixels for n in counts]
    k = quota(sum(present), max_samples, max_views)
    sampled = [p and k > 0 and (mode != "drop" or n >= k) for p, n in zip(present, counts, strict=True)]
    expected = oversample if oversample is not None else oversampled_count(k)
    thresholds = [
        key_threshold(expected, n) if s and n > k else INT64_MAX for s, n in zip(sampled, counts, strict=True)
    ]
    return QuotaPlan(k, counts, sampled, thresholds)


def take_ranks(
    by_key: Tensor, groups: Tensor, sizes: Tensor, k: int, seed: int, mode: str, num_classes: int, num_positions: int
) -> tuple[Tensor, Tensor]:
    """From each sampled group's pixels in key order (one row per group, padded), the specification's
    selection: the first min(K, n) (modes "all"/"drop") or K ranks (mode "replace"), canonically ordered."""
    if mode == "replace":
        ranks = replacement_ranks(groups, sizes, k, seed)
        keep = torch.ones_like(ranks, dtype=torch.bool)
    else:
        ranks = torch.arange(k, device=by_key.device).expand(groups.numel(), k)
        keep = ranks < sizes.unsqueeze(1)
    positions = by_key.gather(1, ranks)[keep]
    labels = (groups % num_classes).unsqueeze(1).expand(-1, k)[keep]
    return canonical_order(positions, labels, num_positions)


def _group_by_class(bucket: Tensor, keys: Tensor, num_buckets: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixels ordered by (bucket, key), each pixel's rank in its bucket, and the bucket starts and sizes.

    LSD radix order: sort by key, then *stably* by bucket, so keys stay ascending inside each bucket.
    """
    by_key = torch.argsort(keys, stable=True)
    order = by_key[torch.argsort(bucket[by_key], stable=True)]
    sorted_bucket = bucket[order]
    sizes = torch.bincount(bucket, minlength=num_buckets)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(order.numel(), device=order.device) - starts[sorted_bucket]
    return order, rank, starts, sizes


def canonical_order(positions: Tensor, classes: Tensor, num_positions: int) -> tuple[Tensor, Tensor]:
    """Sort by (class, position) so that equal samples always come out as equal tensors."""
    order = torch.argsort(classes * num_positions + positions, stable=True)
    return positions[order], classes[order]


def replacement_ranks(classes: Tensor, sizes: Tensor, k: int, seed: int) -> Tensor:
    """(len(classes), k) ranks into each group's key-sorted pixels for mode "replace".

    A group with n >= k takes ranks 0..k-1 (its k smallest keys); a smaller one draws k ranks in
    [0, n) i.i.d. from counter keys of (group << 32 | slot), so the draw is layout-free as well.
    """
    slots = torch.arange(k, device=classes.device)
    size = sizes.long().unsqueeze(1)
    counters = (classes.long().unsqueeze(1) << 32) | slots
    draws = _shr(counter_keys(counters, seed, _STREAM_REPLACE), 1) % size  # 63 bits: modulo bias ~ n/2**63
    return torch.where(size >= k, slots, draws)


def sampling_groups(flat: Tensor, num_classes: int, image_size: int | None) -> tuple[Tensor, int]:
    """Each pixel's quota group and the number of groups: its class, or (image, class) per image.

    `image_size=None` gives the batch-level rule (one quota per class over the whole batch);
    an image size gives ContrastiveSeg's rule, one quota per (image, class) pair.
    """
    if image_size is None:
        return flat, num_classes
    image = torch.arange(flat.numel(), device=flat.device) // image_size
    return image * num_classes + flat, (flat.numel() // image_size) * num_classes


def select_class_balanced(
    flat_labels: Tensor,
    keys: Tensor,
    num_classes: int,
    *,
    max_samples: int,
    max_views: int,
    min_pixels: int,
    seed: int,
    ignore_index: int,
    mode: str,
    image_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per group, the quota of positions with the smallest `keys`; returns (positions, labels) canonically.

    Groups are classes, or (image, class) pairs when `image_size` is given (see `sampling_groups`).
    Split from the key computation so that tests can show the choice is layout-free: the pixels a
    class keeps depend only on the (key, label) pairs, not on where they sit in `flat_labels`.
    In mode "replace" a group with n < K draws K ranks in [0, n) i.i.d. from counter keys of
    (group, slot), then takes the pixels of those ranks in key order, so it is layout-free as well.
    """
    device = flat_labels.device
    flat = flat_labels.long()
    num_positions = flat.numel()
    valid = flat != ignore_index
    check_label_range(flat, valid, num_classes, ignore_index)

    group, num_groups = sampling_groups(flat, num_classes, image_size)
    sentinel = num_groups  # bucket of ignored pixels and of groups that are not sampled
    bucket = torch.where(valid, group, sentinel)
    counts = torch.bincount(bucket, minlength=num_groups + 1)[:num_groups]
    present = counts >= min_pixels
    k = quota(int(present.sum()), max_samples, max_views)  # host sync: the quota sizes the output
    if k == 0:
        return empty_sample(device)
    sampled = present & (counts >= k) if mode == "drop" else present
    bucket = torch.where(torch.cat([sampled, sampled.new_zeros(1)])[bucket], bucket, sentinel)
    order, rank, starts, sizes = _group_by_class(bucket, keys, num_groups + 1)

    if mode == "replace":
        groups = torch.nonzero(sampled).squeeze(1)
        ranks = replacement_ranks(groups, sizes[groups], k, seed)
        positions = order[(starts[groups].unsqueeze(1) + ranks).reshape(-1)]
        labels = (groups % num_classes).repeat_interleave(k)
    else:
        take = (bucket[order] != sentinel) & (rank < k)
        positions = order[take]
        labels = flat[positions]
    return canonical_order(positions, labels, num_positions)


def class_balanced_sample_torch(
    labels: Tensor,
    num_classes: int,
    *,
    max_samples: int = 1024,
    max_views: int = 100,
    min_pixels: int = 2,
    seed: int = 0,
    ignore_index: int = 255,
    mode: str = "all",
    per_image: bool = False,
    oversample: float | None = None,
) -> tuple[Tensor, Tensor]:
    """PyTorch reference of `mmbench.kernels.psa.class_balanced_sample` (arguments already validated).

    Returns exactly what `select_class_balanced` (the specification: sort every pixel by group and
    key) returns, but sorts only the candidates under each group's key threshold (`QuotaPlan`):
    O(P) elementwise work and one `nonzero` instead of two sorts of all P pixels. Host syncs: the
    label check, the histogram (the quota needs it) and the candidate counts.
    """
    flat = labels.reshape(-1).long()
    device = flat.device
    valid = flat != ignore_index
    check_label_range(flat, valid, num_classes, ignore_index)
    group, num_groups = sampling_groups(flat, num_classes, image_size(labels, per_image))
    bucket = torch.where(valid, group, num_groups)
    plan = plan_quota(
        torch.bincount(bucket, minlength=num_groups + 1)[:num_groups].tolist(),
        max_samples=max_samples,
        max_views=max_views,
        min_pixels=min_pixels,
        mode=mode,
        oversample=oversample,
    )
    if not any(plan.sampled):
        return empty_sample(device)
    keys = pixel_keys(flat.numel(), seed, device)
    sampled = torch.tensor([*plan.sampled, False], device=device)[bucket]
    while True:
        limits = torch.tensor([*plan.thresholds, 0], dtype=torch.int64, device=device)
        candidates = torch.nonzero(sampled & (keys <= limits[bucket])).squeeze(1)
        cand_bucket = bucket[candidates]
        got = torch.bincount(cand_bucket, minlength=num_groups).tolist()
        short = plan.short_groups(got)
        if not any(short):
            break
        plan = plan.take_whole(short)  # rare (see QuotaPlan): those groups keep every pixel
    order, rank, starts, sizes = _group_by_class(cand_bucket, keys[candidates], num_groups)
    groups = torch.tensor([g for g, s in enumerate(plan.sampled) if s], dtype=torch.int64, device=device)
    width = max(plan.k, int(sizes.max()))
    by_key = torch.full((num_groups, width), -1, dtype=torch.int64, device=device)
    by_key[cand_bucket[order], rank] = candidates[order]
    counts = torch.tensor(plan.counts, dtype=torch.int64, device=device)
    return take_ranks(by_key[groups], groups, counts[groups], plan.k, seed, mode, num_classes, flat.numel())


def image_size(labels: Tensor, per_image: bool) -> int | None:
    """Pixels per image of (B, H, W) labels when quotas are per image, else None."""
    if not per_image:
        return None
    if labels.ndim != 3:
        raise ValueError(f"per_image quotas need (B, H, W) labels, got shape {tuple(labels.shape)}")
    return labels.shape[1] * labels.shape[2]


def naive_class_balanced_sample(
    labels: Tensor,
    num_classes: int,
    *,
    max_samples: int = 1024,
    max_views: int = 100,
    min_pixels: int = 2,
    seed: int = 0,
    ignore_index: int = 255,
    mode: str = "all",
    per_image: bool = False,
) -> tuple[Tensor, Tensor]:
    """NAIVE BASELINE: the same quota rule written like common pixel-contrast code (ContrastiveSeg, ReCo).

    Python loops over images (per-image quotas) and classes with `nonzero` and CPU `randperm` /
    `randint` from a `torch.Generator` seeded with `seed`. It is a different RNG, so it picks *other*
    pixels than the reference, but the same number per group from the same candidates; it exists for
    tests and as the benchmark's eager baseline. It does not touch the global RNG either.
    """
    validate_sample_args(labels, num_classes, max_samples, max_views, min_pixels, seed, mode)
    size = image_size(labels, per_image)
    flat = labels.reshape(-1).long()
    valid = flat != ignore_index
    check_label_range(flat, valid, num_classes, ignore_index)
    generator = torch.Generator().manual_seed(seed & _MASK64)
    images = [flat] if size is None else list(flat.split(size))

    candidates = []
    for number, image in enumerate(images):
        offset = 0 if size is None else number * size
        for c in torch.unique(image).tolist():
            if c == ignore_index:
                continue
            where = torch.nonzero(image == c).squeeze(1) + offset
            if where.numel() >= min_pixels:
                candidates.append((c, where))
    k = quota(len(candidates), max_samples, max_views)

    picked = []
    for c, where in candidates:
        n = where.numel()
        if n >= k:
            choice = where[torch.randperm(n, generator=generator)[:k].to(where.device)]
        elif mode == "all":
            choice = where
        elif mode == "drop":
            continue
        else:
            choice = where[torch.randint(n, (k,), generator=generator).to(where.device)]
        picked.append((c, choice))
    if not picked:
        return empty_sample(flat.device)
    indices = torch.cat([choice for _, choice in picked])
    classes = torch.cat([torch.full_like(choice, c) for c, choice in picked])
    return canonical_order(indices, classes, flat.numel())


def gather_pixels_torch(features: Tensor, indices: Tensor) -> Tensor:
    """PyTorch reference of `mmbench.kernels.psa.gather_pixels` (arguments already validated).

    The backward of advanced indexing is `index_put_(accumulate=True)`, which has a deterministic
    CUDA path under `torch.use_deterministic_algorithms(True)`. A permuted NCHW view is copied once
    by the reshape, which is what a channels-last projection head avoids.
    """
    return features.reshape(-1, features.shape[-1])[indices.long()]


def hard_easy_sample_torch(
    labels: Tensor,
    hard: Tensor,
    num_classes: int,
    *,
    max_samples: int = 1024,
    max_views: int = 100,
    min_pixels: int = 2,
    seed: int = 0,
    ignore_index: int = 255,
) -> tuple[Tensor, Tensor]:
    """Class-balanced sample whose per-class quota is split between hard and easy pixels.

    ContrastiveSeg's anchor rule (`_hard_anchor_sampling` in github.com/tfzhou/ContrastiveSeg
    `lib/loss/loss_contrast.py`): of a class's K = min(max_views, max_samples // present classes)
    anchors, half are *hard* (`hard` is True: the network currently misclassifies them) and half
    *easy*; when one kind has fewer than K/2 pixels, all of them are taken and the other kind fills
    the quota. A class with fewer than K pixels gives all of them (mode "all"; ContrastiveSeg drops
    such classes instead). Within each (class, kind) the pixels with the smallest counter keys are
    taken, so the draw is seeded and layout-free like `select_class_balanced`. Output sorted by
    (class, index), as every sampler here.
    """
    flat = labels.reshape(-1).long()
    device = flat.device
    valid = flat != ignore_index
    check_label_range(flat, valid, num_classes, ignore_index)
    if hard.shape != labels.shape or hard.dtype != torch.bool:
        raise ValueError(f"hard must be a bool tensor shaped like labels {tuple(labels.shape)}")
    counts = torch.bincount(torch.where(valid, flat, num_classes), minlength=num_classes + 1)[:num_classes]
    present = counts >= min_pixels
    k = quota(int(present.sum()), max_samples, max_views)
    if k == 0:
        return empty_sample(device)
    is_hard = hard.reshape(-1).long()
    sentinel = 2 * num_classes
    bucket = torch.where(valid & present[flat.clamp(0, num_classes - 1)], flat * 2 + is_hard, sentinel)
    sizes = torch.bincount(bucket, minlength=sentinel + 1)[:sentinel].view(num_classes, 2)
    n_easy, n_hard = sizes[:, 0], sizes[:, 1]
    half = k // 2
    # ContrastiveSeg: hard keeps K/2 unless easy is short, then the rest; easy fills what is left.
    hard_target = torch.minimum(n_hard, torch.maximum(torch.full_like(n_hard, half), k - n_easy))
    easy_target = torch.minimum(n_easy, k - hard_target)
    targets = torch.cat([torch.stack([easy_target, hard_target], 1).reshape(-1), torch.zeros(1, dtype=torch.long)])
    keys = pixel_keys(flat.numel(), seed, device)
    order, rank, _, _ = _group_by_class(bucket, keys, sentinel + 1)
    take = rank < targets.to(device)[bucket[order]]
    positions = order[take]
    return canonical_order(positions, flat[positions], flat.numel())
