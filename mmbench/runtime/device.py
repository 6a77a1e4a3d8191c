"""Which device a run computes on."""

from __future__ import annotations

from mmbench.errors import UserError


def resolve_device(requested: str) -> str:
    """`auto` picks CUDA when present; asking for CUDA without it is a user error, not a silent CPU run."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested} asked for CUDA, but torch sees no CUDA device; use --device cpu")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return requested
