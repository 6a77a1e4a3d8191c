"""NAIVE BASELINES for the benchmarks: PSA written the way common pixel-contrast code writes it.

They follow ContrastiveSeg (`_hard_anchor_sampling`, `_contrastive`) and its mmsegmentation and
PaddleSeg ports: the feature map is copied to channels-last, rows are gathered per class in a Python
loop, and the loss builds N x N logits plus float masks for positives, negatives and self. They
compute the same quantities as the references (tests check it), so the benchmark compares equal
work; they are never used for training. The naive sampler is `sampling.naive_class_balanced_sample`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def naive_gather_pixels(features: Tensor, indices: Tensor, labels: Tensor) -> Tensor:
    """Channels-last copy of the whole map, then one gather per class, concatenated in class order.

    `indices` must be grouped by class as the samplers return them; the result equals
    `features.reshape(-1, C)[indices]`.
    """
    rows = features.contiguous().reshape(-1, features.shape[-1])
    pieces = [rows[indices[labels == c]] for c in torch.unique(labels).tolist()]
    return torch.cat(pieces) if pieces else rows[:0]


def _naive_direction(anchors: Tensor, contrast: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """SupCon-style masked formulation of one direction: -(1/N) sum_i mean_{p in P(i)} log softmax_i[p]."""
    column = labels.reshape(-1, 1)
    positives = torch.eq(column, column.T).float()
    logits = anchors @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    exp_logits = torch.exp(logits)
    log_prob = logits - torch.log(exp_logits.sum(dim=1, keepdim=True))
    mean_log_prob_pos = (positives * log_prob).sum(dim=1) / positives.sum(dim=1)
    return -mean_log_prob_pos.mean()


def naive_cross_modal_infonce(z_a: Tensor, z_b: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Both directions of the supervised cross-modal InfoNCE, each with its own N x N logits and masks."""
    a, b = z_a.float(), z_b.float()
    return 0.5 * (_naive_direction(a, b, labels, temperature) + _naive_direction(b, a, labels, temperature))
