"""The fixed cases of the STARS version-1 check: shared by the old code's run (tests/stars_v1_reference.py)
and by tests/test_stars_fidelity.py, so both compute the same thing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mmbench.config import load_defaults
from mmbench.method import TrainStep
from mmbench.registry import METHODS

# The switches that restore version 1's computation (version 3 added `reuse_across_branches`).
V1_SWITCHES = {
    "shared_norm": "per_call",
    "reuse_across_branches": False,
    "psa": {"branch": "v1", "uniform_count": "max_samples", "backend": "torch"},  # version 1 ran the reference
}

# Float sums split across threads round differently, so old and current code are compared at one thread
# count: both compute under `pinned_threads()`.
PIN_THREADS = 2


@contextlib.contextmanager
def pinned_threads(count: int = PIN_THREADS) -> Iterator[None]:
    """torch at `count` intra-op threads (whatever OMP_NUM_THREADS says), restored afterwards; also used by
    the mmFormer check (tests/mmformer_v1_reference.py, tests/test_mmformer_fidelity.py) with one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CASES = {
    "2 modalities": {"modalities": {"optical": 3, "sar": 1}, "psa": {}},
    "3 modalities": {"modalities": {"optical": 3, "dsm": 1, "sar": 1}, "psa": {}},
    # 128 px: enough labelled pixels that version 1's count (`max_samples`) exceeds the balanced sampler's,
    # so the case shows that `psa.uniform_count: max_samples` is needed (at 32 px both counts coincide).
    "3 modalities, uniform sampling": {
        "modalities": {"optical": 3, "dsm": 1, "sar": 1},
        "psa": {"sampling": "uniform"},
        "size": 128,
    },
}


def case_config(case: dict, extra: dict) -> dict:
    """STARS' defaults at the tiny widths, with the case's PSA settings and `extra` merged on top."""
    config = load_defaults(METHODS.get("stars").defaults, "stars")
    config.update(METHODS.get("stars").load().tiny_config)
    psa = {**config["psa"], **case["psa"], **extra.get("psa", {})}
    return {**config, **{k: v for k, v in extra.items() if k != "psa"}, "psa": psa}


def case_batch(modalities: dict[str, int], count: int = 4, size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(7)
    inputs = {name: torch.randn(count, c, size, size, generator=generator) for name, c in modalities.items()}
    label = torch.randint(0, 6, (count, size, size), generator=generator)
    label[:, :3] = 255
    return {
        "inputs": inputs,
        "label": label,
        "available": torch.ones(count, len(modalities), dtype=torch.bool),
        "slots": torch.arange(count),
    }


def batch_of(case: dict) -> dict:
    """The case's batch (`size` px, 32 unless the case says)."""
    return case_batch(case["modalities"], size=case.get("size", 32))


def case_info() -> TrainStep:
    return TrainStep(step=3, micro=0, seed=11, ignore_index=255, num_classes=6)


def grad_summary(model: torch.nn.Module) -> dict[str, float]:
    """Sum of |grad| per top-level child: a compact fingerprint of where the gradient went."""
    summary: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            top = name.split(".")[0]
            summary[top] = summary.get(top, 0.0) + float(parameter.grad.abs().sum())
    return summary
