"""The plugin's own checks; run `pytest` in this folder after `pip install -e .`."""

from __future__ import annotations

import sys

import pytest
import torch
from mmbench.config import load_defaults
from mmbench.errors import ConfigError
from mmbench.registry import METHODS, PROTOCOLS

from mmbench_plugin_template.model import TemplateFusion
from mmbench_plugin_template.protocol import DropFirst
from mmbench_plugin_template.specs import METHOD, PROTOCOL

MODALITIES = {"optical": 3, "dsm": 1, "sar": 1}


def make_model() -> TemplateFusion:
    torch.manual_seed(0)
    return TemplateFusion(MODALITIES, num_classes=6, config=load_defaults(METHOD.defaults, "test")).eval()


def test_the_entry_points_resolve_to_the_specs():
    assert METHODS.get("template-fusion") is METHOD
    assert PROTOCOLS.get("template-drop-first") is PROTOCOL


def test_the_spec_module_does_not_import_torch():
    import subprocess

    code = "import sys, mmbench_plugin_template.specs; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_inputs_never_leak_and_the_split_interface_matches_forward():
    model = make_model()
    inputs = {name: torch.randn(4, channels, 32, 32) for name, channels in MODALITIES.items()}
    available = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        zeros = model(
            {n: torch.where(available[:, i].view(-1, 1, 1, 1), x, 0.0) for i, (n, x) in enumerate(inputs.items())},
            available,
        )
        nans = model(
            {
                n: torch.where(available[:, i].view(-1, 1, 1, 1), x, torch.nan)
                for i, (n, x) in enumerate(inputs.items())
            },
            available,
        )
        split = model.decode({n: model.encode(n, x) for n, x in inputs.items()}, available)
    assert zeros.shape == (4, 6, 32, 32) and torch.isfinite(nans).all()
    torch.testing.assert_close(nans, zeros)
    torch.testing.assert_close(split, zeros)


def test_the_protocol_drops_the_first_modality_or_the_one_named():
    defaults = load_defaults(PROTOCOL.defaults, "test")
    names = list(MODALITIES)
    full, dropped = DropFirst(defaults).scenarios(names, {})
    assert (full.available, full.missing) == (("optical", "dsm", "sar"), 0)
    assert (dropped.name, dropped.available, dropped.missing) == ("dsm+sar", ("dsm", "sar"), 1)
    assert DropFirst({**defaults, "drop": "sar"}).scenarios(names, {})[1].name == "optical+dsm"
    with pytest.raises(ConfigError, match="not among"):
        DropFirst({**defaults, "drop": "lidar"}).scenarios(names, {})


def test_records_say_the_method_trains_for_missing_modalities():
    """Boards flag methods trained on complete data only; the template's sampler key is `modality_dropout`."""
    defaults = load_defaults(METHOD.defaults, METHOD.name)
    assert TemplateFusion.trains_for_missing(defaults) is True
    assert TemplateFusion.trains_for_missing({**defaults, "modality_dropout": "all"}) is False
