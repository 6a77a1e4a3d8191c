"""The files of a new plugin package, and writing them all or nothing.

A method and a protocol start from the plugin template's code (examples/plugin-template/, via `template.json`)
with the names replaced; a dataset starts from the dataset of docs/plugins.md (section 9), which the template
lacks. Every kind gets a light spec module, a pyproject.toml with its entry point and package data, a README
and a test that runs the contract checks of `mmbench.testing` when this mmbench has them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mmbench.errors import UserError
from mmbench.scaffold.names import PluginNames
from mmbench.scaffold.snapshot import TEMPLATE_PACKAGE, load_snapshot

KINDS = ("method", "protocol", "dataset")
_GROUPS = {"method": "mmbench.methods", "protocol": "mmbench.protocols", "dataset": "mmbench.datasets"}
_SPEC_CLASSES = {"method": "MethodSpec", "protocol": "ProtocolSpec", "dataset": "DatasetSpec"}
_MODULES = {"method": "model", "protocol": "protocol", "dataset": "dataset"}
_CHECKS = {"method": "check_method", "protocol": "check_protocol", "dataset": "check_dataset"}
# What each kind's code does, for the spec's one-line summary and the README.
_SUMMARIES = {
    "method": "per-modality CNN encoders, masked mean fusion of the available modalities",
    "protocol": "all modalities, then all but one (default: the first); gap between the two",
    "dataset": "seeded random 64-px tiles (optical, DSM; three classes), generated on first use",
}


def render(names: PluginNames) -> dict[str, str]:
    """Relative path -> text of every file of the new package."""
    if names.kind not in KINDS:
        raise UserError(f"unknown plugin kind {names.kind!r}; use one of {', '.join(KINDS)}")
    package = names.package
    module = _MODULES[names.kind]
    return {
        "pyproject.toml": _pyproject(names),
        "README.md": _readme(names),
        f"{package}/__init__.py": f'"""The mmbench {names.kind} `{names.name}`."""\n\n__version__ = "0.1.0"\n',
        f"{package}/specs.py": _specs(names),
        f"{package}/{module}.py": _IMPLEMENTATIONS[names.kind](names),
        f"{package}/defaults.yaml": _DEFAULTS[names.kind](names),
        f"tests/test_{package}.py": _test(names),
    }


def write_package(names: PluginNames, folder: Path) -> list[Path]:
    """Write the package into `folder`, which must not exist: built in a temporary sibling, then renamed, so an
    interrupted write leaves no half package. Returns the files written."""
    folder = Path(folder)
    if folder.exists() or folder.is_symlink():
        raise UserError(f"{folder} already exists; choose another --dir or remove it (mmbench new never overwrites)")
    files = render(names)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())
        os.rename(staging, folder)  # fails, rather than merging, if the folder appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [folder / relative for relative in files]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _from_template(path: str, names: PluginNames, replacements: dict[str, str]) -> str:
    text = load_snapshot()[f"{TEMPLATE_PACKAGE}/{path}"]
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def _method(names: PluginNames) -> str:
    return _from_template("model.py", names, {"TemplateFusion": names.class_name, "template-fusion": names.name})


def _method_defaults(names: PluginNames) -> str:
    return _from_template("defaults.yaml", names, {"template-fusion": names.name})


def _protocol(names: PluginNames) -> str:
    return _from_template("protocol.py", names, {"DropFirst": names.class_name, "template-drop-first": names.name})


def _protocol_defaults(names: PluginNames) -> str:
    return _from_template("drop-first.yaml", names, {"template-drop-first": names.name})


def _dataset(names: PluginNames) -> str:
    return f'''"""`{names.name}`: a dataset plugin. `prepare(settings)` returns the path of a tile store for the
resolved `dataset:` settings, writing it once (atomically: TileStoreWriter renames a complete file into place).

