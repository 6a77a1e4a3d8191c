"""Supervised cross-modal InfoNCE for PSA on CPU: the reference's loss with a hand-written backward.

Why it exists: on CPU the reference (`infonce.py`) spends more time in N x N elementwise passes than
in its matmuls (a profile of one STARS PSA forward + backward, one thread: ~13 ms of elementwise
N x N ops against ~9 ms of aten::mm, plus per-call overhead). Autograd multiplies the N x N logits by
1/T, subtracts the shift, exponentiates, and in the backward rebuilds two softmaxes and the gradient
of each of those steps, each a full pass over N x N floats (with `stop_grad_keys=True` it even
builds two logits matrices). Here the N x N work is one matmul, one in-place exp, a row and a column
sum in the forward, and two matmuls in the backward, plus (keys not detached) forming
E * (r[:, None] + c[None, :]) once. Same loss, same gradients, to fp32 rounding; the STARS CPU
recipe (N ~ 300-700, d = 64, T = 0.1) is the case it is tuned for. Per-call overhead is kept small
too: small non-negative integer labels skip torch.unique, fp32 inputs are not copied, and the
backward gathers per-anchor class means with index_select.

What it computes (`a`, `b` the (N, d) embeddings, s = 1/T, y the labels, A_k / B_k the sums of `a` /
`b` over class k, n_k its size):

    L = 1/(2N) sum_i [log sum_j exp(s a_i.b_j) + log sum_j exp(s b_i.a_j)] - s/N sum_k A_k.B_k / n_k

which is `cross_modal_infonce_torch`'s (L_ab + L_ba) / 2: both directions' positive terms equal
s/N sum_k A_k.B_k / n_k, O(N d) as in the reference. With E = exp(s a b^T) (computed once, as exp2
of (s log2(e) a) b^T: the scale is folded into the N x d queries, and torch's vectorised exp2 is about a
third cheaper than exp on CPU), r = 1/(row sums of E), c = 1/(column sums), alpha = s/(2N):

    dL/da = alpha [(E * (r[:, None] + c[None, :])) b - 2 (B_y / n_y)]
    dL/db = alpha [(E * (r[:, None] + c[None, :]))^T a - 2 (A_y / n_y)]

and with `stop_grad_keys=True` (keys detached in each direction, so each input keeps only its query
gradient): dL/da = alpha [r * (E b) - B_y / n_y], dL/db = alpha [c * (E^T a) - A_y / n_y], so the
backward's only N x N work is the two matmuls.

No shift is needed: the logits are bounded by s max|a_i| max|b_j| (Cauchy-Schwarz), and while that
bound is <= 60 every exp(logit) lies in [e^-60, e^60], normal fp32 numbers whose sums over any
practical N stay finite. Unit vectors qualify for every T >= 1/60. Beyond the bound (smaller
temperatures, unnormalised inputs, non-finite values) the call is handed to the reference, which
shifts and falls back to two stable log-sum-exps itself, so the result is always the reference's.

Precision and dtypes follow the reference (`compute_dtype`): fp16/bf16/fp32 inputs are computed in
fp32 (gradients come back in the input dtype), fp64 inputs entirely in fp64 (so `gradcheck` works).
N == 0 returns the reference's graph-connected zero. Deterministic: the same inputs give bitwise the
same loss and gradients at a fixed thread count (no atomics; CPU matmuls, sums and `index_add_` run
in a fixed order). The backward is not itself differentiable (no double backward). Arguments are
taken as validated by `mmbench.kernels.psa.cross_modal_infonce`; any device works, but the design is
for CPU.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .infonce import compute_dtype, cross_modal_infonce_torch

__all__ = ["cross_modal_infonce_cpu"]

# |logit| <= this keeps exp(logit) a normal fp32 number with room for a sum over N terms (see above).
_EXP_RANGE = 60.0
_LOG2_E = 1.0 / math.log(2.0)
# Non-negative integer labels below this index the class sums directly (bincount) instead of torch.unique.
_DIRECT_CLASS_LIMIT = 1024
_INTEGER_LABELS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _classes(labels: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(class index of every anchor, int64; size of every class, `dtype`, empty classes counted as 1).

    Small non-negative integer labels are their own class index (empty classes have zero sums, so they
    add exact zeros to the positive term); anything else goes through torch.unique. Both give the same
    classes in the same order, hence the same numbers.
    """
    if labels.dtype in _INTEGER_LABELS:
        low, high = torch.aminmax(labels)
        if int(low) >= 0 and int(high) < _DIRECT_CLASS_LIMIT:
            classes = labels.long()
            return classes, torch.bincount(classes).to(dtype).clamp_min_(1.0)
    _, classes, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return classes, counts.to(dtype)


