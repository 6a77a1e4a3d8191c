"""DIS2-specific behaviour: per-pattern routing, compensation only for missing modalities, the KD warm-up,
the orthogonality loss, a teacher untouched by distillation, config errors. The interface tests every method
passes (patterns, NaN, split interface, learning, checkpoints) are in test_comparison_methods.py."""

from __future__ import annotations

import pytest
import torch

from mmbench.config import load_defaults
from mmbench.errors import ConfigError
from mmbench.method import TrainStep
from mmbench.methods.dis2.model import Dis2, orthogonality

SMALL = Dis2.tiny_config
THREE = {"optical": 3, "dsm": 1, "sar": 1}
CLASSES = 4


def build(modalities=THREE, seed: int = 0, **overrides) -> Dis2:
    config = {**load_defaults("mmbench.methods.dis2:dis2.yaml", "dis2"), **SMALL, **overrides}
    torch.manual_seed(seed)
    return Dis2(modalities, CLASSES, config)


def batch_for(modalities=THREE, size: int = 32, batch: int = 4) -> dict:
    generator = torch.Generator().manual_seed(0)
    inputs = {name: torch.randn(batch, c, size, size, generator=generator) for name, c in modalities.items()}
    label = torch.randint(0, CLASSES, (batch, size, size), generator=generator)
    return {"inputs": inputs, "label": label, "available": torch.ones(batch, len(modalities), dtype=torch.bool)}


def info(step: int = 0) -> TrainStep:
    return TrainStep(step=step, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)


def test_one_branch_per_pattern_or_shared():
    assert len(build().branches) == 7  # 2^3 - 1, the full one included
    assert set(build(branches="shared").branches) == {"full", "missing"}
    model = build(branches="shared")
    available = torch.tensor([[True, True, True], [True, False, True], [False, False, True]])
    assert model.branch_for(available) == ["full", "missing", "missing"]


def test_each_sample_is_routed_to_its_patterns_branch():
    model = build().eval()
    batch = batch_for(batch=4)
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, True], [True, False, True]])
    assert model.branch_for(available) == ["p101", "p010", "p111", "p101"]
    with torch.no_grad():
        before = model(batch["inputs"], available)
        alone = model({n: x[1:2] for n, x in batch["inputs"].items()}, available[1:2])
        model.branches["p101"].decoder.classifier.bias.add_(1.0)  # shifts only that branch's logits
        after = model(batch["inputs"], available)
    torch.testing.assert_close(alone, before[1:2])  # a mixed batch gives each sample what it gets alone
    torch.testing.assert_close(after[[0, 3]], before[[0, 3]] + 1.0)
    assert torch.equal(after[[1, 2]], before[[1, 2]])


def test_compensation_features_stand_in_only_for_missing_modalities():
    model = build().eval()
    batch = batch_for(batch=3)
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    with torch.no_grad():
        features = {n: model.encode(n, batch["inputs"][n]) for n in model.modality_names}
        for name in model.modality_names:  # compensation rows of present targets, own rows of missing ones
            index = model.modality_names.index(name)
            for source in features.values():
                if name in source["compensation"]:
                    source["compensation"][name] = [
                        torch.where(available[:, index].view(-1, 1, 1, 1), float("nan"), f)
                        for f in source["compensation"][name]
                    ]
            features[name]["own"] = [
                torch.where(available[:, index].view(-1, 1, 1, 1), f, float("nan")) for f in features[name]["own"]
            ]
        assembled = model.assemble(features, available)
    for level in range(4):
        optical, dsm, sar = (assembled[m][level] for m in range(3))
        assert all(bool(torch.isfinite(x).all()) for x in (optical, dsm, sar))
        assert torch.equal(optical[0], features["optical"]["own"][level][0])
        expected = (
            features["optical"]["compensation"]["dsm"][level][0] + features["sar"]["compensation"]["dsm"][level][0]
        ) / 2  # mean over available sources
        torch.testing.assert_close(dsm[0], expected)
        torch.testing.assert_close(sar[1], features["dsm"]["compensation"]["sar"][level][1])


def test_kd_weight_is_zero_before_warm_up_and_applied_after():
    model = build(kd_warmup_iterations=10, kd_weight=5.0).train()
    batch = batch_for()
    assert model.kd_weight(9) == 0.0 and model.kd_weight(10) == 5.0
    for step, weight in ((0, 0.0), (10, 5.0)):
        terms = model.training_loss(batch, info(step))
        assert float(terms["kd"]) > 0
        rest = terms["full"] + terms["uni"] + terms["missing"] + terms["orthogonality"] + terms["deep"]
        torch.testing.assert_close(terms["loss"].detach(), rest + weight * terms["kd"])


def test_orthogonality_is_the_mean_squared_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0], [1.0, 1.0]])
    torch.testing.assert_close(orthogonality(a, b), torch.tensor([0.0, 1.0, 0.5]))


def test_teacher_gets_no_gradient_from_distillation():
    model = build().train()
    terms = model.loss_terms(batch_for(), info())
    terms["kd"].backward()
    teacher = model.branches["p111"]
    assert all(p.grad is None or not bool(p.grad.any()) for p in teacher.parameters())
    students = [b for key, b in model.branches.items() if key != "p111"]
    assert any(p.grad is not None and bool(p.grad.any()) for b in students for p in b.parameters())


def test_students_train_only_on_patterns_with_a_missing_modality():
    model = build()
    available = model.training_availability(batch_for(batch=16), info())
    assert not bool(available.all(1).any()) and bool(available.any(1).all())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("branches", "per-sample"),
        ("sampler", "all"),
        ("sampler", "bernoulli"),
        ("heads", 3),
        ("gf", 0),
        ("kd_temperature", 0.0),
        ("kd_weight", -1.0),
        ("kd_warmup_iterations", 2.5),
    ],
)
def test_bad_settings_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=f"method.{key}"):
        build(**{key: value})


def test_needs_two_modalities():
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        build({"optical": 3})
