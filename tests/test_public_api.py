"""Every name docs/plugins.md promises to plugin authors is importable at the documented path.

The table is read from the documentation itself, so the promise and the test cannot drift apart.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def documented_names() -> list[tuple[str, str]]:
    section = DOC.read_text().split("## 6. The public API", 1)[1]
    rows = re.findall(r"^\| `(mmbench[\w.]*)` \| (.+?) \|", section, flags=re.MULTILINE)
    return [(module, name) for module, names in rows for name in re.findall(r"`(\w+)`", names)]


def test_the_documentation_lists_the_public_api():
    modules = {module for module, _ in documented_names()}
    assert {"mmbench.plugins", "mmbench.method", "mmbench.protocol", "mmbench.sampling", "mmbench.errors"} <= modules
    assert len(documented_names()) >= 30


@pytest.mark.parametrize(("module", "name"), documented_names())
def test_a_documented_name_is_importable_where_the_documentation_says(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is documented as public but missing"


def test_the_old_pipeline_path_gives_the_same_objects():
    import mmbench.context
    import mmbench.pipeline

    assert mmbench.pipeline.RunContext is mmbench.context.RunContext
    assert mmbench.pipeline.RunOutcome is mmbench.context.RunOutcome
