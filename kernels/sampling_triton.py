"""Triton class-balanced pixel sampler: bit-identical to the reference in `sampling.py`.

Two passes over the labels, no float atomics, no RNG state:

1. `_class_histogram_kernel`: per-block `tl.histogram` of (class | ignore | out-of-range) buckets,
   added into an int32 histogram with integer atomics (order-free, so exact).
2. `_candidate_kernel`: every pixel computes its splitmix64 key from (seed, flat pixel id), exactly
   as the reference does, and a pixel of a sampled class whose key is at most its class's threshold
   claims a slot in that class's candidate buffer with an integer `atomic_add`.

The host reads the histogram once (the quota needs the number of present classes, like the
reference), and picks per-class thresholds so that each large class keeps about
K + 5 sqrt(K) + 8 candidates (binomially distributed). The K smallest keys of a class are then all
candidates unless fewer than K keys fall under the threshold, which the host detects from the slot
counters and repairs by re-running that pass with "take every pixel" for the short classes (the
probability is about 1e-6 or less per class and step; a test forces it). The small candidate buffers
(classes x capacity) are sorted by key in PyTorch, so the slot order the atomics produced never
matters: the output is the reference's, whatever the grid, block size or launch order.

Bytes that must move: the labels, twice (int64: 16 B per pixel), plus the candidates (~12 B x
classes x capacity); the key is computed, never stored.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from .sampling import (
    _GOLDEN,
    _MUL1,
    _MUL2,
    _STREAM_PIXELS,
    _stream_base,
    canonical_order,
    check_label_range,
    empty_sample,
    quota,
    replacement_ranks,
)
from .triton_runtime import check_launchable, next_power_of_2

INT64_MAX = (1 << 63) - 1
DEFAULT_BLOCK = 1024


@triton.jit
def _splitmix64_keys(pixel_ids, base):
    """`counter_keys` of the reference for int32 pixel ids: uint64 wrap-around, logical shifts, signed result."""
    x = pixel_ids.to(tl.uint64) * _GOLDEN_C + base.to(tl.int64).to(tl.uint64, bitcast=True)
    x = (x ^ (x >> 30)) * _MUL1_C
    x = (x ^ (x >> 27)) * _MUL2_C
    x = x ^ (x >> 31)
    return x.to(tl.int64, bitcast=True)


_GOLDEN_C = tl.constexpr(_GOLDEN)
_MUL1_C = tl.constexpr(_MUL1)
_MUL2_C = tl.constexpr(_MUL2)


@triton.jit
def _class_histogram_kernel(labels_ptr, counts_ptr, num_pixels, num_classes, ignore_index,
                            BLOCK: tl.constexpr, NUM_BINS: tl.constexpr):
    """counts[c] += pixels of class c; counts[C] ignored pixels; counts[C + 1] labels out of range."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < num_pixels
    label = tl.load(labels_ptr + offsets, mask=in_range, other=0).to(tl.int64)
    is_class = (label >= 0) & (label < num_classes)
    bucket = tl.where(label == ignore_index, num_classes, tl.where(is_class, label, num_classes + 1))
    bucket = tl.where(in_range, bucket, num_classes + 2)  # padding lanes land in a bin nobody reads
    histogram = tl.histogram(bucket.to(tl.int32), NUM_BINS)
    tl.atomic_add(counts_ptr + tl.arange(0, NUM_BINS), histogram)


@triton.jit
def _candidate_kernel(labels_ptr, thresholds_ptr, active_ptr, cursor_ptr, cand_keys_ptr, cand_pixels_ptr,
                      num_pixels, num_classes, ignore_index, base, capacity, BLOCK: tl.constexpr):
    """Pixels of active classes with key <= threshold[class] are appended to that class's buffer."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < num_pixels
    label = tl.load(labels_ptr + offsets, mask=in_range, other=0).to(tl.int64)
    is_class = in_range & (label != ignore_index) & (label >= 0) & (label < num_classes)
    cls = tl.where(is_class, label, 0)
    active = tl.load(active_ptr + cls, mask=is_class, other=0) != 0
    threshold = tl.load(thresholds_ptr + cls, mask=is_class, other=0)
    key = _splitmix64_keys(offsets, base)
    take = is_class & active & (key <= threshold)
    slot = tl.atomic_add(cursor_ptr + cls, 1, mask=take)
    keep = take & (slot < capacity)
    destination = cls * capacity + slot
    tl.store(cand_keys_ptr + destination, key, mask=keep)
    tl.store(cand_pixels_ptr + destination, offsets, mask=keep)


def _threshold(expected: float, size: int) -> int:
    """Signed key threshold t with P(key <= t) = expected / size (keys are uniform over int64)."""
    fraction = expected / size
    if fraction >= 1.0:
        return INT64_MAX
    return -(1 << 63) + int(fraction * (1 << 64)) - 1


def oversampled_count(k: int) -> float:
    """Expected candidates per large class: K plus ~5 standard deviations of the binomial, plus slack."""
    return k + 5.0 * math.sqrt(k) + 8.0


def _capacity(expected: float) -> int:
    return int(expected + 6.0 * math.sqrt(expected) + 16.0)


def class_histogram(flat: Tensor, num_classes: int, ignore_index: int, block: int) -> Tensor:
    """int32 histogram on the labels' device: [classes..., ignored, out of range, padding...]."""
    num_bins = next_power_of_2(num_classes + 3)
    counts = torch.zeros(num_bins, dtype=torch.int32, device=flat.device)
    grid = (triton.cdiv(flat.numel(), block),)
    _class_histogram_kernel[grid](flat, counts, flat.numel(), num_classes, ignore_index, BLOCK=block,
                                  NUM_BINS=num_bins)
    return counts