Replace the random tiles with your data, keep the store format (mmbench's docs/data-format.md), and bump the
spec's `version` whenever the store a setting produces could change: run records carry it, with the store's
sha256 (`dataset.fingerprint`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mmbench.data.store_format import ModalitySpec
from mmbench.data.store_writer import TileStoreWriter

CLASSES = ("ground", "building", "tree")
TILE = 64


class {names.class_name}:
    """`tiles` seeded random tiles, split 4:1:1 into train, val and test."""

    @staticmethod
    def prepare(settings: dict) -> Path:
        root = Path(settings["root"]).expanduser()
        path = root / f"{names.name}-{{settings['tiles']}}-seed{{settings['seed']}}.h5"
        if path.exists():
            return path
        rng = np.random.default_rng(settings["seed"])
        modalities = [
            ModalitySpec("optical", bands=("R", "G", "B"), dtype="uint8", units="DN"),
            ModalitySpec("dsm", bands=("height",), dtype="float32", units="m"),
        ]
        with TileStoreWriter(
            path, name="{names.name}", modalities=modalities, label_variants=("full",), tile_size=TILE, classes=CLASSES
        ) as writer:
            for tile in range(settings["tiles"]):
                label = rng.integers(0, len(CLASSES), (TILE, TILE), dtype=np.uint8)
                optical = (label * 80 + rng.integers(0, 40, (3, TILE, TILE))).astype(np.uint8)
                dsm = (label * 5.0 + rng.normal(0, 1, (1, TILE, TILE))).astype(np.float32)
                tile_id = f"t{{tile}}"
                writer.add_tile(tile_id, {{"optical": optical, "dsm": dsm}}, {{"full": label}}, source=tile_id)
            n = settings["tiles"]
            train, val = n * 4 // 6, n * 5 // 6
            parts = {{"train": range(train), "val": range(train, val), "test": range(val, n)}}
            writer.set_split("default", {{part: list(indices) for part, indices in parts.items()}}, default=True)
        return path
'''


def _dataset_defaults(names: PluginNames) -> str:
    return f"""# {names.name}: every setting `prepare` reads, with its default (`--set dataset.tiles=12`).
tiles: !check 6 >= 6     # tiles in the store
seed: !check 0 >= 0      # the data's seed (run.seed does not change it)
root: data/{names.name}  # folder of the generated stores (relative: to where mmbench runs)
"""


_IMPLEMENTATIONS: dict[str, Callable[[PluginNames], str]] = {
    "method": _method,
    "protocol": _protocol,
    "dataset": _dataset,
}
_DEFAULTS: dict[str, Callable[[PluginNames], str]] = {
    "method": _method_defaults,
    "protocol": _protocol_defaults,
    "dataset": _dataset_defaults,
}


def _specs(names: PluginNames) -> str:
    spec_class = _SPEC_CLASSES[names.kind]
    target = f"{{_PACKAGE}}.{_MODULES[names.kind]}:{names.class_name}"
    fields = {
        "method": """    paper=None,  # e.g. "https://arxiv.org/abs/..."
    modalities=(),  # modalities it accepts; () = any the dataset has
    required_modalities=(),  # modalities it cannot run without
    min_modalities=1,
    needs_all_modalities_for_training=False,
    capacity="matched",  # or "reference-backbone" (docs/plugins.md of mmbench)
""",
        "protocol": "",
        "dataset": """    modalities=("optical", "dsm"),
    classes=("ground", "building", "tree"),
""",
    }[names.kind]
    return f'''"""Spec of the {names.kind} `{names.name}`, registered through the `{_GROUPS[names.kind]}` entry point
(pyproject.toml).

Keep this module light: no torch, no model code. `mmbench list` imports it; the spec's `target` is imported
only when a run needs it, so a broken implementation fails only the runs that use it.
"""

from mmbench.plugins import {spec_class}

_PACKAGE = "{names.package}"

{names.kind.upper()} = {spec_class}(
    name="{names.name}",  # = the entry-point name; lowercase, digits, '-', '_', '.'
    summary="{names.class_name}: {_SUMMARIES[names.kind]}.",
    version="{"0.1.0" if names.kind == "method" else "1"}",  # bump whenever the {names.kind}'s numbers could change
    target=f"{target}",
{fields}    defaults=f"{{_PACKAGE}}:defaults.yaml",  # every config key, with its default
)
'''


def _pyproject(names: PluginNames) -> str:
    return f"""# The mmbench {names.kind} `{names.name}`, written by `mmbench new {names.kind} {names.name}`.

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{names.distribution}"
version = "0.1.0"
description = "The mmbench {names.kind} {names.name}"
readme = "README.md"
requires-python = ">=3.10"
# mmbench brings torch; install mmbench first, then this package.
dependencies = ["mmbench>=0.1"]

# The entry point names the *spec* in a light module (no torch import); its name must equal the spec's `name`.
[project.entry-points."{_GROUPS[names.kind]}"]
{names.name} = "{names.package}.specs:{names.kind.upper()}"

[tool.setuptools]
packages = ["{names.package}"]

# The defaults YAML is the plugin's config schema: it must be installed with the code.
[tool.setuptools.package-data]
{names.package} = ["*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 120
target-version = "py310"
"""


def _readme(names: PluginNames) -> str:
    try_it = {
        "method": f"mmbench run {names.name} --protocol last1 --smoke      # the whole pipeline in seconds",
        "protocol": f"mmbench run early-fusion --protocol {names.name} --smoke",
        "dataset": f"mmbench run early-fusion --protocol last1 --dataset {names.name} --smoke",
    }[names.kind]
    return f"""# {names.name}

The mmbench {names.kind} `{names.name}` ({_SUMMARIES[names.kind]}), as `mmbench new` wrote it: change
`{names.package}/{_MODULES[names.kind]}.py` and keep `{names.package}/defaults.yaml` listing every setting it reads.
mmbench's docs/plugins.md says what a {names.kind} must do.

```bash
pip install -e .        # in this folder, in the environment where mmbench is installed
mmbench list {names.kind}s    # {names.name}, provided by {names.distribution} 0.1.0
{try_it}
pytest                  # the plugin's own tests
```
"""


def _test(names: PluginNames) -> str:
    module = _MODULES[names.kind]
    registry = {"method": "METHODS", "protocol": "PROTOCOLS", "dataset": "DATASETS"}[names.kind]
    return f'''"""The plugin's own checks; run `pytest` in this folder after `pip install -e .`."""

from __future__ import annotations

import pytest
from mmbench.registry import {registry}

from {names.package}.{module} import {names.class_name}
from {names.package}.specs import {names.kind.upper()}

try:  # mmbench's contract checks (docs/checking.md), in mmbench versions that have them
    from mmbench.testing import {_CHECKS[names.kind]}
except ImportError:
    {_CHECKS[names.kind]} = None


def test_the_entry_point_resolves_to_the_spec():
    assert {registry}.get("{names.name}") is {names.kind.upper()}
    assert {names.kind.upper()}.load() is {names.class_name}


@pytest.mark.skipif({_CHECKS[names.kind]} is None, reason="this mmbench has no mmbench.testing")
def test_the_plugin_keeps_mmbenchs_contract():
    {_CHECKS[names.kind]}("{names.name}")
'''
