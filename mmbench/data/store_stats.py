"""Per-band normalisation statistics, accumulated tile by tile.

The loader normalises with these numbers; they are computed once, on the training split, when a store
is written, so that no test pixel leaks into preprocessing and no two users normalise differently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def band_statistics(tiles: Iterable[np.ndarray]) -> dict[str, list[float]]:
    """mean, std, min and max per band over (C, H, W) tiles, in float64 (numerically safe for metres)."""
    total = None
    total_sq = None
    low = None
    high = None
    count = 0
    for tile in tiles:
        values = np.asarray(tile, dtype=np.float64).reshape(tile.shape[0], -1)
        # Shifted sums keep the variance exact for large offsets (DSM heights of hundreds of metres).
        if total is None:
            shift = values[:, :1].copy()
            total = np.zeros(values.shape[0])
            total_sq = np.zeros(values.shape[0])
            low = values.min(axis=1)
            high = values.max(axis=1)
        centered = values - shift
        total += centered.sum(axis=1)
        total_sq += (centered**2).sum(axis=1)
        low = np.minimum(low, values.min(axis=1))
        high = np.maximum(high, values.max(axis=1))
        count += values.shape[1]
    if total is None:
        raise ValueError("no tiles to compute statistics on")
    mean_shifted = total / count
    variance = np.maximum(total_sq / count - mean_shifted**2, 0.0)
    return {
        "mean": (mean_shifted + shift[:, 0]).tolist(),
        "std": np.sqrt(variance).tolist(),
        "min": low.tolist(),
        "max": high.tolist(),
    }
