"""Triton class-balanced pixel sampler: bit-identical to the references in `sampling.py`.

Two passes over the labels, no float atomics, no RNG state. A *group* is a class (batch-level
quota) or an (image, class) pair (`per_image=True`).

1. `_class_histogram_kernel`: per-block `tl.histogram` of (group | ignored | out-of-range) buckets,
   added into an int32 histogram with integer atomics (order-free, so exact).
2. `_candidate_kernel`: every pixel computes its splitmix64 key from (seed, flat pixel id), exactly
   as the reference does, and a pixel of a sampled group whose key is at most its group's threshold
   claims a slot in that group's candidate buffer with an integer `atomic_add`.

The host reads the histogram once (the quota needs the number of present groups, as in the
reference) and derives the thresholds with the reference's `plan_quota`; it reads the slot counters
once more to detect a group that came up short (probability about 1e-6 or less; repaired by taking
that group whole, and forced in a test) or a full buffer (regrown). The small candidate buffers
(groups x capacity) are sorted by key in PyTorch, so the slot order the atomics produced never
matters: the output is the reference's, whatever the grid, block size or launch order.

Bytes that must move: the labels, twice (int64: 16 B per pixel), plus the candidates (~12 B x
groups x capacity); the key is computed, never stored.
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
    INT64_MAX,
    _stream_base,
    check_label_range,
    empty_sample,
    image_size,
    oversampled_count,
    plan_quota,
    take_ranks,
)
from .triton_runtime import check_launchable, next_power_of_2

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
def _group_of(offsets, label, num_classes, image_size):
    """Quota group of a pixel: (image, class) -> image * C + class; batch-level callers pass image_size = P."""
    return (offsets // image_size).to(tl.int64) * num_classes + label


@triton.jit
def _class_histogram_kernel(
    labels_ptr,
    counts_ptr,
    num_pixels,
    num_classes,
    num_groups,
    image_size,
    ignore_index,
    BLOCK: tl.constexpr,
    NUM_BINS: tl.constexpr,
):
    """counts[g] += pixels of group g; counts[G] ignored pixels; counts[G + 1] labels out of range."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < num_pixels
    label = tl.load(labels_ptr + offsets, mask=in_range, other=0).to(tl.int64)
    is_class = (label >= 0) & (label < num_classes)
    group = _group_of(offsets, label, num_classes, image_size)
    bucket = tl.where(label == ignore_index, num_groups, tl.where(is_class, group, num_groups + 1))
    bucket = tl.where(in_range, bucket, num_groups + 2)  # padding lanes land in a bin nobody reads
    histogram = tl.histogram(bucket.to(tl.int32), NUM_BINS)
    tl.atomic_add(counts_ptr + tl.arange(0, NUM_BINS), histogram)


@triton.jit
def _candidate_kernel(
    labels_ptr,
    thresholds_ptr,
    active_ptr,
    cursor_ptr,
    cand_keys_ptr,
    cand_pixels_ptr,
    num_pixels,
    num_classes,
    image_size,
    ignore_index,
    base,
    capacity,
    BLOCK: tl.constexpr,
):
    """Pixels of active groups with key <= threshold[group] are appended to that group's buffer."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < num_pixels
    label = tl.load(labels_ptr + offsets, mask=in_range, other=0).to(tl.int64)
    is_class = in_range & (label != ignore_index) & (label >= 0) & (label < num_classes)
    cls = tl.where(is_class, _group_of(offsets, label, num_classes, image_size), 0)
    active = tl.load(active_ptr + cls, mask=is_class, other=0) != 0
    threshold = tl.load(thresholds_ptr + cls, mask=is_class, other=0)
    key = _splitmix64_keys(offsets, base)
    take = is_class & active & (key <= threshold)
    slot = tl.atomic_add(cursor_ptr + cls, 1, mask=take)
    keep = take & (slot < capacity)
    destination = cls * capacity + slot
    tl.store(cand_keys_ptr + destination, key, mask=keep)
    tl.store(cand_pixels_ptr + destination, offsets, mask=keep)


def _capacity(expected: float) -> int:
    return int(expected + 6.0 * math.sqrt(expected) + 16.0)


def group_histogram(
    flat: Tensor, num_classes: int, num_groups: int, image_size: int, ignore_index: int, block: int
) -> Tensor:
    """int32 histogram on the labels' device: [groups..., ignored, out of range, padding...]."""
    num_bins = next_power_of_2(num_groups + 3)
    counts = torch.zeros(num_bins, dtype=torch.int32, device=flat.device)
    grid = (triton.cdiv(flat.numel(), block),)
    _class_histogram_kernel[grid](
        flat, counts, flat.numel(), num_classes, num_groups, image_size, ignore_index, BLOCK=block, NUM_BINS=num_bins
    )
    return counts


