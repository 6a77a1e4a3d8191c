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
    """(len(classes), k) ranks into each class's key-sorted pixels for mode "replace".

    A class with n_c >= k takes ranks 0..k-1 (its k smallest keys); a smaller one draws k ranks in
    [0, n_c) i.i.d. from counter keys of (class << 32 | slot), so the draw is layout-free as well.
    """
    slots = torch.arange(k, device=classes.device)
    size = sizes.long().unsqueeze(1)
    counters = (classes.long().unsqueeze(1) << 32) | slots
    draws = _shr(counter_keys(counters, seed, _STREAM_REPLACE), 1) % size  # 63 bits: modulo bias ~ n/2**63
    return torch.where(size >= k, slots, draws)


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
) -> tuple[Tensor, Tensor]:
    """Per class, the quota of positions with the smallest `keys`; returns (positions, labels) canonically.

    Split from the key computation so that tests can show the choice is layout-free: the pixels a
    class keeps depend only on the (key, label) pairs, not on where they sit in `flat_labels`.
    In mode "replace" a class with n_c < K draws K ranks in [0, n_c) i.i.d. from counter keys of
    (class, slot), then takes the pixels of those ranks in key order, so it is layout-free as well.
    """
    device = flat_labels.device
    flat = flat_labels.long()
    num_positions = flat.numel()
    valid = flat != ignore_index
    check_label_range(flat, valid, num_classes, ignore_index)

    sentinel = num_classes  # bucket of ignored pixels and of classes that are not sampled
    bucket = torch.where(valid, flat, sentinel)
    counts = torch.bincount(bucket, minlength=num_classes + 1)[:num_classes]
    present = counts >= min_pixels
    k = quota(int(present.sum()), max_samples, max_views)  # host sync: the quota sizes the output
    if k == 0:
        return empty_sample(device)
    sampled = present & (counts >= k) if mode == "drop" else present
    bucket = torch.where(torch.cat([sampled, sampled.new_zeros(1)])[bucket], bucket, sentinel)
    order, rank, starts, sizes = _group_by_class(bucket, keys, num_classes + 1)

    if mode == "replace":
        classes = torch.nonzero(sampled).squeeze(1)
        ranks = replacement_ranks(classes, sizes[classes], k, seed)
        positions = order[(starts[classes].unsqueeze(1) + ranks).reshape(-1)]
        labels = classes.repeat_interleave(k)
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
) -> tuple[Tensor, Tensor]:
    """PyTorch reference of `mmbench.kernels.psa.class_balanced_sample` (arguments already validated)."""
    flat = labels.reshape(-1)
    keys = pixel_keys(flat.numel(), seed, flat.device)
    return select_class_balanced(
        flat,
        keys,
        num_classes,
        max_samples=max_samples,
        max_views=max_views,
        min_pixels=min_pixels,
        seed=seed,
        ignore_index=ignore_index,
        mode=mode,
    )


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
) -> tuple[Tensor, Tensor]:
    """NAIVE BASELINE: the same quota rule written like common pixel-contrast code (ContrastiveSeg, ReCo).

    A Python loop over classes with `nonzero` and CPU `randperm` / `randint` from a `torch.Generator`
    seeded with `seed`. It is a different RNG, so it picks *other* pixels than the reference, but the
    same number per class from the same candidates; it exists for tests and as the benchmark's eager
    baseline. It does not touch the global RNG either.
    """
    validate_sample_args(labels, num_classes, max_samples, max_views, min_pixels, seed, mode)
    flat = labels.reshape(-1).long()
    valid = flat != ignore_index
    check_label_range(flat, valid, num_classes, ignore_index)
    generator = torch.Generator().manual_seed(seed & _MASK64)

    candidates = []
    for c in range(num_classes):
        where = torch.nonzero(valid & (flat == c)).squeeze(1)
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
        picked.append((c, torch.sort(choice).values))
    if not picked:
        return empty_sample(flat.device)
    indices = torch.cat([choice for _, choice in picked])
    classes = torch.cat([torch.full_like(choice, c) for c, choice in picked])
    return indices, classes


def gather_pixels_torch(features: Tensor, indices: Tensor) -> Tensor:
    """PyTorch reference of `mmbench.kernels.psa.gather_pixels` (arguments already validated).

    The backward of advanced indexing is `index_put_(accumulate=True)`, which has a deterministic
    CUDA path under `torch.use_deterministic_algorithms(True)`. A permuted NCHW view is copied once
    by the reshape, which is what a channels-last projection head avoids.
    """
    return features.reshape(-1, features.shape[-1])[indices.long()]
