"""Window placement shared by converters (cutting source images) and evaluation (sliding windows)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# The (rows, columns) slices of one window in a (B, C, H, W) tile.
WindowRegion = tuple[slice, slice]


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets along one axis: every `stride` pixels, the last window shifted back to end at the edge.

    This covers the image completely without padding; only an image shorter than `tile` gets one window at 0
    (and is padded by the caller).
    """
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def average_over_windows(
    height: int,
    width: int,
    window: int | None,
    stride: int | None,
    predict: Callable[[WindowRegion], Sequence[torch.Tensor]],
) -> list[torch.Tensor]:
    """Each (B, C, h, w) output of `predict`, assembled over a whole (height, width) tile: `predict` runs on every
    sliding window and overlapping windows' outputs are averaged. No `window` means one window covering the tile
    (its outputs are returned as they are, without a canvas); no `stride` means windows that do not overlap.

    One implementation for the evaluation runner's logits (mmbench/evaluation/runner.py) and the imputation
    measurement (benchmarks/imputation_recovery.py), so both see the same tiling.
    """
    window = window or max(height, width)
    stride = stride or window
    size_h, size_w = min(window, height), min(window, width)
    rows, cols = window_starts(height, size_h, stride), window_starts(width, size_w, stride)
    if len(rows) == len(cols) == 1 and (size_h, size_w) == (height, width):
        return list(predict((slice(None), slice(None))))
    totals: list[torch.Tensor] = []
    counts = torch.zeros(())
    for top in rows:
        for left in cols:
            region = (slice(top, top + size_h), slice(left, left + size_w))
            outputs = predict(region)
            if not totals:
                totals = [output.new_zeros(*output.shape[:-2], height, width) for output in outputs]
                counts = outputs[0].new_zeros(1, 1, height, width)
            for total, output in zip(totals, outputs, strict=True):
                total[..., region[0], region[1]] += output
            counts[..., region[0], region[1]] += 1
    return [total / counts for total in totals]
