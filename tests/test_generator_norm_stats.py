"""GEMMNet version 4: the generators keep their BatchNorm statistics per pattern of the other modalities
(`generator_norm_stats: per_pattern`, methods/blocks/pix2pix.py `PatternBatchNorm2d`), so what a checkpoint
predicts no longer depends on which patterns its last training batches happened to draw
(docs/methods/gemmnet.md, "Version 4")."""

from __future__ import annotations

import copy

import pytest
import torch

from mmbench.config import load_defaults
from mmbench.errors import ConfigError
from mmbench.method import TrainStep, build_method
from mmbench.methods.blocks.pix2pix import PatternBatchNorm2d, Pix2PixGenerator
from mmbench.registry import METHODS

TWO = {"optical": 3, "dsm": 1}
THREE = {"optical": 3, "dsm": 1, "sar": 1}


def build(modalities, **extra):
    spec = METHODS.get("gemmnet")
    config = {**load_defaults(spec.defaults, "gemmnet"), **spec.load().tiny_config, **extra}
    torch.manual_seed(0)
    return build_method(spec, modalities, 4, config)


def inputs_of(modalities, count=4, size=32):
    generator = torch.Generator().manual_seed(1)
    return {name: torch.randn(count, c, size, size, generator=generator) for name, c in modalities.items()}


def rows(code: int, count: int = 4, modalities: int = 3) -> torch.Tensor:
    """`count` samples with the availability bit pattern `code` (bit i: modality i present)."""
    return torch.tensor([[bool(code >> bit & 1) for bit in range(modalities)]] * count)


def predictions_after(model, inputs, codes, evaluated):
    """Eval-mode logits on `evaluated` after training-mode imputation on one batch per pattern in `codes`."""
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        for code in codes:
            model.complete(inputs, rows(code))
    model.eval()
    with torch.no_grad():
        return model(inputs, evaluated)


@pytest.mark.parametrize("stats,same", [("per_pattern", True), ("shared", False)])
def test_predictions_do_not_depend_on_the_order_of_the_training_patterns(stats, same):
    """Each single-modality pattern once, in two orders: version 3's shared statistics end as two different
    mixtures (the defect); per-pattern statistics end the same."""
    model = build(THREE, generator_norm_stats=stats)
    inputs = inputs_of(THREE)
    only_optical = rows(0b001)
    first = predictions_after(model, inputs, [0b001, 0b010, 0b100], only_optical)
    second = predictions_after(model, inputs, [0b100, 0b010, 0b001], only_optical)
    assert torch.equal(first, second) is same


def test_a_training_batch_updates_only_its_own_pattern():
    model = build(THREE).train()
    inputs = inputs_of(THREE)
    norm = model.generators["optical"].downs[1][1]
    assert isinstance(norm, PatternBatchNorm2d) and norm.running_mean.shape[0] == 4  # 2^(M-1) patterns
    before = norm.running_mean.clone()
    with torch.no_grad():
        model.complete(inputs, rows(0b100))  # only SAR: the optical generator sees pattern "sar" = bit 1 = id 2
    changed = (norm.running_mean != before).any(dim=1).tolist()
    assert changed == [False, False, True, False]
    assert norm.num_batches_tracked.tolist() == [0, 0, 1, 0]


def test_two_modalities_compute_what_shared_batchnorm_computes_bit_for_bit():
    """With M = 2 and one pattern per batch (GEMMNet's sampler) every generator sees one input pattern:
    version 4 computes version 3 (the authors' setting)."""
    inputs = inputs_of(TWO)
    label = torch.randint(0, 4, (4, 32, 32), generator=torch.Generator().manual_seed(2))
    results = []
    for stats in ("per_pattern", "shared"):
        model = build(TWO, generator_norm_stats=stats).train()
        terms = {}
        for step, code in enumerate([0b01, 0b10, 0b11, 0b01]):
            model.training_availability = lambda batch, info, code=code: rows(code, modalities=2)  # one pattern
            loss = model.training_loss({"inputs": inputs, "label": label}, TrainStep(step, 0, 0, 255, 4))
            loss["loss"].backward()
            terms[step] = {key: float(value.detach()) for key, value in loss.items()}
        grads = [parameter.grad.clone() for parameter in model.parameters() if parameter.grad is not None]
        model.eval()
        with torch.no_grad():
            logits = model(inputs, torch.tensor([[True, False], [False, True], [True, True], [True, False]]))
        results.append((terms, grads, logits))
    (terms_a, grads_a, logits_a), (terms_b, grads_b, logits_b) = results
    assert terms_a == terms_b
    assert len(grads_a) == len(grads_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))
    assert torch.equal(logits_a, logits_b)


def test_a_batch_mixing_patterns_is_evaluated_as_each_pattern_alone():
    """Evaluation gathers each sample's own statistics (random-drop batches mix patterns)."""
    model = build(THREE)
    inputs = inputs_of(THREE)
    mixed = torch.cat([rows(0b001, 1), rows(0b010, 1), rows(0b110, 1), rows(0b101, 1)])
    codes = [0b001, 0b010, 0b100, 0b110, 0b101, 0b011]
    together = predictions_after(model, inputs, codes, mixed)
    for sample, code in enumerate([0b001, 0b010, 0b110, 0b101]):
        alone = predictions_after(model, inputs, codes, rows(code))
        assert torch.equal(together[sample], alone[sample])


def test_a_training_batch_mixing_patterns_normalises_each_pattern_with_its_own_rows():
    """Each pattern's rows as a BatchNorm2d of their own: the mixed batch gives each row what its pattern's
    rows alone give, and updates each pattern's running statistics from them."""
    generator = Pix2PixGenerator(4, 1, 4, patterns=3)
    x = torch.randn(4, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([1, 2, 1, 2])
    alone, mixed = copy.deepcopy(generator).train(), copy.deepcopy(generator).train()
    expected = torch.empty(4, 1, 32, 32)
    for value in (1, 2):
        expected[ids == value] = alone(x[ids == value], ids[ids == value])
    assert torch.equal(mixed(x, ids), expected)
    for a, b in zip(alone.buffers(), mixed.buffers(), strict=True):
        assert torch.equal(a, b)
    norm = mixed.downs[1][1]
    assert norm.num_batches_tracked.tolist() == [0, 1, 1]
    with pytest.raises(RuntimeError, match="needs the availability pattern"):
        generator(x)


def test_the_switch_is_checked_and_per_pattern_is_the_default():
    with pytest.raises(ConfigError, match="method.generator_norm_stats='batch': use per_pattern or shared"):
        build(THREE, generator_norm_stats="batch")
    spec = METHODS.get("gemmnet")
    assert load_defaults(spec.defaults, "gemmnet")["generator_norm_stats"] == "per_pattern"
    assert int(spec.version) >= 4
