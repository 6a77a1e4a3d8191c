"""Spec validation: malformed metadata is caught when the spec is built, with the field named."""

from __future__ import annotations

import pytest

from mmbench.errors import PluginError
from mmbench.plugins import DatasetSpec, MethodSpec, ProtocolSpec


def spec(**changes):
    fields = {"name": "m", "summary": "one line", "version": "1.0", "target": "pkg.mod:Obj"}
    fields.update(changes)
    return MethodSpec(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Has Space"}, "name 'Has Space' is invalid"),
        ({"name": ""}, "name '' is invalid"),
        ({"summary": ""}, "'summary' must be a non-empty string"),
        ({"summary": "two\nlines"}, "'summary' must be one line"),
        ({"version": None}, "'version' must be a non-empty string"),
        ({"target": "pkg.mod.Obj"}, "must look like 'package.module:attribute'"),
        ({"defaults": 3}, "'defaults' must be"),
        ({"modalities": "optical"}, "'modalities' must be a tuple"),
        ({"min_modalities": 0}, "'min_modalities' must be an integer >= 1"),
        ({"required_modalities": "sar"}, "'required_modalities' must be a tuple"),
        ({"modalities": ("optical",), "required_modalities": ("sar",)}, r"required modalities \['sar'\] are not"),
        ({"capacity": "wide"}, "capacity 'wide' must be one of matched, reference-backbone"),
    ],
)
def test_invalid_fields_are_rejected(changes, message):
    with pytest.raises(PluginError, match=message):
        spec(**changes)


def test_metadata_describes_the_plugin():
    method = spec(modalities=["optical", "sar"], required_modalities=["sar"], paper="https://arxiv.org/abs/2601.17342")
    assert method.modalities == ("optical", "sar")
    assert method.describe_modalities() == "optical, sar (required)"
    assert spec().describe_modalities() == "any"
    assert method.metadata() == {
        "name": "m",
        "summary": "one line",
        "version": "1.0",
        "target": "pkg.mod:Obj",
        "paper": "https://arxiv.org/abs/2601.17342",
        "modalities": ["optical", "sar"],
        "required_modalities": ["sar"],
        "min_modalities": 1,
        "needs_all_modalities_for_training": False,
        "capacity": "matched",  # the default: an outside plugin need not declare it
    }
    assert spec(capacity="reference-backbone").metadata()["capacity"] == "reference-backbone"
    assert ProtocolSpec(name="p", summary="s", version="2", target="a:b").kind == "protocol"
    assert DatasetSpec(name="d", summary="s", version="1", target="a:b", classes=["x"]).metadata()["classes"] == ["x"]


def test_load_resolves_dotted_attributes():
    assert spec(target="os.path:join").load() is __import__("os").path.join
    with pytest.raises(PluginError, match="AttributeError"):
        spec(target="os.path:no_such_thing").load()
