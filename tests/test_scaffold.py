"""`mmbench new method|protocol|dataset NAME`: the package it writes installs with pip, `mmbench list` shows the
plugin, and it runs; bad names and existing folders are refused in one line (mmbench/scaffold/)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.records import read_record
from mmbench.scaffold.names import plugin_names
from mmbench.scaffold.render import render
from mmbench.scaffold.snapshot import load_snapshot, read_template

REPO_ROOT = Path(__file__).resolve().parents[1]
# Names no other test or plugin uses: the packages are installed into the shared environment for a moment.
PLUGINS = {"method": "scaffold-probe-net", "protocol": "scaffold-probe-drop", "dataset": "scaffold-probe-tiles"}


def test_the_shipped_snapshot_is_the_plugin_templates_code():
    """examples/plugin-template/ changed? Refresh the snapshot: python -m mmbench.scaffold.snapshot."""
    assert load_snapshot() == read_template(REPO_ROOT / "examples" / "plugin-template")


def test_names_follow_the_plugin_name():
    names = plugin_names("method", "my-net.v2")
    assert (names.package, names.class_name, names.distribution) == ("my_net_v2", "MyNetV2", "my-net.v2")
    assert plugin_names("method", "3d-unet").package == "mmbench_3d_unet"
    assert plugin_names("method", "3d-unet").class_name == "Plugin3dUnet"
    files = render(plugin_names("protocol", "my-drop"))
    assert (
        "class MyDrop(Protocol)" in files["my_drop/protocol.py"] and 'name = "my-drop"' in files["my_drop/protocol.py"]
    )
    assert '[project.entry-points."mmbench.protocols"]\nmy-drop = "my_drop.specs:PROTOCOL"' in files["pyproject.toml"]


@pytest.mark.parametrize("name", ["My-Net", "_net", "my net", "net/../x", ""])
def test_an_invalid_name_is_refused_in_one_line(name, tmp_path, capsys):
    assert main(["new", "method", name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"plugin name {name!r} is invalid" in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path, capsys):
    existing = tmp_path / "my-net"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep")
    assert main(["new", "method", "my-net", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and str(existing) in err
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-net"]  # no staging folder left behind


def pip(*arguments: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def mmbench(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command as a user runs it, in a fresh process (which sees the editable installs)."""
    return subprocess.run([sys.executable, "-m", "mmbench", *arguments], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The three packages `mmbench new` writes, pip-installed in editable mode (no build isolation, no network)."""
    root = tmp_path_factory.mktemp("scaffold")
    for kind, name in PLUGINS.items():
        assert main(["new", kind, name, "--dir", str(root)]) == 0
    folders = [root / name for name in PLUGINS.values()]
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", *[arg for f in folders for arg in ("-e", str(f))])
    try:
        yield root
    finally:
        pip("uninstall", "--yes", *PLUGINS.values())


@pytest.mark.slow
def test_the_new_packages_install_and_are_listed(installed):
    listing = mmbench("list", "--json", cwd=installed)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    for kind, name in PLUGINS.items():
        (entry,) = [entry for entry in data[f"{kind}s"] if entry["name"] == name]
        assert entry["status"] == "ok", entry
        assert entry["sources"] == [
            f"{name} = '{plugin_names(kind, name).package}.specs:{kind.upper()}' from {name} 0.1.0"
        ]
    table = mmbench("list", "methods", cwd=installed)
    assert PLUGINS["method"] in table.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("scaffold-store") / "s.h5", SyntheticConfig(tiles=6, size=96))


@pytest.mark.slow
def test_a_new_method_runs_under_a_builtin_protocol(installed, store):
    out = installed / "runs-method"
    method = PLUGINS["method"]
    result = mmbench(
        "run", method, "--protocol", "last1", "--smoke", "--dataset", str(store), "--out", str(out), cwd=installed
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob(f"*/last1/{method}/*/result.json")
    record = read_record(path)
    assert (record["method"]["name"], record["method"]["version"]) == (method, "0.1.0")
    assert record["method"]["target"] == "scaffold_probe_net.model:ScaffoldProbeNet"


@pytest.mark.slow
def test_a_new_protocol_runs_with_a_builtin_method(installed, store):
    out = installed / "runs-protocol"
    protocol = PLUGINS["protocol"]
    result = mmbench(
        "run",
        "early-fusion",
        "--protocol",
        protocol,
        "--smoke",
        "--dataset",
        str(store),
        "--out",
        str(out),
        cwd=installed,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob(f"*/{protocol}/early-fusion/*/result.json")
    assert [s["name"] for s in read_record(path)["scenarios"]] == ["optical+dsm+sar", "dsm+sar"]


@pytest.mark.slow
def test_a_new_dataset_prepares_its_store(installed):
    code = (
        "from mmbench.config import load_defaults; from mmbench.registry import DATASETS; "
        f"spec = DATASETS.get('{PLUGINS['dataset']}'); "
        "path = spec.load().prepare(load_defaults(spec.defaults, spec.name)); print(path)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=installed)
    assert result.returncode == 0, result.stderr[-3000:]
    path = installed / result.stdout.strip()
    info = mmbench("data", "info", str(path), "--json", cwd=installed)
    assert info.returncode == 0, info.stderr
    assert "optical" in info.stdout and "dsm" in info.stdout


@pytest.mark.slow
def test_the_new_packages_own_tests_pass(installed):
    """What the author runs first (`pytest` in the new folder): the entry point, and mmbench.testing's checks
    where this mmbench has them (the generated test skips them otherwise)."""
    folders = [str(installed / name / "tests") for name in PLUGINS.values()]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *folders],
        capture_output=True,
        text=True,
        cwd=installed,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "6 passed" in result.stdout or "skipped" in result.stdout, result.stdout[-500:]
