"""Fused log-normalisers of the cross-modal InfoNCE: the N x N logits exist only as register tiles.

The loss (see `infonce.py`) is mean(lse - positive term) over both directions. The positive terms
are O(N d) (class sums of the keys) and stay in PyTorch; the two log-sum-exps are the N x N part
and run here, in the pattern of Inf-CL and flash attention:

- forward, one launch per direction: a program owns BLOCK_M query rows, streams the keys in
  BLOCK_N column tiles, computes the logits tile with `tl.dot` and folds it into a running
  max / sum (online log-sum-exp). Only lse (N floats per direction) is written.
- backward, one launch per input: a program owns BLOCK_M rows of one input and recomputes the same
  logits tiles. Row i of `a` receives the query gradient of direction A->B,
  g_ab[i] softmax_ab[i, j] b_j, and, unless keys are detached, its key gradient from direction
  B->A, g_ba[j] softmax_ba[j, i] b_j: both use the logit a_i . b_j / T, so one tile serves both.
  Every program writes only its own rows: no atomics, so the gradient is deterministic.

Peak extra memory is O(N): two lse vectors, no N x N matrix. Inputs are read in their own dtype
(fp16/bf16/fp32) and upcast to fp32 on load. `tl.dot` uses `input_precision` "ieee" unless torch
itself allows TF32 matmuls on CUDA (`torch.backends.cuda.matmul.allow_tf32`), so the kernel follows
the same precision contract as the reference's matmul; the interpreter always computes exactly.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .infonce import supervised_infonce
from .triton_runtime import check_launchable, next_power_of_2

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _load_rows(ptr, rows, num_rows, dims, stride, BLOCK_D: tl.constexpr):
    cols = tl.arange(0, BLOCK_D)
    mask = (rows < num_rows)[:, None] & (cols < dims)[None, :]
    return tl.load(ptr + rows[:, None].to(tl.int64) * stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _lse_forward_kernel(
    queries_ptr,
    keys_ptr,
    lse_ptr,
    num_rows,
    dims,
    stride_q,
    stride_k,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """lse[i] = log sum_j exp(q_i . k_j * scale) for BLOCK_M rows, online over BLOCK_N key tiles."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    queries = _load_rows(queries_ptr, rows, num_rows, dims, stride_q, BLOCK_D)
    running_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    running_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    for start in range(0, num_rows, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        keys = _load_rows(keys_ptr, cols, num_rows, dims, stride_k, BLOCK_D)
        logits = tl.dot(queries, tl.trans(keys), input_precision=PRECISION) * scale
        logits = tl.where((cols < num_rows)[None, :], logits, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(logits, axis=1))  # finite: every tile has a valid column
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
        running_max = new_max
    tl.store(lse_ptr + rows, running_max + tl.log(running_sum), mask=rows < num_rows)


@triton.jit
def _lse_backward_kernel(
    rows_ptr,
    others_ptr,
    lse_rows_ptr,
    lse_others_ptr,
    grad_rows_ptr,
    grad_others_ptr,
    out_ptr,
    num_rows,
    dims,
    stride_r,
    stride_o,
    stride_out,
    scale,
    KEY_GRAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """d/dx_i of g_r . lse_r + g_o . lse_o, where lse_r are x's rows' and lse_o the others' rows' normalisers."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < num_rows
    x = _load_rows(rows_ptr, rows, num_rows, dims, stride_r, BLOCK_D)
    lse_rows = tl.load(lse_rows_ptr + rows, mask=row_mask, other=0.0)
    grad_rows = tl.load(grad_rows_ptr + rows, mask=row_mask, other=0.0)
    accumulator = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start in range(0, num_rows, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_mask = cols < num_rows
        y = _load_rows(others_ptr, cols, num_rows, dims, stride_o, BLOCK_D)
        logits = tl.dot(x, tl.trans(y), input_precision=PRECISION) * scale
        weights = grad_rows[:, None] * tl.exp(logits - lse_rows[:, None])
        if KEY_GRAD:
            lse_others = tl.load(lse_others_ptr + cols, mask=col_mask, other=0.0)
            grad_others = tl.load(grad_others_ptr + cols, mask=col_mask, other=0.0)
            weights += grad_others[None, :] * tl.exp(logits - lse_others[None, :])
        weights = tl.where(row_mask[:, None] & col_mask[None, :], weights, 0.0)
        accumulator += tl.dot(weights, y, input_precision=PRECISION)
    cols_d = tl.arange(0, BLOCK_D)
    mask = row_mask[:, None] & (cols_d < dims)[None, :]
    out = out_ptr + rows[:, None].to(tl.int64) * stride_out + cols_d[None, :]
    tl.store(out, (accumulator * scale).to(out_ptr.dtype.element_ty), mask=mask)


def default_blocks(dims: int, interpreted: bool) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N): large tiles amortise the interpreter's per-program cost; on GPU the query
    tile and the accumulator (BLOCK_M x BLOCK_D fp32) must stay in registers. Not tuned on hardware."""
    if interpreted:
        return 32, 32
    block_d = next_power_of_2(dims)
    if block_d <= 64:
        return 64, 64
    if block_d <= 128:
        return 64, 32
    return 32, 32


def _precision(device: torch.device) -> str:
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def _settings(a: Tensor, blocks: tuple[int, int] | None) -> dict[str, object]:
    block_m, block_n = blocks or default_blocks(a.shape[1], a.device.type != "cuda")
    for name, value in (("BLOCK_M", block_m), ("BLOCK_N", block_n)):
        if value < 16 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two >= 16 (tl.dot's minimum), got {value}")
    return {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "BLOCK_D": max(16, next_power_of_2(a.shape[1])),
        "PRECISION": _precision(a.device),
    }


def log_normalisers_forward(
    a: Tensor, b: Tensor, scale: float, blocks: tuple[int, int] | None = None
) -> tuple[Tensor, Tensor]:
    """(lse of a @ b.T * scale by rows, lse of b @ a.T * scale by rows), fp32, never materialising N x N."""
    settings = _settings(a, blocks)
    n, dims = a.shape
    lse_ab = torch.empty(n, dtype=torch.float32, device=a.device)
    lse_ba = torch.empty(n, dtype=torch.float32, device=a.device)
    grid = (triton.cdiv(n, settings["BLOCK_M"]),)  # type: ignore[arg-type]
    _lse_forward_kernel[grid](a, b, lse_ab, n, dims, a.stride(0), b.stride(0), scale, **settings)
    _lse_forward_kernel[grid](b, a, lse_ba, n, dims, b.stride(0), a.stride(0), scale, **settings)
    return lse_ab, lse_ba


def log_normalisers_backward(
    x: Tensor,
    y: Tensor,
    lse_x: Tensor,
    lse_y: Tensor,
    grad_x: Tensor,
    grad_y: Tensor,
    scale: float,
    key_grad: bool,
    blocks: tuple[int, int] | None = None,
) -> Tensor:
    """Gradient of grad_x . lse_x + grad_y . lse_y with respect to x (see `_lse_backward_kernel`)."""
    settings = _settings(x, blocks)
    n, dims = x.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    grid = (triton.cdiv(n, settings["BLOCK_M"]),)  # type: ignore[arg-type]
    _lse_backward_kernel[grid](
        x,
        y,
        lse_x,
        lse_y,
        grad_x,
        grad_y,
        out,
        n,
        dims,
        x.stride(0),
        y.stride(0),
        out.stride(0),
        scale,
        KEY_GRAD=key_grad,
        **settings,
    )
    return out


class PairLogNormalisers(torch.autograd.Function):
    """(lse_ab, lse_ba) with fused Triton forward and recomputing backward."""

    @staticmethod
    def forward(
        ctx,
        a: Tensor,
        b: Tensor,
        scale: float,
        stop_grad_keys: bool,  # type: ignore[override]
        blocks: tuple[int, int] | None,
    ) -> tuple[Tensor, Tensor]:
        a, b = a.contiguous(), b.contiguous()
        lse_ab, lse_ba = log_normalisers_forward(a, b, scale, blocks)
        ctx.save_for_backward(a, b, lse_ab, lse_ba)
        ctx.scale, ctx.stop_grad_keys, ctx.blocks = scale, stop_grad_keys, blocks
        return lse_ab, lse_ba

    @staticmethod
    def backward(ctx, grad_ab: Tensor | None, grad_ba: Tensor | None):  # type: ignore[override]
        a, b, lse_ab, lse_ba = ctx.saved_tensors
        grad_ab = torch.zeros_like(lse_ab) if grad_ab is None else grad_ab.float().contiguous()
        grad_ba = torch.zeros_like(lse_ba) if grad_ba is None else grad_ba.float().contiguous()
        key_grad = not ctx.stop_grad_keys
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = log_normalisers_backward(a, b, lse_ab, lse_ba, grad_ab, grad_ba, ctx.scale, key_grad, ctx.blocks)
        if ctx.needs_input_grad[1]:
            grad_b = log_normalisers_backward(b, a, lse_ba, lse_ab, grad_ba, grad_ab, ctx.scale, key_grad, ctx.blocks)
        return grad_a, grad_b, None, None, None


def cross_modal_infonce_triton(
    z_a: Tensor,
    z_b: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    *,
    stop_grad_keys: bool = False,
    blocks: tuple[int, int] | None = None,
) -> Tensor:
    """Triton implementation of `mmbench.kernels.psa.cross_modal_infonce` (arguments already validated).

    `blocks` = (BLOCK_M, BLOCK_N) overrides the tile sizes (tests vary them; results agree to rounding).
    """
    check_launchable(z_a, z_b, labels)
    for tensor in (z_a, z_b):
        if tensor.dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"the Triton InfoNCE takes fp16, bf16 or fp32 inputs, got {tensor.dtype}; "
                "use backend='torch' (e.g. for fp64 gradcheck)"
            )

    def normalisers(a: Tensor, b: Tensor, scale: float, detach_keys: bool) -> tuple[Tensor, Tensor]:
        return PairLogNormalisers.apply(a, b, scale, detach_keys, blocks)  # type: ignore[no-any-return]

    return supervised_infonce(z_a, z_b, labels, temperature, stop_grad_keys, normalisers)
