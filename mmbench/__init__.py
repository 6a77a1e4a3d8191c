"""mmbench: a reproducibility benchmark for missing-modality multimodal remote-sensing segmentation.

This module stays import-light on purpose: `mmbench --help`, `mmbench --version` and `mmbench list`
must answer without importing torch or any model code. Heavy modules are imported where they are used.
"""

from mmbench._version import __version__

__all__ = ["__version__"]
