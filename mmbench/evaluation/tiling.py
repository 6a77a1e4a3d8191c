"""Window placement shared by converters (cutting source images) and evaluation (sliding windows)."""

from __future__ import annotations


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
