"""Fused argmax + confusion update == `ConfusionMatrix.update(logits.max(1).indices, target)`, exactly."""

from __future__ import annotations

import pytest
import torch

from mmbench.evaluation.metrics import ConfusionMatrix


def counted(logits, target, num_classes, backend, ignore_index=255):
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=logits.device)
    matrix.update_from_logits(logits, target, backend=backend)
    return matrix.matrix.cpu()


@pytest.mark.parametrize("num_classes", [1, 2, 6, 7, 70])  # 70: 4900 bins, the per-lane atomic path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_counts_match_the_eager_update(device, num_classes, dtype):
    generator = torch.Generator().manual_seed(num_classes)
    # integer-valued logits: many ties, which must resolve to the lowest class id like torch.max
    logits = torch.randint(0, 3, (3, num_classes, 13, 29), generator=generator).to(dtype)
    target = torch.randint(0, num_classes, (3, 13, 29), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.2] = 255
    got = counted(logits.to(device), target.to(device), num_classes, "triton")
    expected = counted(logits, target, num_classes, "torch")
    assert torch.equal(got, expected)
    assert int(got.sum()) == int((target != 255).sum())


def test_uint8_targets_and_a_custom_ignore_index(device):
    logits = torch.randn(2, 4, 31, 17)
    target = torch.randint(0, 5, (2, 31, 17), dtype=torch.uint8)  # 4 is the ignore index here
    got = counted(logits.to(device), target.to(device), 4, "triton", ignore_index=4)
    assert torch.equal(got, counted(logits, target, 4, "torch", ignore_index=4))


def test_out_of_range_targets_raise_and_count_nothing(device):
    matrix = ConfusionMatrix(3, device=device)
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    target[0, 1, 2] = 9
    with pytest.raises(ValueError, match=r"target values \[9\] are outside \[0, 3\)"):
        matrix.update_from_logits(torch.randn(1, 3, 4, 4).to(device), target.to(device), backend="triton")
    assert int(matrix.matrix.sum()) == 0


def test_shape_mismatch_is_refused(device):
    matrix = ConfusionMatrix(3, device=device)
    with pytest.raises(ValueError, match=r"must be \(B, 3, \.\.\.\)"):
        matrix.update_from_logits(
            torch.randn(1, 4, 4, 4).to(device), torch.zeros(1, 4, 4, dtype=torch.long).to(device), backend="triton"
        )
