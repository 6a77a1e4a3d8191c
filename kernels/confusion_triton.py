"""Fused argmax + confusion-matrix update for the evaluation engine (Triton, CUDA).

The eager path materialises the prediction map (`logits.max(1).indices`, int64 per pixel) and then
makes ~10 elementwise passes to key and validate pixels before one `bincount`. This kernel reads
the logits and the target once: each program takes a block of pixels, finds the first maximum over
the classes (the rule of `torch.max`, so ties resolve to the lowest class id exactly as in the
reference), keys (target, prediction), and adds its block's histogram into an int32 counter with
integer atomics (order-free, so the counts are exact and deterministic). Ignored pixels and
out-of-range targets land in two extra bins; the host raises the reference's error when the second
one is non-zero. Up to 64 classes the per-block histogram is `tl.histogram`; beyond, lanes add
their pixel's bin directly, which stays cheap because counts spread over many bins.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_runtime import check_launchable, next_power_of_2

BLOCK = 1024
MAX_HISTOGRAM_BINS = 4096


@triton.jit
def _confusion_kernel(
    logits_ptr,
    target_ptr,
    counts_ptr,
    num_pixels,
    image_pixels,
    num_classes,
    ignore_index,
    stride_b,
    stride_c,
    BLOCK: tl.constexpr,
    NUM_BINS: tl.constexpr,
    USE_HISTOGRAM: tl.constexpr,
):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < num_pixels
    image = offsets // image_pixels
    base = image.to(tl.int64) * stride_b + (offsets - image * image_pixels)
    best = tl.load(logits_ptr + base, mask=in_range, other=0.0).to(tl.float32)
    prediction = tl.zeros([BLOCK], dtype=tl.int64)
    for c in range(1, num_classes):
        value = tl.load(logits_ptr + base + c * stride_c, mask=in_range, other=0.0).to(tl.float32)
        better = value > best  # strict: the first maximum wins, as in torch.max
        best = tl.where(better, value, best)
        prediction = tl.where(better, c, prediction)
    target = tl.load(target_ptr + offsets, mask=in_range, other=0).to(tl.int64)
    ignored = target == ignore_index
    bad = ((target < 0) | (target >= num_classes)) & ~ignored
    squared = num_classes * num_classes
    key = tl.where(ignored, squared, tl.where(bad, squared + 1, target * num_classes + prediction))
    if USE_HISTOGRAM:
        key = tl.where(in_range, key, squared + 2)
        tl.atomic_add(counts_ptr + tl.arange(0, NUM_BINS), tl.histogram(key.to(tl.int32), NUM_BINS))
    else:
        tl.atomic_add(counts_ptr + key, tl.full([BLOCK], 1, dtype=tl.int32), mask=in_range)


def confusion_counts(logits: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """int32 counts of length num_classes**2 + 2: the flattened (target, prediction) matrix, then the
    ignored pixels, then targets outside [0, num_classes) that are not `ignore_index`."""
    check_launchable(logits, target)
    if logits.ndim < 2 or logits.shape[1] != num_classes or logits.shape[:1] + logits.shape[2:] != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be (B, {num_classes}, ...) with target {tuple(target.shape)} = (B, ...)"
        )
    if target.numel() >= 2**31:
        raise ValueError(f"{target.numel()} pixels exceed the kernel's int32 counters; update in smaller batches")
    logits = logits.reshape(logits.shape[0], num_classes, -1).contiguous()
    target = target.reshape(-1).contiguous()
    squared = num_classes * num_classes
    use_histogram = squared + 3 <= MAX_HISTOGRAM_BINS
    num_bins = next_power_of_2(squared + 3) if use_histogram else squared + 2
    counts = torch.zeros(num_bins, dtype=torch.int32, device=logits.device)
    if target.numel():
        grid = (triton.cdiv(target.numel(), BLOCK),)
        _confusion_kernel[grid](
            logits,
            target,
            counts,
            target.numel(),
            logits.shape[2],
            num_classes,
            ignore_index,
            logits.stride(0),
            logits.stride(1),
            BLOCK=BLOCK,
            NUM_BINS=num_bins,
            USE_HISTOGRAM=use_histogram,
        )
    return counts[: squared + 2]
