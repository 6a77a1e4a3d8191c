"""The plugin folders install as mmbench subpackages (never as top-level `datasets`/`kernels`), from an
editable install and from a built, installed copy alike."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from module_files import load_module

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_FOLDERS = {
    "methods": "mmbench.methods",
    "datasets": "mmbench.datasets",
    "kernels": "mmbench.kernels",
    "protocols": "mmbench.protocols",
}
PROBE = (
    "import importlib, importlib.util, json, sys\n"
    "names = ['mmbench', 'mmbench.methods', 'mmbench.datasets', 'mmbench.kernels', 'mmbench.protocols',\n"
    "         'mmbench.cli.main', 'mmbench.registry']\n"
    "files = {n: importlib.import_module(n).__file__ for n in names}\n"
    "top = {n: getattr(importlib.util.find_spec(n), 'origin', None)\n"
    "       for n in ['methods', 'datasets', 'kernels', 'protocols']}\n"
    "from mmbench.records import record_schema\n"
    "from mmbench.config import load_defaults, RUN_DEFAULTS_RESOURCE\n"
    "print(json.dumps({'files': files, 'top': top, 'schema': record_schema()['title'],\n"
    "                  'run_defaults': load_defaults(RUN_DEFAULTS_RESOURCE, 'probe')}))\n"
)


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _probe(cwd: Path, env: dict | None = None) -> dict:
    import json

    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _not_sources(folder: str, names: list[str]) -> set[str]:
    """What a clean copy of the repository leaves out: VCS data, environments, build and run outputs at the root
    (only there: `mmbench/runs` is a package), caches anywhere."""
    root_only = {".git", "build", "dist", "runs", "bench"} if Path(folder) == REPO_ROOT else set()
    caches = {n for n in names if n == "__pycache__" or n.startswith(".venv") or n.endswith(".egg-info")}
    return caches | (root_only & set(names))


def pip_install_into(target: Path, source: Path) -> tuple[Path, dict]:
    """Build `source` and install it (no deps) into `target`; the env makes a subprocess import it.

    pip builds in the source tree, and setuptools never empties its `build/` folder: a file deleted or moved
    since an earlier build would still be installed. The repository is therefore built from a clean copy."""
    if source.resolve() == REPO_ROOT:
        source = target.parent / "source"
        shutil.copytree(REPO_ROOT, source, ignore=_not_sources)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    return target, {**os.environ, "PYTHONPATH": str(target)}


def setup_script():
    """setup.py as a module (its `setup()` call runs only as a script)."""
    return load_module("mmbench_setup_script", REPO_ROOT / "setup.py")


def repository_packages() -> set[str]:
    """Every folder with an `__init__.py` under a mapped folder, under its installed name."""
    found = set()
    for folder, package in [("mmbench", "mmbench"), *PLUGIN_FOLDERS.items()]:
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    return found


def test_every_package_folder_is_found_with_its_mapping():
    setuptools_config = _pyproject()["tool"]["setuptools"]
    assert "packages" not in setuptools_config, "packages are found by setup.py; do not list them in pyproject.toml"
    mapping = setuptools_config["package-dir"]
    for folder, package in PLUGIN_FOLDERS.items():
        assert mapping[package] == folder
    assert set(setup_script().mapped_packages(mapping)) == repository_packages()


def test_a_new_plugin_folder_is_packaged_without_being_listed(tmp_path):
    for folder in ("core", "core/sub", "plugins", "plugins/new_method", "plugins/new_method/parts"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "plugins" / "data_only").mkdir()  # no __init__.py: not a package
    mapping = {"top": "core", "top.plugins": "plugins"}
    assert setup_script().mapped_packages(mapping, str(tmp_path)) == [
        "top",
        "top.plugins",
        "top.plugins.new_method",
        "top.plugins.new_method.parts",
        "top.sub",
    ]


def test_the_version_has_one_source():
    version = ast.literal_eval((REPO_ROOT / "mmbench/_version.py").read_text().split("=", 1)[1].strip())
    from mmbench import __version__

    assert __version__ == version
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mmbench._version.__version__"}


def test_subpackages_import_from_this_environment_without_top_level_names(tmp_path):
    probe = _probe(tmp_path)
    editable = Path(probe["files"]["mmbench"]).parent == REPO_ROOT / "mmbench"
    for folder, package in PLUGIN_FOLDERS.items():
        if editable:  # `pip install -e .` must map each subpackage onto its root folder
            assert Path(probe["files"][package]) == REPO_ROOT / folder / "__init__.py"
        else:
            assert probe["files"][package].endswith("__init__.py")
    for name, origin in probe["top"].items():
        assert origin is None or not origin.startswith(str(REPO_ROOT)), f"top-level '{name}' resolves into mmbench"


@pytest.mark.slow
def test_a_built_and_installed_copy_maps_the_plugin_folders(tmp_path):
    target, env = pip_install_into(tmp_path / "site", REPO_ROOT)
    probe = _probe(tmp_path, env)
    for folder, package in PLUGIN_FOLDERS.items():
        expected = target / "mmbench" / folder / "__init__.py"
        assert Path(probe["files"][package]) == expected, f"{package} was not installed from the copy"
    assert Path(probe["files"]["mmbench"]).parent == target / "mmbench"
    assert probe["schema"].startswith("mmbench run record")
    assert probe["run_defaults"]["seed"] == 0
    for name in ("methods", "datasets", "kernels", "protocols"):
        assert not (target / name).exists(), f"'{name}' must not install as a top-level package"
    for folder, package in [("mmbench", "mmbench"), *PLUGIN_FOLDERS.items()]:  # every module and YAML file
        installed = target.joinpath(*package.split("."))
        for source in (REPO_ROOT / folder).rglob("*"):
            if source.suffix in (".py", ".yaml", ".json") and "__pycache__" not in source.parts:
                copy = installed / source.relative_to(REPO_ROOT / folder)
                assert copy.is_file(), f"{source.relative_to(REPO_ROOT)} was not installed"
    version = subprocess.run(
        [sys.executable, "-m", "mmbench", "--version"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert version.returncode == 0 and version.stdout.startswith("mmbench ")


THIRD_PARTY_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "mmbench-tiny-plugin"
version = "0.3.0"

[project.entry-points."mmbench.methods"]
tiny = "mmb_tiny_plugin:METHOD"

[project.entry-points."mmbench.protocols"]
tiny-protocol = "mmb_tiny_plugin:PROTOCOL"

[project.entry-points."mmbench.datasets"]
tiny-data = "mmb_tiny_plugin:DATASET"

[tool.setuptools]
packages = ["mmb_tiny_plugin"]

[tool.setuptools.package-data]
mmb_tiny_plugin = ["defaults.yaml"]
"""