def _logit_bound(a: Tensor, b: Tensor, scale: float) -> float:
    """s max_i |a_i| max_j |b_j| >= every |logit| (NaN when an input is not finite)."""
    with torch.no_grad():
        largest_a = float(torch.linalg.vector_norm(a, dim=1).amax())
        largest_b = float(torch.linalg.vector_norm(b, dim=1).amax())
    return scale * largest_a * largest_b


class _CrossModalInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, classes: Tensor, counts: Tensor, scale: float, stop_grad_keys: bool):
        n, d = a.shape
        exponentials = torch.mm(a * (scale * _LOG2_E), b.T).exp2_()  # E = exp(s a b^T), |logits| <= 60
        sums = exponentials.new_empty(2, n)  # row sums (A->B normalisers), column sums (B->A)
        torch.sum(exponentials, dim=1, out=sums[0])
        torch.sum(exponentials, dim=0, out=sums[1])
        means_a = a.new_zeros(counts.shape[0], d).index_add_(0, classes, a).div_(counts[:, None])  # A_k / n_k
        sums_b = b.new_zeros(counts.shape[0], d).index_add_(0, classes, b)  # B_k
        positive = (means_a * sums_b).sum()  # sum_k A_k.B_k / n_k
        loss = sums.log().sum().sub_(positive, alpha=2.0 * scale).mul_(0.5 / n)
        means_b = sums_b.div_(counts[:, None])  # B_k / n_k, in place: the sums are no longer needed
        ctx.save_for_backward(a, b, exponentials, sums, means_a, means_b, classes)
        ctx.scale, ctx.stop_grad_keys = scale, stop_grad_keys
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        a, b, exponentials, sums, means_a, means_b, classes = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        alpha = float(grad) * 0.5 * ctx.scale / a.shape[0]
        # alpha r, alpha c: the A->B softmax is E * r[:, None], the B->A one (transposed) E * c[None, :]
        row_weights, column_weights = alpha / sums
        grad_a = grad_b = None
        if ctx.stop_grad_keys:  # each input is only a query: one softmax each, scaled after the matmul
            if need_a:
                grad_a = torch.mm(exponentials, b).mul_(row_weights[:, None])
                grad_a.sub_(means_b.index_select(0, classes), alpha=alpha)
            if need_b:
                grad_b = torch.mm(exponentials.T, a).mul_(column_weights[:, None])
                grad_b.sub_(means_a.index_select(0, classes), alpha=alpha)
        else:  # both softmaxes act on both inputs: one N x N pass forms their sum
            softmaxes = torch.add(row_weights[:, None], column_weights[None, :]).mul_(exponentials)
            if need_a:
                grad_a = torch.addmm(means_b.index_select(0, classes), softmaxes, b, beta=-2.0 * alpha)
            if need_b:
                grad_b = torch.addmm(means_a.index_select(0, classes), softmaxes.T, a, beta=-2.0 * alpha)
        return grad_a, grad_b, None, None, None, None


def cross_modal_infonce_cpu(
    z_a: Tensor, z_b: Tensor, labels: Tensor, temperature: float = 0.1, *, stop_grad_keys: bool = False
) -> Tensor:
    """`mmbench.kernels.psa.cross_modal_infonce` with a fused CPU forward/backward (arguments already validated).

    Same contract as `cross_modal_infonce_torch`; see the module docstring for the formulas and for
    when it hands the call to the reference.
    """
    dtype = compute_dtype(z_a, z_b)
    a, b = z_a.to(dtype), z_b.to(dtype)
    if a.shape[0] == 0:
        return (a.sum() + b.sum()) * 0.0  # the reference's zero that stays in the graph
    scale = 1.0 / temperature
    if not _logit_bound(a, b, scale) <= _EXP_RANGE:
        return cross_modal_infonce_torch(z_a, z_b, labels, temperature, stop_grad_keys=stop_grad_keys)
    classes, counts = _classes(labels, dtype)
    return _CrossModalInfoNCE.apply(a, b, classes, counts, scale, stop_grad_keys)
