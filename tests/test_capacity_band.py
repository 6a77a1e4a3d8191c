"""Capacity-matched CPU defaults: every registered method's default config keeps the capacity policy its spec
declares (`MethodSpec.capacity`, mmbench/plugins.py), on the synthetic benchmark's modalities and classes.

- "matched": the parameters used at inference on the full set (`parameter_budget`) lie within CAPACITY_BAND
  times the reference method's (STARS);
- "reference-backbone": the method runs the reference's own ResNet encoder family at the reference's default
  depths and widths: its backbone keys equal the reference's, and every ResNet it builds has the layer shapes
  of one of the reference's ResNets (so a method that stops building them, or builds them wider, fails).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import torch

from mmbench.config import resolve_run_config
from mmbench.method import build_method, parameter_budget
from mmbench.methods.blocks.backbones import ResNet
from mmbench.plugins import CAPACITY_BAND, CAPACITY_POLICIES, CAPACITY_REFERENCE
from mmbench.registry import DATASETS, METHODS, PROTOCOLS

MODALITIES = {"optical": 3, "dsm": 1, "sar": 1}  # the synthetic benchmark's
CLASSES = 6
FULL_SET = [{"name": "full set", "available": list(MODALITIES)}]
# The keys that size the reference's encoder/decoder family; a reference-backbone method must carry the
# shared ones (BACKBONE_KEYS) and, where it has them, the specific encoders' too, at the reference's values.
BACKBONE_KEYS = ("backbone", "width", "fpn_channels", "decoder_channels")
OPTIONAL_BACKBONE_KEYS = ("specific_backbone", "specific_width")


def default_config(name: str) -> dict[str, Any]:
    """The method section `mmbench run NAME --protocol last1 --dataset synthetic` resolves to."""
    specs = {"method": METHODS.get(name), "protocol": PROTOCOLS.get("last1"), "dataset": DATASETS.get("synthetic")}
    return resolve_run_config(specs).data["method"]


def build(name: str, config: dict[str, Any]):
    torch.manual_seed(0)
    return build_method(METHODS.get(name), MODALITIES, CLASSES, config)


def used_full_set(model) -> int:
    return parameter_budget(model, MODALITIES, FULL_SET)["used_at_inference"]["full set"]


def resnet_bodies(model: torch.nn.Module) -> list[tuple[tuple[str, tuple[int, ...]], ...]]:
    """Each ResNet's layer1..layer4 parameter shapes (the stem depends on the input channels)."""
    return [
        tuple((key, tuple(p.shape)) for key, p in module.named_parameters() if key.startswith("layer"))
        for module in model.modules()
        if isinstance(module, ResNet)
    ]


@cache
def reference() -> dict[str, Any]:
    config = default_config(CAPACITY_REFERENCE)
    model = build(CAPACITY_REFERENCE, config)
    return {"config": config, "used": used_full_set(model), "bodies": set(resnet_bodies(model))}


def band_problem(name: str, model) -> str | None:
    used, ref = used_full_set(model), reference()
    low, high = CAPACITY_BAND
    ratio = used / ref["used"]
    if low <= ratio <= high:
        return None
    return (
        f"{name}: {used / 1e6:.2f} M parameters used at inference on the full set, {ratio:.2f} x "
        f"the reference ({CAPACITY_REFERENCE}: {ref['used'] / 1e6:.2f} M; band {low}-{high})"
    )


def backbone_problems(name: str, config: dict[str, Any], model) -> list[str]:
    ref = reference()
    problems = [
        f"{key}={config.get(key)!r}, {CAPACITY_REFERENCE}'s is {ref['config'][key]!r}"
        for key in BACKBONE_KEYS + tuple(k for k in OPTIONAL_BACKBONE_KEYS if k in config)
        if config.get(key) != ref["config"][key]
    ]
    bodies = resnet_bodies(model)
    if not bodies:
        problems.append(f"{name} builds no ResNet")
    elif not set(bodies) <= ref["bodies"]:
        problems.append(f"{name} builds a ResNet of another depth or width than {CAPACITY_REFERENCE}'s")
    return problems


@pytest.mark.parametrize("name", METHODS.names())
def test_default_config_keeps_the_declared_capacity_policy(name):
    spec = METHODS.get(name)
    assert spec.capacity in CAPACITY_POLICIES
    config = default_config(name)
    model = build(name, config)
    if spec.capacity == "matched":
        problem = band_problem(name, model)
        assert problem is None, problem
    else:
        assert name != CAPACITY_REFERENCE
        assert backbone_problems(name, config, model) == []


def test_the_reference_is_matched_and_the_band_brackets_it():
    assert METHODS.get(CAPACITY_REFERENCE).capacity == "matched"
    low, high = CAPACITY_BAND
    assert 0 < low < 1 < high


def test_both_checks_can_fail():
    """A wider ResNet, other widths in the config or a method below the band are caught."""
    config = {**default_config("early-fusion"), "width": 2 * reference()["config"]["width"]}
    problems = backbone_problems("early-fusion", config, build("early-fusion", config))
    assert len(problems) == 2 and "width=" in problems[0] and "another depth or width" in problems[1]
    # early-fusion's defaults are STARS' backbone at well under its count (one encoder, no specific ones).
    config = default_config("early-fusion")
    model = build("early-fusion", config)
    assert backbone_problems("early-fusion", config, model) == []
    assert "band" in band_problem("early-fusion", model)
