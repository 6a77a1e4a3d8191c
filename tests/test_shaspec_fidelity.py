"""ShaSpec versions 3 and 4: the authors' forms by default (github.com/billhhh/ShaSpec, DualNet_SS.py and train_SS.py),
version 2's forms behind `composition`, `alignment` and `modality_classification_on` (docs/methods/shaspec.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmbench.config import load_defaults
from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS

THREE = {"optical": 3, "dsm": 1, "sar": 1}
TWO = {"optical": 3, "dsm": 1}
CLASSES = 4
INFO = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=CLASSES)


def build(modalities=THREE, **overrides):
    spec = METHODS.get("shaspec")
    config = {**load_defaults(spec.defaults, "shaspec"), **spec.load().tiny_config, **overrides}
    torch.manual_seed(0)
    return build_method(spec, modalities, CLASSES, config)


def inputs_for(modalities=THREE, batch=4, size=32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, c, size, size, generator=generator) for name, c in modalities.items()}


def fixed_features(model, modalities=THREE, batch=4):
    """Encoded features of every modality of a fixed batch (eval mode, so no statistics move)."""
    model.eval()
    with torch.no_grad():
        return model.encode_available(
            inputs_for(modalities, batch), torch.ones(batch, len(modalities), dtype=torch.bool)
        )


def test_defaults_are_the_authors_forms():
    config = load_defaults(METHODS.get("shaspec").defaults, "shaspec")
    assert config["composition"] == "bottleneck"
    assert config["alignment"] == "authors"
    assert config["modality_classification_on"] == "all"
    assert config["sampler"] == "subsets-per-sample"  # one subset per forward of one volume (train_SS.py)


def test_composition_conv_only_at_the_bottleneck_by_default():
    model = build()
    levels = len(model.shared.channels)
    names = {k.split(".")[1] for k in model.state_dict() if k.startswith("compose.")}
    assert names == {str(levels - 1)}


def test_composition_conv_at_every_level_with_all_levels():
    model = build(composition="all_levels")
    levels = len(model.shared.channels)
    names = {k.split(".")[1] for k in model.state_dict() if k.startswith("compose.")}
    assert names == {str(level) for level in range(levels)}
    # version 2's parameter names
    assert "compose.0.weight" in model.state_dict()


def test_bottleneck_passes_available_shared_features_as_is_below_the_bottleneck():
    """Below the bottleneck an available modality reaches the merge as its shared feature; changing its
    specific features there changes nothing; with all_levels it does."""
    for composition, expect_same in (("bottleneck", True), ("all_levels", False)):
        model = build(composition=composition).eval()
        features = fixed_features(model)
        available = torch.ones(4, 3, dtype=torch.bool)
        altered = {
            name: {"shared": f["shared"], "specific": [s + 1.0 for s in f["specific"][:-1]] + [f["specific"][-1]]}
            for name, f in features.items()
        }
        with torch.no_grad():
            same = torch.allclose(model.decode(features, available), model.decode(altered, available))
        assert same is expect_same


def reference_authors_alignment(shared, pairs):
    """train_SS.py: sum over the cyclic pairs of nn.L1Loss()(s_a, s_b), mean over every element."""
    return sum((shared[a] - shared[b]).abs().mean() for a, b in pairs)


def test_authors_alignment_is_their_formula_with_zero_filled_missing_modalities():
    model = build()
    model.train()
    inputs = inputs_for()
    available = torch.tensor([[True, False, True]] * 4)  # dsm missing in the whole batch
    model.training_availability = lambda batch, info: available
    label = torch.randint(0, CLASSES, (4, 32, 32), generator=torch.Generator().manual_seed(2))
    terms = model.training_loss({"inputs": inputs, "label": label}, INFO)
    # Recompute: zero-filled dsm, every modality encoded together, deepest shared features.
    model2 = build()
    model2.train()
    filled = {n: (x if n != "dsm" else torch.zeros_like(x)) for n, x in inputs.items()}
    features = model2.encode_available(filled, torch.ones(4, 3, dtype=torch.bool))
    shared = [features[n]["shared"][-1] for n in model2.modality_names]
    expected = reference_authors_alignment(shared, [(0, 1), (1, 2), (2, 0)])
    torch.testing.assert_close(terms["shared_l1"], expected.detach())
    # The zero-filled modality contributes: its pairs are non-zero.
    assert float((shared[1] - shared[0]).detach().abs().mean()) > 0


def test_authors_alignment_on_fixed_features():
    model = build()
    features = fixed_features(model)
    available = torch.tensor([[True, False, True], [True, True, True], [False, True, False], [True, True, False]])
    shared = [features[n]["shared"][-1] for n in model.modality_names]
    expected = reference_authors_alignment(shared, [(0, 1), (1, 2), (2, 0)])
    torch.testing.assert_close(model._shared_alignment(features, available), expected)


def reference_version2_alignment(features, available, names):
    """Version 2's `_shared_alignment` (before version 3), reimplemented: per sample the mean over elements
    of |s_a - s_b| on the deepest shared level, averaged over (sample, cyclic pair) with both available."""
    pairs = [(i, (i + 1) % len(names)) for i in range(len(names))] if len(names) > 2 else [(0, 1)]
    values = []
    for a, b in pairs:
        difference = (features[names[a]]["shared"][-1] - features[names[b]]["shared"][-1]).abs()
        per_sample = difference.flatten(1).mean(1)
        both = available[:, a] & available[:, b]
        values.extend(per_sample[both].unbind())
    return torch.stack(values).mean() if values else torch.zeros(())


@pytest.mark.parametrize("modalities", [TWO, THREE])
def test_available_pairs_reproduces_version2(modalities):
    model = build(modalities, alignment="available_pairs")
    features = fixed_features(model, modalities)
    rows = [[True, False, True], [True, True, True], [False, True, False], [True, True, False]]
    available = torch.tensor([row[: len(modalities)] for row in rows])
    expected = reference_version2_alignment(features, available, model.modality_names)
    torch.testing.assert_close(model._shared_alignment(features, available), expected)


def test_classification_covers_every_modality_by_default():
    model = build()
    features = fixed_features(model)
    available = torch.tensor([[True, False, False]] * 4)
    pooled = {n: F.adaptive_avg_pool2d(features[n]["specific"][-1], 1).flatten(1) for n in model.modality_names}
    logits = torch.cat([model.modality_classifier(pooled[n]) for n in model.modality_names])
    targets = torch.arange(3).repeat_interleave(4)
    torch.testing.assert_close(model._modality_classification(features, available), F.cross_entropy(logits, targets))
    old = build(modality_classification_on="available")
    old.load_state_dict(model.state_dict())
    only = F.cross_entropy(model.modality_classifier(pooled["optical"]), torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(old._modality_classification(features, available), only)


def test_version2_switches_keep_the_old_training_loss_encoding():
    """With every version 2 switch, training encodes only the available modalities (no zero filling)."""
    model = build(composition="all_levels", alignment="available_pairs", modality_classification_on="available")
    calls = []
    original = model.encode_available
    model.encode_available = lambda inputs, available: calls.append(available.clone()) or original(inputs, available)
    available = torch.tensor([[True, False, True]] * 4)
    model.training_availability = lambda batch, info: available
    label = torch.randint(0, CLASSES, (4, 32, 32), generator=torch.Generator().manual_seed(2))
    model.training_loss({"inputs": inputs_for(), "label": label}, INFO)
    assert len(calls) == 1 and torch.equal(calls[0], available)


def test_version_4_draws_one_subset_per_sample_as_the_authors_batch_of_one_does():
    """train_SS.py draws one subset per forward with `--batch_size 1`; one subset for a whole batch (version 3)
    made this port's BatchNorm statistics mix patterns at evaluation that training never mixed."""
    assert int(METHODS.get("shaspec").version) >= 4
    batch = {"inputs": inputs_for(batch=8), "label": torch.zeros(8, 32, 32, dtype=torch.long), "slots": torch.arange(8)}

    def patterns(model, step):
        return {tuple(row.tolist()) for row in model.training_availability(batch, TrainStep(step, 0, 0, 255, CLASSES))}

    per_sample, per_batch = build(), build(sampler="subsets-per-batch")
    assert all(len(patterns(per_sample, step)) > 1 for step in range(4))
    assert all(len(patterns(per_batch, step)) == 1 for step in range(4))
