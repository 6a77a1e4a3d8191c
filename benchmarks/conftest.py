"""Benchmarks run with `pytest benchmarks/ --benchmark-only` (pytest-benchmark); never part of CI's test run."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One thread, as the training workers run; restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
