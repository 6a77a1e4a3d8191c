"""GEMMNet version 2: the discriminator sees what the authors' `gan_enhanced.py` feeds it (the real withheld
modality as its condition, `discriminator_condition: target`), and version 1's pix2pix conditioning on the
other modalities stays reachable (`others`); docs/methods/gemmnet.md."""

from __future__ import annotations

import pytest
import torch

from mmbench.config import load_defaults
from mmbench.errors import ConfigError
from mmbench.method import TrainStep, build_method
from mmbench.registry import METHODS

TWO = {"optical": 3, "dsm": 1}
THREE = {"optical": 3, "dsm": 1, "sar": 1}
INFO = TrainStep(step=0, micro=0, seed=0, ignore_index=255, num_classes=4)


def build(modalities, condition, update="joint"):
    spec = METHODS.get("gemmnet")
    config = {
        **load_defaults(spec.defaults, "gemmnet"),
        **spec.load().tiny_config,
        "discriminator_condition": condition,
        "gan_update": update,
    }
    torch.manual_seed(0)
    model = build_method(spec, modalities, 4, config)
    model.train()
    model.training_availability = lambda batch, info: batch["available"]  # a fixed withheld pattern
    return model


def batch(modalities, available):
    generator = torch.Generator().manual_seed(1)
    size = 32
    inputs = {name: torch.randn(len(available), c, size, size, generator=generator) for name, c in modalities.items()}
    label = torch.randint(0, 4, (len(available), size, size), generator=generator)
    return {"inputs": inputs, "label": label, "available": torch.tensor(available)}


def spy(model):
    """Record every (condition, target) pair each discriminator's forward receives."""
    calls = {name: [] for name in model.discriminators}
    for name, discriminator in model.discriminators.items():
        original = discriminator.forward

        def forward(condition, target, _name=name, _original=original):
            calls[_name].append((condition.detach().clone(), target.detach().clone()))
            return _original(condition, target)

        discriminator.forward = forward
    return calls


@pytest.mark.parametrize("update", ["joint", "alternating"])
def test_target_conditions_the_discriminator_on_the_real_withheld_modality(update):
    """The authors' calls: D(real, real), D(real, generated.detach()) for D's loss and D(real, generated) for
    the generator's, on the rows whose modality was withheld."""
    model = build(TWO, "target", update)
    data = batch(TWO, [[True, False], [False, True], [True, True], [True, False]])
    assert model.discriminators["dsm"].body[0][0].in_channels == 2 * TWO["dsm"]
    assert model.discriminators["optical"].body[0][0].in_channels == 2 * TWO["optical"]
    calls = spy(model)
    model.training_loss(data, INFO)
    if update == "alternating":
        model.adversary_loss(data, INFO)
    completed = model.complete(data["inputs"], data["available"])
    for index, name in enumerate(model.modality_names):
        rows = ~data["available"][:, index]
        real = data["inputs"][name][rows]
        generated = completed[name][rows].detach()
        received = calls[name]
        # joint: D real, D fake, G fake; alternating: G fake in training_loss, D real + D fake in adversary_loss
        assert len(received) == 3
        for condition, _ in received:
            assert torch.equal(condition, real)
        targets = [target for _, target in received]
        assert sum(torch.equal(target, real) for target in targets) == 1
        assert sum(torch.allclose(target, generated) for target in targets) == 2


def test_others_conditions_the_discriminator_on_the_generator_input():
    """Version 1: the condition is the generator's input (other modalities zeroed where missing + flags)."""
    model = build(THREE, "others")
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, False], [True, True, True]])
    data = batch(THREE, available.tolist())
    assert model.discriminators["dsm"].body[0][0].in_channels == model.condition_channels("dsm") + THREE["dsm"]
    calls = spy(model)
    model.training_loss(data, INFO)
    completed = model.complete(data["inputs"], data["available"])
    for index, name in enumerate(model.modality_names):
        rows = ~available[:, index]
        expected = model._generator_input(index, data["inputs"], available)[rows]
        received = calls[name]
        assert len(received) == 3  # joint: D real, D fake, G fake
        for condition, _ in received:
            assert torch.equal(condition, expected)
        targets = [target for _, target in received]
        assert sum(torch.equal(target, data["inputs"][name][rows]) for target in targets) == 1
        assert sum(torch.allclose(target, completed[name][rows].detach()) for target in targets) == 2


def test_target_is_the_default_and_the_rule_is_checked():
    spec = METHODS.get("gemmnet")
    assert load_defaults(spec.defaults, "gemmnet")["discriminator_condition"] == "target"
    assert int(spec.version) >= 2  # version 2 introduced the default; 3 changed the network (docs/methods/gemmnet.md)
    with pytest.raises(ConfigError, match="method.discriminator_condition='both': use target or others"):
        build(TWO, "both")
