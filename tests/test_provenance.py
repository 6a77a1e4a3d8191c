"""Issue 18, item 3: which code produced a record (mmbench/records/provenance.py) and which store trained it.

- a git checkout is dirty only through its sources: a stray untracked file at the top does not count, a
  modified tracked source file does, and the record names it;
- each plugin (method, protocol, dataset) is recorded with its distribution and version, and for an editable
  install from a git checkout with that checkout's commit and dirty state;
- `mmbench eval CHECKPOINT --dataset OTHER.h5` records the store the checkpoint was trained on, and the
  board keeps it apart as a transfer.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from plugin_factory import make_distribution

import mmbench
from mmbench.cli.main import main
from mmbench.leaderboard.board import build_board
from mmbench.leaderboard.collect import collect_records
from mmbench.records import read_record, validate_record
from mmbench.records.provenance import checkout_state, plugin_provenance, source_paths

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "tests" / "fixtures" / "unimodal_tiny.ckpt"


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A committed project: package `pkg` (pyproject.toml maps no folders: found by its __init__.py)."""
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (project / "pyproject.toml").write_text('[project]\nname = "prov-plugin"\nversion = "0.3.0"\n')
    (project / "README.md").write_text("notes\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "initial")
    return project


def test_a_stray_untracked_file_outside_the_sources_does_not_make_the_tree_dirty(checkout):
    assert source_paths(checkout) == ["pkg", "pyproject.toml"]
    (checkout / "notes.txt").write_text("stray\n")
    (checkout / "runs").mkdir()
    (checkout / "runs" / "result.json").write_text("{}\n")
    state = checkout_state(checkout)
    assert state["commit"] == git(checkout, "rev-parse", "HEAD")
    assert state["dirty"] is False and state["dirty_paths"] == {"count": 0, "paths": []}
    assert state["diff_sha256"] is None


def test_a_modified_tracked_source_file_makes_it_dirty_and_is_named(checkout):
    (checkout / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    (checkout / "notes.txt").write_text("stray\n")
    state = checkout_state(checkout)
    assert state["dirty"] is True
    assert state["dirty_paths"] == {"count": 1, "paths": ["pkg/__init__.py"]}
    assert state["diff_sha256"]


def test_an_untracked_module_inside_the_sources_makes_it_dirty(checkout):
    (checkout / "pkg" / "extra.py").write_text("x = 1\n")
    state = checkout_state(checkout)
    assert state["dirty"] is True and state["dirty_paths"]["paths"] == ["pkg/extra.py"]


def test_mmbench_source_paths_are_its_mapped_package_folders():
    paths = source_paths(REPO)
    assert {"mmbench", "methods", "protocols", "datasets", "kernels", "pyproject.toml", "setup.py"} <= set(paths)
    assert "docs" not in paths and "tests" not in paths


def test_builtin_plugins_name_mmbench_as_their_distribution():
    for kind, name in (("method", "stars"), ("protocol", "last1"), ("dataset", "synthetic")):
        info = plugin_provenance(kind, name)
        assert info is not None, (kind, name)
        assert info["distribution"] == "mmbench" and info["version"] == mmbench.__version__
    assert plugin_provenance("method", "no-such-method") is None


def test_a_third_party_plugin_records_its_distribution_and_version(dummy_plugin):
    info = plugin_provenance("method", "dummy")
    assert info is not None
    assert info["distribution"] == "mmb-dummy-plugin" and info["version"] == "1.0.0"
    assert info["editable"] is False and info["commit"] is None and info["dirty"] is None


def test_an_editable_plugin_records_its_checkouts_commit_and_dirty_state(checkout, tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path / "site", "prov-plugin", {"mmbench.methods": {"prov-method": "pkg:SPEC"}}, version="0.3.0"
    )
    (next(site.glob("*.dist-info")) / "direct_url.json").write_text(
        json.dumps({"url": checkout.as_uri(), "dir_info": {"editable": True}})
    )
    monkeypatch.syspath_prepend(str(site))
    (checkout / "pkg" / "__init__.py").write_text("VALUE = 3\n")
    info = plugin_provenance("method", "prov-method")
    assert info is not None
    assert info["distribution"] == "prov-plugin" and info["version"] == "0.3.0"
    assert info["editable"] is True and Path(info["source"]) == checkout
    assert info["commit"] == git(checkout, "rev-parse", "HEAD")
    assert info["dirty"] is True and info["dirty_paths"]["paths"] == ["pkg/__init__.py"]


def test_a_run_record_carries_plugin_provenance_and_its_training_store(capsys, tmp_path, dummy_plugin):
    code = main(["run", "dummy", "--protocol", "dummy-protocol", "--dataset", "toy", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    (path,) = tmp_path.rglob("result.json")
    record = read_record(path)
    validate_record(record)
    assert record["plugins"]["method"]["distribution"] == "mmb-dummy-plugin"
    assert record["plugins"]["protocol"]["version"] == "1.0.0"
    assert record["plugins"]["dataset"]["distribution"] == "mmb-dummy-plugin"
    assert record["method"]["trained_on"] == {"name": "toy", "fingerprint": record["dataset"]["fingerprint"]}
    assert "dirty_paths" in record["git"]


@pytest.mark.slow
def test_a_checkpoint_evaluated_on_another_store_records_where_it_was_trained(tmp_path):
    from behaviour_pins import pinned_store

    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
    from mmbench.engine.checkpoint import load_checkpoint

    trained = load_checkpoint(CHECKPOINT)["dataset"]
    other = write_synthetic(tmp_path / "other.h5", SyntheticConfig(tiles=6, size=96, seed=1))
    home = pinned_store(tmp_path / "s.h5")
    for store, out in ((other, tmp_path / "runs-other"), (home, tmp_path / "runs-home")):
        argv = ["eval", str(CHECKPOINT), "-d", str(store), "-p", "full", "--out", str(out), "--device", "cpu"]
        assert main(argv) == 0
    (transfer_path,) = (tmp_path / "runs-other").rglob("result.json")
    record = read_record(transfer_path)
    validate_record(record)
    assert record["method"]["trained_on"] == {"name": trained["name"], "fingerprint": trained["fingerprint"]}
    assert record["dataset"]["fingerprint"] != trained["fingerprint"]
    assert record["plugins"]["method"]["distribution"] == "mmbench"
    (home_path,) = (tmp_path / "runs-home").rglob("result.json")
    assert (
        read_record(home_path)["method"]["trained_on"]["fingerprint"]
        == read_record(home_path)["dataset"]["fingerprint"]
    )
    # the same checkpoint on both stores: on the board of the other store it is a transfer, labelled so
    records, skipped = collect_records([tmp_path / "runs-other"])
    (table,) = build_board(records, skipped, n_boot=20)["tables"]
    (row,) = table["rows"]
    assert row["label"].endswith(f"(trained on {trained['name']})")
    assert any(flag.startswith(f"transfer: trained on {trained['name']}") for flag in row["flags"])


def test_a_record_names_the_commit_its_run_started_from(capsys, tmp_path, dummy_plugin, monkeypatch):
    """A checkout that changes while a run trains (a sweep clone pulled mid-run) must not relabel the run's
    numbers with the new commit: the source state is read when the run starts (mmbench/runs/execution.py)."""
    from mmbench.records import environment
    from mmbench.runs import execution

    pulled = {"now": False}

    def state(project, paths=None):
        commit = "b" * 40 if pulled["now"] else "a" * 40  # after the pull: b…, before: a…
        return {"commit": commit, "dirty": False, "diff_sha256": None, "dirty_paths": {"count": 0, "paths": []}}

    def pull_then(started, outcome, _inner=execution.with_most_fragile):
        pulled["now"] = True  # the run has trained; its record is not written yet
        return _inner(started, outcome)

    monkeypatch.setattr(environment, "checkout_state", state)
    monkeypatch.setattr(execution, "with_most_fragile", pull_then)
    environment.git_state.cache_clear()
    try:
        code = main(["run", "dummy", "--protocol", "dummy-protocol", "--dataset", "toy", "--out", str(tmp_path)])
        assert code == 0, capsys.readouterr().err
    finally:
        environment.git_state.cache_clear()
    assert pulled["now"]
    (path,) = tmp_path.rglob("result.json")
    assert read_record(path)["git"]["commit"] == "a" * 40
