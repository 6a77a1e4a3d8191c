"""Building blocks that several methods import (backbones, decoders, attention, sampling helpers). Each
block's numerical output is pinned in tests/test_shared_blocks.py: a change here changes every dependent
method's numbers, so their versions must change with it.
"""
