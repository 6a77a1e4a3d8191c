"""The output contract of a method's `forward`/`decode` (mmbench/method.py): float logits (B, K, H, W), K the
dataset's class count, H x W the input's size, all finite. Shared by `mmbench check`, `mmbench.testing` and the
check `mmbench run` does before training (mmbench/runs/preflight.py), so all three say the same thing.
"""

from __future__ import annotations

from typing import Any

import torch

LOGITS_TYPE, LOGITS_SHAPE, CLASS_COUNT, FINITE = "logits-type", "logits-shape", "class-count", "finite-logits"


def logits_problem(logits: Any, batch: int, num_classes: int, size: tuple[int, int]) -> tuple[str, str] | None:
    """`(rule, one-line detail with the fix)` for the first way `logits` breaks the contract, or None."""
    expected = (batch, num_classes, *size)
    if not isinstance(logits, torch.Tensor):
        return LOGITS_TYPE, (
            f"forward returned a {type(logits).__name__}, not a tensor; return float logits of shape {expected}"
        )
    shape = tuple(logits.shape)
    labels_shape = shape == (batch, *size)
    if not (logits.is_floating_point() or logits.is_complex()) or labels_shape:
        return LOGITS_TYPE, (
            f"forward returned {str(logits.dtype).removeprefix('torch.')} values of shape {shape}, which look like "
            f"labels, not logits; return the float class scores of shape {expected} (before any argmax)"
        )
    if logits.is_complex():
        return LOGITS_TYPE, f"forward returned complex values; return real float logits of shape {expected}"
    if logits.ndim != 4 or shape[0] != batch:
        return LOGITS_SHAPE, f"forward returned logits of shape {shape}; expected {expected} (B, K, H, W)"
    if shape[1] != num_classes:
        return CLASS_COUNT, (
            f"logits have {shape[1]} channels but the dataset has {num_classes} classes (expected shape "
            f"{expected}); size the classifier from the num_classes argument, never a hard-coded count"
        )
    if shape[2:] != tuple(size):
        return LOGITS_SHAPE, (
            f"logits are {shape[2]}x{shape[3]} px for {size[0]}x{size[1]} px inputs (expected {expected}); "
            "upsample to the input size before returning, e.g. F.interpolate(logits, size=x.shape[-2:])"
        )
    if not bool(torch.isfinite(logits).all()):
        return FINITE, (
            "logits hold NaN/inf on finite inputs; look for a division by zero, log of 0 or an overflow in forward"
        )
    return None
