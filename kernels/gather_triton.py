"""Triton row gather for channels-last features, with a deterministic scatter backward.

Forward: `out[n, :] = features[pixel indices[n], :]` for features of shape (B, H, W, C) or (P, C),
addressed through their strides, so the `x.permute(0, 2, 3, 1)` view of an NCHW tensor is read in
place (strided, one sector per element) instead of being copied whole to channels-last first, the
copy that dominates the eager path. A channels-last tensor gives coalesced row reads.

Backward: the dense feature gradient is zeros except at the sampled pixels. Indices that occur once
(modes "all" and "drop") are written with plain stores; with repeats (mode "replace") the rows are
grouped by a stable sort of the indices and each pixel sums its rows in a fixed order, so the
gradient is bit-reproducible on every run, unlike float `atomic_add` or `index_put_(accumulate=True)`
on CUDA without deterministic algorithms.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_runtime import check_launchable, next_power_of_2

BLOCK_ROWS = 32


@triton.jit
def _pixel_offsets(pixel, width, height_width, stride_b, stride_h, stride_w):
    """Element offset of channel 0 of flat pixel id `pixel` = b * HW + h * W + w."""
    b = pixel // height_width
    rest = pixel - b * height_width
    h = rest // width
    w = rest - h * width
    return b * stride_b + h * stride_h + w * stride_w


@triton.jit
def _gather_rows_kernel(
    features_ptr,
    indices_ptr,
    out_ptr,
    num_rows,
    channels,
    width,
    height_width,
    stride_b,
    stride_h,
    stride_w,
    stride_c,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = rows < num_rows
    pixel = tl.load(indices_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    base = _pixel_offsets(pixel, width, height_width, stride_b, stride_h, stride_w)
    for start in range(0, channels, BLOCK_C):
        cols = start + tl.arange(0, BLOCK_C)
        mask = row_mask[:, None] & (cols < channels)[None, :]
        values = tl.load(features_ptr + base[:, None] + cols[None, :].to(tl.int64) * stride_c, mask=mask)
        tl.store(out_ptr + rows[:, None].to(tl.int64) * channels + cols[None, :], values, mask=mask)


@triton.jit
def _scatter_rows_kernel(
    grad_out_ptr,
    order_ptr,
    starts_ptr,
    pixels_ptr,
    grad_ptr,
    num_groups,
    channels,
    width,
    height_width,
    stride_b,
    stride_h,
    stride_w,
    stride_c,
    BLOCK_C: tl.constexpr,
    ACCUMULATOR: tl.constexpr,
):
    """One program per distinct pixel: grad[pixel] = sum of its rows, in the stable-sort order."""
    group = tl.program_id(0)
    start = tl.load(starts_ptr + group)
    stop = tl.load(starts_ptr + group + 1)
    pixel = tl.load(pixels_ptr + group).to(tl.int64)
    base = _pixel_offsets(pixel, width, height_width, stride_b, stride_h, stride_w)
    for c0 in range(0, channels, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_mask = cols < channels
        total = tl.zeros([BLOCK_C], dtype=ACCUMULATOR)
        for position in range(start, stop):
            row = tl.load(order_ptr + position).to(tl.int64)
            total += tl.load(grad_out_ptr + row * channels + cols, mask=col_mask, other=0.0).to(ACCUMULATOR)
        tl.store(grad_ptr + base + cols.to(tl.int64) * stride_c, total.to(grad_ptr.dtype.element_ty), mask=col_mask)


def _geometry(features: Tensor) -> tuple[int, int, int, int, int, int]:
    """(width, height * width, stride_b, stride_h, stride_w, stride_c) of a (B, H, W, C) or (P, C) tensor."""
    if features.ndim == 4:
        _, height, width, _ = features.shape
        sb, sh, sw, sc = features.stride()
        return width, height * width, sb, sh, sw, sc
    if features.ndim == 2:
        ps, sc = features.stride()
        return 1, 1, ps, 0, 0, sc
    raise ValueError(f"features must be (B, H, W, C) or (P, C) for the Triton gather, got {tuple(features.shape)}")


def _block_c(channels: int) -> int:
    return min(128, max(16, next_power_of_2(channels)))


def gather_rows_forward(features: Tensor, indices: Tensor) -> Tensor:
    check_launchable(features, indices)
    channels = features.shape[-1]
    out = torch.empty(indices.numel(), channels, dtype=features.dtype, device=features.device)
    if indices.numel() == 0 or channels == 0:
        return out
    grid = (triton.cdiv(indices.numel(), BLOCK_ROWS),)
    _gather_rows_kernel[grid](
        features,
        indices.contiguous(),
        out,
        indices.numel(),
        channels,
        *_geometry(features),
        BLOCK_ROWS=BLOCK_ROWS,
        BLOCK_C=_block_c(channels),
    )
    return out


def scatter_rows_backward(grad_out: Tensor, indices: Tensor, layout: Tensor, device: torch.device) -> Tensor:
    """Dense gradient shaped and strided like the meta tensor `layout`, from the gathered rows' gradient."""
    grad = torch.empty_strided(layout.shape, layout.stride(), dtype=layout.dtype, device=device).zero_()
    if indices.numel() == 0:
        return grad
    sorted_pixels, order = torch.sort(indices.long(), stable=True)
    pixels, counts = torch.unique_consecutive(sorted_pixels, return_counts=True)
    starts = torch.zeros(pixels.numel() + 1, dtype=torch.int64, device=indices.device)
    torch.cumsum(counts, 0, out=starts[1:])
    channels = layout.shape[-1]
    _scatter_rows_kernel[(pixels.numel(),)](
        grad_out.contiguous(),
        order,
        starts,
        pixels,
        grad,
        pixels.numel(),
        channels,
        *_geometry(grad),
        BLOCK_C=_block_c(channels),
        ACCUMULATOR=tl.float64 if grad.dtype == torch.float64 else tl.float32,
    )
    return grad


class GatherPixels(torch.autograd.Function):
    """`features.reshape(-1, C)[indices]` with the Triton kernels for both directions."""

    @staticmethod
    def forward(ctx, features: Tensor, indices: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(indices)
        ctx.layout = torch.empty_like(features, device="meta")  # the strides zeros_like would pick; no memory
        ctx.device = features.device
        return gather_rows_forward(features, indices)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        return scatter_rows_backward(grad_out, indices, ctx.layout, ctx.device), None


def gather_pixels_triton(features: Tensor, indices: Tensor) -> Tensor:
    """Triton implementation of `mmbench.kernels.psa.gather_pixels` (arguments already validated)."""
    flat_shape = features.ndim not in (2, 4)
    source = features.reshape(-1, features.shape[-1]) if flat_shape else features
    return GatherPixels.apply(source, indices)  # type: ignore[no-any-return]
