"""Training-time modality samplers shared by methods: which modalities each sample gets.

Every draw is keyed by (seed, step, micro-batch, slot), the sample's place in the global batch, so the
availability of a sample does not depend on how many processes share the batch or on resuming.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

KINDS = ("all", "subsets-per-sample", "subsets-per-batch", "bernoulli")
_WHOLE_BATCH = 2**32 - 1  # the seed word that stands for "every slot" (numpy seeds must be non-negative)


def sample_availability(
    kind: str,
    modalities: int,
    slots: Sequence[int],
    key: Sequence[int],
    *,
    p_drop: float = 0.5,
    include_full: bool = True,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """(len(slots), modalities) bool. `subsets-*`: uniform over the non-empty subsets (the full set only if
    `include_full`); `bernoulli`: each modality dropped with `p_drop`, redrawn if all would be dropped."""
    if kind not in KINDS:
        raise ValueError(f"unknown modality sampler {kind!r}; use one of {', '.join(KINDS)}")
    rows = []
    for slot in slots:
        if kind == "all":
            rows.append([True] * modalities)
            continue
        rng = np.random.default_rng([*key, _WHOLE_BATCH if kind == "subsets-per-batch" else int(slot)])
        if kind == "bernoulli":
            while True:
                row = (rng.random(modalities) >= p_drop).tolist()
                if any(row):
                    break
        else:
            count = 2**modalities - 1 - (0 if include_full else 1)
            code = int(rng.integers(count)) + 1  # bit patterns 1 .. 2^M - 1 (or - 2 without the full set)
            row = [bool(code >> bit & 1) for bit in range(modalities)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.bool, device=device)
