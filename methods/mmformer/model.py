"""The `mmformer` method: mmFormer-2D (github.com/YaoZhang93/mmFormer), ported to 2-D for remote sensing.

The network, its loss and its training masks live in methods/blocks/mmformer.py, where the port and its
sources are documented, because `gemmnet` and `dis2` build on the same pieces; this method is that network
unchanged. Its version (methods/mmformer/__init__.py) follows the block's numbers: tests/test_shared_blocks.py
fails when the block changes numerically and this version does not.
"""

from __future__ import annotations

from mmbench.methods.blocks.mmformer import MmFormer

__all__ = ["MmFormer"]
