"""The third-party path end to end, with the plugin template of examples/plugin-template: pip builds and
installs it (no network, no build isolation), `mmbench list` shows its method and protocol with their
distribution, and `mmbench run` trains and evaluates its method under a built-in protocol and its own."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.records import read_record
from mmbench.registry import refresh_all

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "examples" / "plugin-template"
PACKAGE = "mmbench_plugin_template"
DISTRIBUTION = "mmbench-plugin-template 0.1.0"
METHOD, PROTOCOL = "template-fusion", "template-drop-first"


@pytest.fixture(scope="module")
def template_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template, built and installed by pip into a folder of its own, as a user's `pip install` does.

    pip builds in the source tree (build/, *.egg-info), so it builds a copy: the repository stays clean.
    `--no-build-isolation` uses this environment's setuptools (no download), `--no-deps` skips mmbench.
    """
    root = tmp_path_factory.mktemp("plugin-template")
    source = root / "src"
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"))
    site = root / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


@pytest.fixture
def installed(template_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed template visible to this process (sys.path) and to subprocesses (PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(template_site))
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(template_site) + (os.pathsep + existing if existing else ""))
    refresh_all()
    yield template_site
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("template-store") / "s.h5", SyntheticConfig(tiles=6, size=96))


def run_smoke(capsys: pytest.CaptureFixture, store: Path, out: Path, protocol: str, *extra: str) -> dict:
    code = main(["run", METHOD, "--protocol", protocol, "--dataset", str(store), "--smoke", "--out", str(out), *extra])
    assert code == 0, capsys.readouterr().err
    (path,) = out.glob(f"{store.stem}/{protocol}/{METHOD}/*/result.json")
    return read_record(path)


def assert_finite_metrics(record: dict) -> None:
    for scenario in record["scenarios"]:
        for key in ("miou", "mf1", "oa", "kappa"):
            value = scenario["metrics"][key]
            assert value is not None and math.isfinite(value), (scenario["name"], key, value)


def check_template_method(record: dict) -> None:
    assert record["smoke"] is True
    method = record["method"]
    assert (method["name"], method["version"]) == (METHOD, "0.1.0")
    assert method["target"] == f"{PACKAGE}.model:TemplateFusion"
    assert method["params"] > 0 and method["checkpoint"]["selected_step"] is not None
    assert record["config"]["method"]["train"]["iterations"] == 300  # the template's defaults.yaml, unchanged


def test_the_installed_copy_carries_its_yaml_files(installed):
    for name in ("defaults.yaml", "drop-first.yaml"):
        assert (installed / PACKAGE / name).is_file(), f"{name} is not package data"
    assert not (TEMPLATE / "build").exists(), "pip built inside examples/: the test must build a copy"


