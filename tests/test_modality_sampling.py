"""The shared training-time modality samplers (`mmbench.sampling`)."""

from __future__ import annotations

import pytest
import torch

from mmbench.sampling import KINDS, sample_availability


@pytest.mark.parametrize("kind", KINDS)
def test_never_empty_and_deterministic(kind):
    rows = sample_availability(kind, 3, range(64), (1, 2, 3))
    assert rows.shape == (64, 3) and bool(rows.any(1).all())
    assert torch.equal(rows, sample_availability(kind, 3, range(64), (1, 2, 3)))


def test_per_batch_draws_one_pattern_for_every_slot_and_per_sample_varies():
    for step in range(10):
        batch = sample_availability("subsets-per-batch", 3, [0, 5, 9], (0, step, 0))
        assert bool((batch == batch[0]).all())
    per_sample = sample_availability("subsets-per-sample", 3, range(64), (0, 0, 0))
    assert len({tuple(row) for row in per_sample.tolist()}) == 7  # all 2^3 - 1 subsets appear


def test_without_the_full_set_and_a_slot_is_its_own_draw():
    rows = sample_availability("subsets-per-sample", 3, range(200), (4, 4, 4), include_full=False)
    assert not bool(rows.all(1).any())
    alone = sample_availability("subsets-per-sample", 3, [17], (4, 4, 4), include_full=False)
    assert torch.equal(alone[0], rows[17])  # a sample's draw does not depend on the rest of the batch


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown modality sampler"):
        sample_availability("sometimes", 2, [0], (0,))