@pytest.mark.slow
def test_a_pip_installed_third_party_plugin_is_listed_and_runs(tmp_path):
    """The whole third-party path: a real package, built and installed by pip, found via entry points."""
    import json

    from plugin_factory import DUMMY_DEFAULTS, DUMMY_IMPL, DUMMY_SPECS

    source = tmp_path / "src"
    package = source / "mmb_tiny_plugin"
    package.mkdir(parents=True)
    (source / "pyproject.toml").write_text(THIRD_PARTY_PYPROJECT)
    specs = DUMMY_SPECS.format(package="mmb_tiny_plugin")
    specs = specs.replace('name="dummy"', 'name="tiny"').replace('name="dummy-protocol"', 'name="tiny-protocol"')
    (package / "__init__.py").write_text(specs.replace('name="toy"', 'name="tiny-data"'))
    (package / "defaults.yaml").write_text(DUMMY_DEFAULTS)
    (package / "impl.py").write_text(DUMMY_IMPL)
    _, env = pip_install_into(tmp_path / "site", source)

    listing = subprocess.run(
        [sys.executable, "-m", "mmbench", "list", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert listing.returncode == 0, listing.stderr
    methods = {entry["name"]: entry for entry in json.loads(listing.stdout)["methods"]}
    assert methods["tiny"]["status"] == "ok"
    assert methods["tiny"]["sources"] == ["tiny = 'mmb_tiny_plugin:METHOD' from mmbench-tiny-plugin 0.3.0"]

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmbench",
            "run",
            "tiny",
            "-p",
            "tiny-protocol",
            "-d",
            "tiny-data",
            "--set",
            "method.layers=5",
            "--out",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    (record_file,) = (tmp_path / "runs" / "tiny-data" / "tiny-protocol" / "tiny").glob("*/result.json")
    from mmbench.records import read_record

    record = read_record(record_file)
    assert record["method"]["name"] == "tiny" and record["config"]["method"]["layers"] == 5