def test_mmbench_list_shows_both_plugins_with_their_distribution(installed, capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    methods = {entry["name"]: entry for entry in listing["methods"]}
    protocols = {entry["name"]: entry for entry in listing["protocols"]}
    assert methods[METHOD]["status"] == "ok"
    assert methods[METHOD]["sources"] == [f"{METHOD} = '{PACKAGE}.specs:METHOD' from {DISTRIBUTION}"]
    assert methods[METHOD]["spec"]["version"] == "0.1.0"
    assert protocols[PROTOCOL]["status"] == "ok"
    assert protocols[PROTOCOL]["sources"] == [f"{PROTOCOL} = '{PACKAGE}.specs:PROTOCOL' from {DISTRIBUTION}"]
    assert "stars" in methods and "last1" in protocols  # the built-ins are still there

    assert main(["list", "methods"]) == 0
    table = capsys.readouterr().out
    assert METHOD in table and "mmbench-plugin-template" in table


def test_a_fresh_process_finds_the_plugins_without_importing_torch(installed, tmp_path):
    """The console entry point as a user runs it (PYTHONPATH = the install folder); the spec module is light."""
    listing = subprocess.run(
        [sys.executable, "-m", "mmbench", "list", "--json"], capture_output=True, text=True, cwd=tmp_path
    )
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    sources = {entry["name"]: entry["sources"] for kind in ("methods", "protocols") for entry in data[kind]}
    assert sources[METHOD] == [f"{METHOD} = '{PACKAGE}.specs:METHOD' from {DISTRIBUTION}"]
    assert sources[PROTOCOL] == [f"{PROTOCOL} = '{PACKAGE}.specs:PROTOCOL' from {DISTRIBUTION}"]
    probe = f"import sys, {PACKAGE}.specs; assert 'torch' not in sys.modules, 'the spec module imports torch'"
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert light.returncode == 0, light.stderr


def test_the_templates_own_tests_pass_against_the_installed_copy(installed, tmp_path):
    """What a researcher runs after copying the template (`pytest` in its folder) keeps passing."""
    tests = installed.parent / "src" / "tests"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_missing_inputs_never_leak_into_the_templates_output(installed):
    import torch

    from mmbench.config import load_defaults
    from mmbench.method import build_method
    from mmbench.registry import METHODS

    spec = METHODS.get(METHOD)
    modalities = {"optical": 3, "dsm": 1, "sar": 1}
    torch.manual_seed(0)
    model = build_method(spec, modalities, 6, load_defaults(spec.defaults, METHOD)).eval()
    assert model.has_split_interface
    inputs = {name: torch.randn(3, channels, 24, 24) for name, channels in modalities.items()}
    available = torch.tensor([[1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)

    def filled(value: float) -> dict:
        return {
            name: torch.where(available[:, i].view(-1, 1, 1, 1), x, value) for i, (name, x) in enumerate(inputs.items())
        }

    with torch.no_grad():
        zeros, nans = model(filled(0.0), available), model(filled(float("nan")), available)
    assert torch.isfinite(nans).all()
    torch.testing.assert_close(nans, zeros)


def test_a_smoke_run_under_a_builtin_protocol_writes_a_complete_record(installed, capsys, tmp_path, store):
    record = run_smoke(capsys, store, tmp_path, "last1")
    check_template_method(record)
    assert (record["protocol"]["name"], record["protocol"]["version"]) == ("last1", "1")
    assert [s["name"] for s in record["scenarios"]] == ["optical only", "dsm only", "sar only"]
    assert_finite_metrics(record)
    assert set(record["aggregate"]["per_scenario_miou"]) == {"optical only", "dsm only", "sar only"}


def test_a_smoke_run_under_the_templates_own_protocol(installed, capsys, tmp_path, store):
    record = run_smoke(capsys, store, tmp_path / "first", PROTOCOL)
    check_template_method(record)
    assert (record["protocol"]["name"], record["protocol"]["version"]) == (PROTOCOL, "1")
    assert record["protocol"]["settings"]["drop"] is None
    assert [(s["name"], s["available"], s["missing"], s["role"]) for s in record["scenarios"]] == [
        ("optical+dsm+sar", ["optical", "dsm", "sar"], 0, "full"),
        ("dsm+sar", ["dsm", "sar"], 1, "dropped"),
    ]
    assert record["scenarios"][1]["dropped"] == "optical"
    assert_finite_metrics(record)
    full, dropped = (s["metrics"] for s in record["scenarios"])
    aggregate = record["aggregate"]
    assert aggregate["full"]["miou"] == full["miou"] and aggregate["dropped"]["modality"] == "optical"
    assert aggregate["gap"]["miou"] == pytest.approx(full["miou"] - dropped["miou"])

    # Its own setting, overridden like any config key.
    named = run_smoke(capsys, store, tmp_path / "named", PROTOCOL, "--set", "protocol.drop=sar")
    assert [s["name"] for s in named["scenarios"]] == ["optical+dsm+sar", "optical+dsm"]
    assert named["aggregate"]["dropped"]["modality"] == "sar"


def test_the_walkthrough_shows_the_templates_current_code():
    """docs/adding-a-method.md quotes the template's files (a block opening with `# <file>`): keep them equal."""
    doc = (REPO_ROOT / "docs" / "adding-a-method.md").read_text()
    blocks = re.findall(r"```\w*\n# (\S+)[^\n]*\n(.*?)```", doc, flags=re.S)
    shown = {name: body for name, body in blocks if (TEMPLATE / name).is_file()}
    assert set(shown) >= {"pyproject.toml", f"{PACKAGE}/specs.py", f"{PACKAGE}/defaults.yaml", f"{PACKAGE}/model.py"}
    for name, body in shown.items():
        assert body in (TEMPLATE / name).read_text(), f"docs/adding-a-method.md shows an outdated {name}"
