"""`parameter_budget`: what every record says about a method's size (trainable, discriminators, used at
inference per scenario), registry-parametrized over the built-in methods."""

from __future__ import annotations

import pytest
import torch
from builtin_plugins import builtin_methods

from mmbench.config import load_defaults
from mmbench.method import build_method, count_parameters, parameter_budget
from mmbench.registry import METHODS

MODALITIES = {"optical": 3, "dsm": 1, "sar": 1}
SCENARIOS = [
    {"name": "optical only", "available": ["optical"]},
    {"name": "sar only", "available": ["sar"]},
    {"name": "full set", "available": list(MODALITIES)},
]


def tiny(name: str):
    spec = METHODS.get(name)
    config = {**load_defaults(spec.defaults, name), **spec.load().tiny_config}
    torch.manual_seed(0)
    return build_method(spec, MODALITIES, 6, config)


@pytest.mark.parametrize("name", builtin_methods())
def test_the_budget_counts_what_inference_uses_and_leaves_the_model_as_it_was(name):
    model = tiny(name).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    budget = parameter_budget(model, MODALITIES, SCENARIOS)
    assert budget["trainable"] == count_parameters(model)
    assert 0 <= budget["adversary"] < budget["trainable"]
    for scenario, used in budget["used_at_inference"].items():
        assert 0 < used <= budget["trainable"] - budget["adversary"], scenario
    # The discriminators are trained but never used at inference.
    assert (budget["adversary"] > 0) == bool(model.adversary_modules())
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_used_parameters_are_those_the_scenario_reaches():
    """Unimodal keeps one model per modality and answers with one of them: a single-modality scenario uses
    exactly that modality's model; early-fusion uses every parameter whatever is missing."""
    unimodal = tiny("unimodal")
    budget = parameter_budget(unimodal, MODALITIES, SCENARIOS)
    per_model = {name: count_parameters(model) for name, model in unimodal.models.items()}
    assert budget["used_at_inference"]["optical only"] == per_model["optical"]
    assert budget["used_at_inference"]["sar only"] == per_model["sar"]
    fusion = tiny("early-fusion")
    assert set(parameter_budget(fusion, MODALITIES, SCENARIOS)["used_at_inference"].values()) == {
        count_parameters(fusion)
    }
