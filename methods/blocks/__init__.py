"""Building blocks that several methods import (backbones, decoders, attention, sampling helpers). Each
block's numerical output is pinned in tests/test_shared_blocks.py: a change here changes every dependent
method's numbers, so their versions must change with it.

The names of `__all__` are the public building blocks a third-party method imports from here
(`from mmbench.methods.blocks import resnet, FPNDecoder`; docs/plugins.md, "Building blocks"): they keep
their import path and their numbers within a method version. Everything else in this package is internal.
They are re-exported lazily (PEP 562 `__getattr__`): importing one block does not import the others, so a
method that uses only the attention blocks neither pays for nor depends on the backbones.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module of this package that defines it
_HOMES: dict[str, str] = {
    # ResNet-18/34/50 encoders (C2..C5 pyramid) and loading a local torchvision state_dict (docs/pretrained.md)
    "resnet": "backbones",
    "ResNet": "backbones",
    "BasicBlock": "backbones",
    "Bottleneck": "backbones",
    "PRETRAINED_WIDTH": "backbones",
    "load_pretrained": "backbones",
    "load_pretrained_resnet": "backbones",
    "pretrained_fits": "backbones",
    # stems, the FPN decoder, masked fusion, training-time modality sampling, losses
    "Stem": "common",
    "FPNDecoder": "common",
    "upsample": "common",
    "masked_mean": "common",
    "masked_concat": "common",
    "sampled_availability": "common",
    "weighted_ce_dice": "common",
    # attention layers (PyTorch SDPA or xformers, with key masks); the function `attention` stays in its module,
    # `mmbench.methods.blocks.attention`, whose name it would shadow
    "MultiHeadAttention": "attention",
    "CrossAttention": "attention",
    "TransformerBlock": "attention",
    # image-to-image translation (pix2pix U-Net generator, PatchGAN discriminator)
    "Pix2PixGenerator": "pix2pix",
    "PatchDiscriminator": "pix2pix",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
