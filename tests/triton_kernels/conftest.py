"""The Triton kernels against their PyTorch references, compiled on CUDA or in Triton's interpreter.

On a machine without CUDA this folder is collected only when `TRITON_INTERPRET=1` was set before
triton was imported; the main test session starts it as its own pytest process
(`tests/test_triton_interpreter.py`) so the interpreter never mixes with anything compiled.
Run it directly with `TRITON_INTERPRET=1 pytest tests/triton_kernels`.
"""

from __future__ import annotations

import pytest
import torch
import triton

from mmbench.kernels import gather_triton, infonce_triton, sampling_triton
from mmbench.kernels.triton_runtime import interpreter_requested

INTERPRETED = interpreter_requested()
DEVICE = torch.device("cpu" if INTERPRETED else "cuda")


def pytest_configure(config: pytest.Config) -> None:
    from triton.runtime.interpreter import InterpretedFunction

    modes = {
        isinstance(kernel, InterpretedFunction)
        for kernel in (
            sampling_triton._candidate_kernel,
            gather_triton._gather_rows_kernel,
            infonce_triton._lse_forward_kernel,
        )
    }
    if modes != {INTERPRETED}:
        pytest.exit(
            f"TRITON_INTERPRET={int(INTERPRETED)} but triton {triton.__version__} built its kernels "
            f"{'compiled' if INTERPRETED else 'interpreted'}: set the variable before anything imports triton",
            returncode=4,
        )


@pytest.fixture
def device() -> torch.device:
    return DEVICE
