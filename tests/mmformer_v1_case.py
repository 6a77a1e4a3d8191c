"""The fixed cases of the mmFormer-2D version-1 check: shared by the old code's run
(tests/mmformer_v1_reference.py) and by tests/test_mmformer_fidelity.py, so both compute the same thing.
GEMMNet runs the same network, so its version 2 is pinned beside mmFormer's."""

from __future__ import annotations

from typing import Any

import torch
from stars_v1_case import case_batch, case_info, grad_summary

from mmbench.config import load_defaults
from mmbench.registry import METHODS

__all__ = ["CASES", "V1_SWITCHES", "case_batch", "case_config", "case_info", "grad_summary", "pin_of"]

# The switches of methods/blocks/mmformer.py that restore version 1's network and loss.
V1_SWITCHES = {
    "norm": "affine",
    "encoder_entry": "plain",
    "region_fusion": "v1",
    "bottleneck_fusion": "v1",
    "decoder_blocks": "v1",
    "inter_positions": False,
    "inter_layout": "grid",
    "conv_init": "torch",
    "sep_rows": "available",
    "sep_bottleneck": "tokens",
}

CASES = {
    "mmformer, 3 modalities": {"method": "mmformer", "modalities": {"optical": 3, "dsm": 1, "sar": 1}},
    "mmformer, 2 modalities": {"method": "mmformer", "modalities": {"optical": 3, "sar": 1}},
    # GEMMNet version 4's per-pattern generator statistics change its evaluation with M = 3: version 3's back
    "gemmnet, 3 modalities": {
        "method": "gemmnet",
        "modalities": {"optical": 3, "dsm": 1, "sar": 1},
        "switches": {"generator_norm_stats": "shared"},
    },
}


def case_config(case: dict, extra: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults at its tiny widths with the case's own switches and `extra` on top; keys the old
    code lacks are ignored by it."""
    spec = METHODS.get(case["method"])
    config = load_defaults(spec.defaults, case["method"])
    config.update(spec.load().tiny_config)
    config.update(case.get("switches", {}))
    config.update(extra)
    return config


def pin_of(model: torch.nn.Module, case: dict) -> dict[str, Any]:
    """Training-loss terms, gradient fingerprint and evaluation logits of a model built under seed 0."""
    batch = case_batch(case["modalities"])
    terms = model.training_loss(batch, case_info())
    terms["loss"].backward()
    model.eval()
    available = torch.ones(4, len(case["modalities"]), dtype=torch.bool)
    available[1, 0] = available[2, 1:] = False
    with torch.no_grad():
        logits = model(batch["inputs"], available)
    return {
        "terms": {key: float(value.detach()) for key, value in terms.items()},
        "grads": grad_summary(model),
        "logits_sum": float(logits.double().sum()),
        "logits_abs": float(logits.double().abs().sum()),
    }
