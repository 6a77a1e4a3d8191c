"""Supervised cross-modal InfoNCE for PSA: the PyTorch reference.

Eager and plain on purpose: it materialises the N x N logits (N <= ~4k, so <= 67 MB in fp32) and
lets autograd derive the backward. It is the numerical contract for a later fused Triton kernel
(online log-sum-exp over column blocks plus a running sum of positive logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """fp32 for fp32/fp16/bf16 inputs (half-precision exp/log-sum-exp loses too much), fp64 kept for gradcheck."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _direction_loss(
    log_normaliser: Tensor, queries: Tensor, class_key_sums: Tensor, inverse: Tensor, counts: Tensor, scale: float
) -> Tensor:
    """-(1/N) sum_i [ mean_{p in P(i)} logits[i, p] - logsumexp_k logits[i, k] ].

    The positive mean needs no N x N mask: sum_{p in P(i)} q_i . k_p = q_i . (sum of the keys of class y_i),
    so only the log-sum-exp touches the N x N logits (P(i) always holds i: counts are >= 1).
    """
    positive_mean = (queries * class_key_sums[inverse]).sum(dim=1) * scale / counts[inverse]
    return (log_normaliser - positive_mean).mean()


# exp(x - max) stays a normal fp32 number for x - max > -87; a margin keeps the shared-shift trick exact.
_SHARED_EXP_SPAN = 60.0


def _row_and_column_logsumexp(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Both directions' log-sum-exps from one exp of the N x N logits (exp dominates this op on CPU).

    With one global shift both sums are exact while the logits span less than ~60 (unit vectors at
    tau >= 0.04 span at most 2/tau = 50); otherwise fall back to two stable logsumexps.
    """
    top = logits.detach().max()
    if float(top - logits.detach().min()) > _SHARED_EXP_SPAN:
        return torch.logsumexp(logits, dim=1), torch.logsumexp(logits, dim=0)
    exponentials = torch.exp(logits - top)
    return exponentials.sum(dim=1).log() + top, exponentials.sum(dim=0).log() + top


LogNormalisers = Callable[[Tensor, Tensor, float, bool], tuple[Tensor, Tensor]]


def torch_log_normalisers(a: Tensor, b: Tensor, scale: float, stop_grad_keys: bool) -> tuple[Tensor, Tensor]:
    """Row log-sum-exps of the A->B logits (a @ b.T) and of the B->A logits (b @ a.T), materialised."""
    if stop_grad_keys:  # the two directions differ in what is detached: two logits matrices
        return (torch.logsumexp((a @ b.detach().T) * scale, dim=1), torch.logsumexp((b @ a.detach().T) * scale, dim=1))
    return _row_and_column_logsumexp((a @ b.T) * scale)  # logits_ba = logits_ab.T: rows A->B, columns B->A


def supervised_infonce(
    z_a: Tensor, z_b: Tensor, labels: Tensor, temperature: float, stop_grad_keys: bool, log_normalisers: LogNormalisers
) -> Tensor:
    """The loss around its only N x N part, the log-normalisers, which each backend computes its own way.

    The normalisers receive the inputs in their own dtype (a fused kernel upcasts on load and saves
    the copy); everything else is O(N d) work in the compute dtype.
    """
    dtype = compute_dtype(z_a, z_b)
    a, b = z_a.to(dtype), z_b.to(dtype)
    if a.shape[0] == 0:
        return (a.sum() + b.sum()) * 0.0  # a zero that stays in the graph, so callers can always add it
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    counts = counts.to(dtype)
    scale = 1.0 / temperature
    keys_b = b.detach() if stop_grad_keys else b
    keys_a = a.detach() if stop_grad_keys else a
    sums_b = torch.zeros(counts.shape[0], b.shape[1], dtype=dtype, device=b.device).index_add(0, inverse, keys_b)
    sums_a = torch.zeros(counts.shape[0], a.shape[1], dtype=dtype, device=a.device).index_add(0, inverse, keys_a)
    normaliser_ab, normaliser_ba = log_normalisers(z_a, z_b, scale, stop_grad_keys)
    return 0.5 * (
        _direction_loss(normaliser_ab.to(dtype), a, sums_b, inverse, counts, scale)
        + _direction_loss(normaliser_ba.to(dtype), b, sums_a, inverse, counts, scale)
    )


def _upcast_log_normalisers(z_a: Tensor, z_b: Tensor, scale: float, stop_grad_keys: bool) -> tuple[Tensor, Tensor]:
    dtype = compute_dtype(z_a, z_b)
    return torch_log_normalisers(z_a.to(dtype), z_b.to(dtype), scale, stop_grad_keys)


def cross_modal_infonce_torch(
    z_a: Tensor, z_b: Tensor, labels: Tensor, temperature: float = 0.1, *, stop_grad_keys: bool = False
) -> Tensor:
    """PyTorch reference of `mmbench.kernels.psa.cross_modal_infonce` (arguments already validated)."""
    return supervised_infonce(z_a, z_b, labels, temperature, stop_grad_keys, _upcast_log_normalisers)