def collect_candidates(
    flat: Tensor,
    num_classes: int,
    image_size: int,
    thresholds: list[int],
    active: list[bool],
    capacity: int,
    seed: int,
    ignore_index: int,
    block: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """One candidate pass: (per-group slot counters, keys (G, capacity), pixel ids (G, capacity))."""
    device = flat.device
    num_groups = len(thresholds)
    thresholds_t = torch.tensor(thresholds, dtype=torch.int64, device=device)
    active_t = torch.tensor(active, dtype=torch.int8, device=device)
    cursor = torch.zeros(num_groups, dtype=torch.int32, device=device)
    keys = torch.full((num_groups, capacity), INT64_MAX, dtype=torch.int64, device=device)
    pixels = torch.full((num_groups, capacity), -1, dtype=torch.int32, device=device)
    grid = (triton.cdiv(flat.numel(), block),)
    _candidate_kernel[grid](
        flat,
        thresholds_t,
        active_t,
        cursor,
        keys,
        pixels,
        flat.numel(),
        num_classes,
        image_size,
        ignore_index,
        _stream_base(seed, _STREAM_PIXELS),
        capacity,
        BLOCK=block,
    )
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
    per_image: bool = False,
    block_size: int = DEFAULT_BLOCK,
    oversample: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Triton implementation of `mmbench.kernels.psa.class_balanced_sample` (arguments already validated).

    `block_size` (pixels per program) and `oversample` (expected candidates per large group; default
    `oversampled_count(K)`) change only the work split, never the result: tests vary both.
    """
    check_launchable(labels)
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    per_image_size = image_size(labels, per_image)
    flat = labels.reshape(-1).contiguous()
    device = flat.device
    if flat.numel() == 0:
        return empty_sample(device)
    if flat.numel() >= 2**31:
        raise ValueError(f"{flat.numel()} pixels exceed the kernel's int32 pixel ids; sample per image instead")
    group_size = per_image_size or flat.numel()
    num_groups = (flat.numel() // group_size) * num_classes

    histogram = group_histogram(flat, num_classes, num_groups, group_size, ignore_index, block_size).tolist()
    if histogram[num_groups + 1]:  # host sync 1 (the quota needs the number of present groups)
        check_label_range(flat.long(), flat != ignore_index, num_classes, ignore_index)  # raises, naming a value
    plan = plan_quota(
        histogram[:num_groups],
        max_samples=max_samples,
        max_views=max_views,
        min_pixels=min_pixels,
        mode=mode,
        oversample=oversample,
    )
    if not any(plan.sampled):
        return empty_sample(device)
    expected = oversample if oversample is not None else oversampled_count(plan.k)
    largest = max(min(n, _capacity(expected)) for n, s in zip(plan.counts, plan.sampled, strict=True) if s)
    capacity = next_power_of_2(max(largest, plan.k))
    while True:
        cursor, keys, pixels = collect_candidates(
            flat, num_classes, group_size, plan.thresholds, plan.sampled, capacity, seed, ignore_index, block_size
        )
        got = cursor.tolist()  # host sync 2
        short = plan.short_groups(got)
        if not any(short) and max(got) <= capacity:
            break
        # Rare: a group drew fewer than K keys under its threshold (take it whole), or a buffer overflowed.
        plan = plan.take_whole(short)
        capacity = next_power_of_2(
            max(max(n if lacking else g for lacking, n, g in zip(short, plan.counts, got, strict=True)), capacity)
        )

    groups = torch.tensor([g for g, s in enumerate(plan.sampled) if s], dtype=torch.int64, device=device)
    sizes = torch.tensor(plan.counts, dtype=torch.int64, device=device)[groups]
    order = torch.argsort(keys[groups], dim=1, stable=True)  # keys are distinct; padding sorts last
    by_key = pixels[groups].gather(1, order).long()
    return take_ranks(by_key, groups, sizes, plan.k, seed, mode, num_classes, flat.numel())