def collect_candidates(flat: Tensor, thresholds: list[int], active: list[bool], capacity: int, seed: int,
                       ignore_index: int, block: int) -> tuple[Tensor, Tensor, Tensor]:
    """One candidate pass: (per-class slot counters, keys (C, capacity), pixel ids (C, capacity))."""
    device = flat.device
    num_classes = len(thresholds)
    thresholds_t = torch.tensor(thresholds, dtype=torch.int64, device=device)
    active_t = torch.tensor(active, dtype=torch.int8, device=device)
    cursor = torch.zeros(num_classes, dtype=torch.int32, device=device)
    keys = torch.full((num_classes, capacity), INT64_MAX, dtype=torch.int64, device=device)
    pixels = torch.full((num_classes, capacity), -1, dtype=torch.int32, device=device)
    grid = (triton.cdiv(flat.numel(), block),)
    _candidate_kernel[grid](flat, thresholds_t, active_t, cursor, keys, pixels, flat.numel(), num_classes,
                            ignore_index, _stream_base(seed, _STREAM_PIXELS), capacity, BLOCK=block)
    return cursor, keys, pixels


def class_balanced_sample_triton(
    labels: Tensor,
    num_classes: int,
    *,
    max_samples: int = 1024,
    max_views: int = 100,
    min_pixels: int = 2,
    seed: int = 0,
    ignore_index: int = 255,
    mode: str = "all",
    block_size: int = DEFAULT_BLOCK,
    oversample: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Triton implementation of `mmbench.kernels.psa.class_balanced_sample` (arguments already validated).

    `block_size` (pixels per program) and `oversample` (expected candidates per large class; default
    `oversampled_count(K)`) change only the work split, never the result: tests vary both.
    """
    check_launchable(labels)
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    flat = labels.reshape(-1).contiguous()
    device = flat.device
    if flat.numel() == 0:
        return empty_sample(device)
    if flat.numel() >= 2**31:
        raise ValueError(f"{flat.numel()} pixels exceed the kernel's int32 pixel ids; sample per image instead")

    histogram = class_histogram(flat, num_classes, ignore_index, block_size).tolist()  # host sync 1
    if histogram[num_classes + 1]:
        check_label_range(flat.long(), flat != ignore_index, num_classes, ignore_index)  # raises, naming a value
    counts = histogram[:num_classes]
    present = [n >= min_pixels for n in counts]
    k = quota(sum(present), max_samples, max_views)
    if k == 0:
        return empty_sample(device)
    sampled = [p and (mode != "drop" or n >= k) for p, n in zip(present, counts, strict=True)]
    if not any(sampled):
        return empty_sample(device)

    expected = oversample if oversample is not None else oversampled_count(k)
    large = [s and n > k for s, n in zip(sampled, counts, strict=True)]
    thresholds = [_threshold(expected, n) if big else INT64_MAX for big, n in zip(large, counts, strict=True)]
    needed = [min(n, _capacity(expected)) if big else (n if s else 0)
              for big, s, n in zip(large, sampled, counts, strict=True)]
    capacity = next_power_of_2(max(max(needed), k))
    while True:
        cursor, keys, pixels = collect_candidates(flat, thresholds, sampled, capacity, seed, ignore_index,
                                                  block_size)
        got = cursor.tolist()  # host sync 2
        short = [s and g < min(n, k) for s, g, n in zip(sampled, got, counts, strict=True)]
        if not any(short) and max(got) <= capacity:
            break
        # Rare: a class drew fewer than K keys under its threshold (take all its pixels), or a buffer overflowed.
        thresholds = [INT64_MAX if lacking else t for lacking, t in zip(short, thresholds, strict=True)]
        needed = [n if lacking else g for lacking, n, g in zip(short, counts, got, strict=True)]
        capacity = next_power_of_2(max(max(needed), capacity))

    classes = torch.tensor([c for c, s in enumerate(sampled) if s], dtype=torch.int64, device=device)
    sizes = torch.tensor([counts[c] for c, s in enumerate(sampled) if s], dtype=torch.int64, device=device)
    order = torch.argsort(keys[classes], dim=1, stable=True)  # keys are distinct; padding sorts last
    by_key = pixels[classes].gather(1, order).long()
    if mode == "replace":
        ranks = replacement_ranks(classes, sizes, k, seed)
        keep = torch.ones_like(ranks, dtype=torch.bool)
    else:
        ranks = torch.arange(k, device=device).expand(classes.numel(), k)
        keep = ranks < sizes.unsqueeze(1)
    positions = by_key.gather(1, ranks)[keep]
    sampled_labels = classes.unsqueeze(1).expand(-1, k)[keep]
    return canonical_order(positions, sampled_labels, flat.numel())
