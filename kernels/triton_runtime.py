"""Where the Triton kernels may run, decided once per call, with one clear error when they may not.

Compiled Triton needs CUDA tensors. Under Triton's interpreter (`TRITON_INTERPRET=1`, set before
`triton` is first imported) the same kernels run on CPU tensors as numpy programs, one after the
other: that is how CI checks them on machines without a GPU. Anything else is a user error with the
fix in the message, never a silent switch to the PyTorch reference.
"""

from __future__ import annotations

import importlib.util
import os

from torch import Tensor

INTERPRETER_ENV = "TRITON_INTERPRET"


def interpreter_requested() -> bool:
    """True when the environment asks Triton to interpret kernels (the value triton reads at import)."""
    return os.environ.get(INTERPRETER_ENV, "0").strip().lower() in {"1", "true", "yes", "on"}


def triton_available() -> bool:
    """Installed, judged without importing it (importing fixes interpreted vs compiled for the process)."""
    return importlib.util.find_spec("triton") is not None


def check_launchable(*tensors: Tensor) -> None:
    """Raise a one-line error unless every tensor can be handed to a Triton kernel here."""
    if not triton_available():
        raise RuntimeError("Triton is not installed; install triton (Linux) or use backend='torch'")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"tensors are on different devices {sorted(map(str, devices))}; move them to one device")
    device = next(iter(devices))
    if device.type == "cuda":
        return
    if device.type == "cpu" and interpreter_requested():
        return
    raise RuntimeError(
        f"the Triton kernels need CUDA tensors (got {device}); use backend='torch', or set "
        f"{INTERPRETER_ENV}=1 before importing triton to run them in Triton's interpreter"
    )


def next_power_of_2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()
