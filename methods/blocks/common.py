"""Building blocks shared by the comparison methods: ResNet encoders, an FPN decoder, masked fusion,
training-time modality sampling and mmFormer's weighted CE + Dice.

Sharing them keeps the comparison fair (every baseline has the same encoder and decoder family
as STARS at the same widths) and the method files short: each one is only what makes it different.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbench.errors import ConfigError
from mmbench.method import TrainStep
from mmbench.sampling import KINDS, sample_availability


def conv_bn_relu(inp: int, out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)
    )


class Stem(nn.Module):
    """Per-modality ResNet stem (7x7/2, BN, ReLU, 3x3/2 max-pool): stride 4, `width` channels, so that
    modalities with different channel counts can share one encoder's residual stages."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class FPNDecoder(nn.Module):
    """Feature pyramid (strides 4..32) -> logits at stride 4: lateral 1x1, top-down sum, 3x3 smooth,
    per-level conv, sum of the levels upsampled to stride 4, 1x1 classifier (STARS' decoder family)."""

    def __init__(self, in_channels: Sequence[int], fpn: int, decoder: int, num_classes: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in in_channels])
        self.smooth = nn.ModuleList([nn.Conv2d(fpn, fpn, 3, padding=1) for _ in in_channels])
        self.decoder = nn.ModuleList([conv_bn_relu(fpn, decoder) for _ in in_channels])
        self.classifier = nn.Conv2d(decoder, num_classes, 1)

    def forward(self, pyramid: Sequence[Tensor]) -> Tensor:
        laterals = [conv(x) for conv, x in zip(self.lateral, pyramid, strict=True)]
        for level in range(len(laterals) - 2, -1, -1):
            laterals[level] = laterals[level] + F.interpolate(
                laterals[level + 1], size=laterals[level].shape[-2:], mode="nearest"
            )
        size = laterals[0].shape[-2:]
        merged = sum(
            F.interpolate(block(smooth(x)), size=size, mode="bilinear", align_corners=False)
            for smooth, block, x in zip(self.smooth, self.decoder, laterals, strict=True)
        )
        return self.classifier(merged)


def upsample(logits: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize to `size`; returns `logits` itself when it already has that size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def masked_mean(values: Mapping[int, Tensor], available: Tensor) -> Tensor:
    """Mean over modalities of per-modality tensors (batch first), counting only the available ones.

    `values` maps modality index to a tensor; rows of unavailable samples are excluded with
    `torch.where`, so NaN or garbage there never reaches the result.
    """
    total: Tensor | None = None
    count: Tensor | None = None
    for index, value in values.items():
        mask = available[:, index].view(-1, *([1] * (value.ndim - 1)))
        term = torch.where(mask, value, torch.zeros((), dtype=value.dtype, device=value.device))
        total = term if total is None else total + term
        weight = mask.to(value.dtype)
        count = weight if count is None else count + weight
    if total is None or count is None:
        raise ValueError("no modality features to fuse")
    return total / count.clamp_min(1)


def masked_concat(values: Mapping[int, Tensor], available: Tensor, modalities: int, like: Tensor) -> Tensor:
    """Concatenation over all modalities (in order) with missing ones zeroed (absent ones zeros too)."""
    parts = []
    for index in range(modalities):
        if index in values:
            mask = available[:, index].view(-1, 1, 1, 1)
            parts.append(torch.where(mask, values[index], torch.zeros((), dtype=like.dtype, device=like.device)))
        else:
            parts.append(torch.zeros_like(like))
    return torch.cat(parts, dim=1)


def check_sampler(kind: str, key: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"method.{key}={kind!r}: use one of {', '.join(KINDS)}")


def sampled_availability(
    kind: str,
    batch: Mapping[str, Any],
    info: TrainStep,
    modalities: int,
    *,
    p_drop: float = 0.5,
    include_full: bool = True,
) -> Tensor:
    """Training availability from the shared samplers, keyed on the sample's place in the global batch."""
    label = batch["label"]
    slots = batch["slots"].tolist() if "slots" in batch else range(label.shape[0])
    return sample_availability(
        kind,
        modalities,
        slots,
        (info.seed, info.step, info.micro),
        p_drop=p_drop,
        include_full=include_full,
        device=label.device,
    )


def weighted_ce_dice(logits: Tensor, target: Tensor, ignore_index: int, eps: float = 1e-5) -> Tensor:
    """mmFormer's loss: weighted CE with per-image class weights 1 - n_c / N, plus soft Dice over classes.

    Ignored pixels take part in neither term; an image without valid pixels contributes nothing.
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(logits.dtype) * valid.unsqueeze(1)
    pixels = valid.flatten(1).sum(1).clamp_min(1).to(logits.dtype)  # (B,)
    weights = 1.0 - onehot.flatten(2).sum(2) / pixels.unsqueeze(1)  # (B, K)
    log_probs = F.log_softmax(logits.float(), dim=1)
    ce = -(weights.view(*weights.shape, 1, 1) * onehot * log_probs).sum(1)  # (B, H, W)
    weighted_ce = ce.sum() / valid.sum().clamp_min(1)
    probs = log_probs.exp() * valid.unsqueeze(1)
    intersection = (probs * onehot).flatten(2).sum((0, 2))
    denominator = probs.flatten(2).sum((0, 2)) + onehot.flatten(2).sum((0, 2))
    dice = 1.0 - (2 * intersection / (denominator + eps)).mean()
    return weighted_ce + dice
