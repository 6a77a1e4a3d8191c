"""One seed gives the same numbers from every random source; the determinism switch is applied."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mmbench.runtime.seeding import seed_everything


def draw() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_same_seed_same_numbers_and_different_seed_different_numbers():
    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first


def test_deterministic_switch_is_applied_and_reported():
    try:
        applied = seed_everything(5, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert applied["deterministic"] is True and applied["torch"] == 5 and applied["numpy"] == 5
        assert applied["cublas_workspace_config"] == ":4096:8"
        seed_everything(5, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "3"])
def test_invalid_seeds_are_rejected(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        seed_everything(seed)
