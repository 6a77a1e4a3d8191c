"""Supervised cross-modal InfoNCE for PSA: the PyTorch reference.

Eager and plain on purpose: it materialises the N x N logits (N <= ~4k, so <= 67 MB in fp32) and
lets autograd derive the backward. It is the numerical contract for a later fused Triton kernel
(online log-sum-exp over column blocks plus a running sum of positive logits).
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """fp32 for fp32/fp16/bf16 inputs (half-precision exp/log-sum-exp loses too much), fp64 kept for gradcheck."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _direction_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """-(1/N) sum_i mean_{p in P(i)} log softmax(logits[i])[p]; P(i) always holds i, so no division by 0."""
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    weights = positives.to(logits.dtype)
    per_anchor = (log_prob * weights).sum(dim=1) / weights.sum(dim=1)
    return -per_anchor.mean()


def cross_modal_infonce_torch(
    z_a: Tensor, z_b: Tensor, labels: Tensor, temperature: float = 0.1, *, stop_grad_keys: bool = False
) -> Tensor:
    """PyTorch reference of `mmbench.kernels.psa.cross_modal_infonce` (arguments already validated)."""
    dtype = compute_dtype(z_a, z_b)
    a, b = z_a.to(dtype), z_b.to(dtype)
    if a.shape[0] == 0:
        return (a.sum() + b.sum()) * 0.0  # a zero that stays in the graph, so callers can always add it
    positives = labels.unsqueeze(1) == labels.unsqueeze(0)  # symmetric, so it serves both directions
    scale = 1.0 / temperature
    if stop_grad_keys:
        logits_ab = (a @ b.detach().T) * scale
        logits_ba = (b @ a.detach().T) * scale
    else:
        logits_ab = (a @ b.T) * scale
        logits_ba = logits_ab.T
    return 0.5 * (_direction_loss(logits_ab, positives) + _direction_loss(logits_ba, positives))
