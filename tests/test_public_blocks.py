"""The public building blocks (methods/blocks/__init__.py `__all__`, docs/plugins.md "Building blocks") import
from `mmbench.methods.blocks`, are the objects their modules define, and say what they are."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mmbench.methods.blocks as blocks

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_the_public_names_cover_the_backbones_and_the_shared_heads():
    assert {"resnet", "ResNet", "load_pretrained", "load_pretrained_resnet", "pretrained_fits", "FPNDecoder"} <= set(
        blocks.__all__
    )


@pytest.mark.parametrize("name", blocks.__all__)
def test_a_public_name_imports_and_has_a_docstring(name):
    value = getattr(blocks, name)
    assert value is getattr(importlib.import_module(f"mmbench.methods.blocks.{blocks._HOMES[name]}"), name)
    if callable(value):
        assert inspect.getdoc(value), f"mmbench.methods.blocks.{name} has no docstring"


def test_the_submodules_keep_their_names():
    """A re-exported name must not shadow a submodule (`from mmbench.methods.blocks import attention` is a module)."""
    from mmbench.methods.blocks import attention, backbones, common

    assert all(inspect.ismodule(module) for module in (attention, backbones, common))
    assert not set(blocks.__all__) & {"attention", "backbones", "common", "imputation", "mmformer", "pix2pix"}


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'resnet101'"):
        blocks.resnet101  # noqa: B018


def test_importing_the_package_imports_no_block():
    code = "import sys, mmbench.methods.blocks; assert 'mmbench.methods.blocks.backbones' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_guide_documents_every_public_name():
    section = re.split(r"^## (?:\d+\. )?Building blocks", DOC.read_text(), flags=re.M)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", section))
    assert set(blocks.__all__) <= documented, sorted(set(blocks.__all__) - documented)


PRETRAINED_DOC = DOC.parent / "pretrained.md"


def pretrained_table() -> dict[str, str]:
    """docs/pretrained.md, "What each built-in method loads today": method -> its `pretrained` key column."""
    section = PRETRAINED_DOC.read_text().split("## What each built-in method loads today", 1)[1]
    rows = re.findall(r"^\| (`[^|]+) \| (yes|no) \|", section, flags=re.M)
    return {name: answer for methods, answer in rows for name in re.findall(r"`([\w.-]+)`", methods)}


def test_the_pretrained_guide_says_for_every_builtin_method_whether_it_takes_pretrained():
    from mmbench.config import load_defaults
    from mmbench.registry import METHODS

    table = pretrained_table()
    builtin = [
        r for r in METHODS.registrations() if r.spec and (r.sources[0].distribution or "").startswith("mmbench ")
    ]
    assert len(builtin) >= 12
    for registration in builtin:
        spec = registration.spec
        assert spec.name in table, f"docs/pretrained.md does not say whether {spec.name} takes `pretrained`"
        has_key = "pretrained" in load_defaults(spec.defaults, spec.name)
        assert table[spec.name] == ("yes" if has_key else "no"), f"docs/pretrained.md is wrong about {spec.name}"
