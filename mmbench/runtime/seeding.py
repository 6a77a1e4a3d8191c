"""One seeding and determinism switch, used by every entry point that computes anything.

Reproducibility is the product: the same seed must give the same numbers, so every random source a
run can touch (python, numpy, torch on CPU and CUDA) is seeded from one integer, and the choices made
are returned so that the run record can state them.
"""

from __future__ import annotations

import os
import random
from typing import Any


def seed_everything(seed: int, deterministic: bool = False) -> dict[str, Any]:
    """Seed python, numpy and torch from `seed`; with `deterministic`, forbid nondeterministic kernels.

    Returns the seeds and flags that were applied, for the run record. `PYTHONHASHSEED` only affects
    processes started afterwards (e.g. data-loader workers spawned fresh, torchrun children).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    applied: dict[str, Any] = {"python": seed, "pythonhashseed": seed, "deterministic": deterministic}

    try:
        import numpy as np
    except ImportError:  # numpy is a torch dependency in practice, but not needed to seed the rest
        applied["numpy"] = None
    else:
        np.random.seed(seed)
        applied["numpy"] = seed

    import torch

    torch.manual_seed(seed)  # also seeds every CUDA device
    applied["torch"] = seed
    applied["cuda"] = seed if torch.cuda.is_available() else None

    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it must be set before the first CUDA call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        applied["cublas_workspace_config"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    return applied
