"""The CLI contract: exit codes 0/1/2, one-line errors, dry runs that write nothing, and a dummy run
whose record validates against the schema and is reproducible from its seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmbench import __version__
from mmbench.cli.main import main
from mmbench.records import read_record, validate_record

REPO_ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def run_dummy(capsys, out: Path, *extra: str) -> Path:
    code, stdout, err = cli(
        capsys, "run", "dummy", "--protocol", "dummy-protocol", "--dataset", "toy", "--out", str(out), *extra
    )
    assert code == 0, err
    records = list(out.rglob("result.json"))
    assert len(records) == 1
    return records[0]


def test_version_and_help(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"mmbench {__version__}"
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("list", "run", "eval", "data", "leaderboard", "bench"):
        assert command in out
    code, out, _ = cli(capsys)
    assert code == 0 and "usage: mmbench" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["frobnicate"], ["mmbench: error: argument COMMAND: invalid choice: 'frobnicate'", "--help"]),
        (["run", "stars"], ["mmbench run: error:", "--protocol"]),
        (["run", "stars", "-p", "last1", "--seed", "x"], ["invalid int value: 'x'"]),
        (["data", "convert", "isprs-paris", "src", "out.h5"], ["unknown converter 'isprs-paris'; did you mean"]),
        (["bench"], ["mmbench bench: error:", "TARGET"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, fragments):
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)


def test_list_shows_builtins_and_says_when_a_registry_is_empty(capsys):
    code, out, _ = cli(capsys, "list")
    assert code == 0
    assert "stars" in out and "https://arxiv.org/abs/2601.17342" in out
    assert "synthetic" in out and "optical, dsm, sar" in out and "mmbench 0.1.0" in out
    for protocol in ("full", "missing1", "last1", "subsets", "random-drop", "pixel-drop", "minority"):
        assert protocol in out


def test_list_shows_plugins_and_reports_broken_ones(capsys, install_dist, dummy_plugin):
    install_dist(
        "broken-dist",
        {"mmbench.methods": {"exploding": "mmb_exploding_cli:SPEC"}},
        {"mmb_exploding_cli/__init__.py": "raise RuntimeError('boom')\n"},
    )
    code, out, _ = cli(capsys, "list", "methods")
    assert code == 0
    assert "dummy" in out and "1.2.0" in out and "engine-only" in out
    assert "failed to load" in out and "boom" in out
    code, out, _ = cli(capsys, "list", "--json")
    listing = json.loads(out)
    by_name = {entry["name"]: entry for entry in listing["methods"]}
    assert by_name["dummy"]["spec"]["modalities"] == ["optical", "dsm"]
    assert by_name["exploding"]["status"] == "broken" and "RuntimeError: boom" in by_name["exploding"]["error"]
    assert [entry["name"] for entry in listing["datasets"]] == ["synthetic", "toy"]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--set", "method.lrr=1"], ["unknown config key 'method.lrr'", "did you mean method.lr"]),
        (["--set", "method.layers=two"], ["'method.layers'", "expects a int"]),
        (["--set", "methodlr"], ["override 'methodlr' must look like 'section.key=value'"]),
        (["--seed", "-3"], ["run.seed=-3 is out of range"]),
        (["--config", "nope.yaml"], ["config file 'nope.yaml' does not exist"]),
        (["--dataset", "tyo"], ["unknown dataset 'tyo'", "did you mean 'toy'"]),
        (["--dataset", "missing/store.h5"], ["dataset file 'missing/store.h5' does not exist"]),
        (["--seed", "1", "--set", "run.seed=2"], ["run.seed is given twice"]),
    ],
)
def test_bad_run_inputs_exit_2_with_one_line_and_write_nothing(capsys, tmp_path, dummy_plugin, extra, fragments):
    out = tmp_path / "runs"
    code, _, err = cli(capsys, "run", "dummy", "-p", "dummy-protocol", "-d", "toy", "--out", str(out), *extra)
    assert code == 2
    assert_one_line_error(err, "mmbench run: error:", *fragments)
    assert not out.exists()


def test_unknown_plugins_exit_2_with_suggestions(capsys, dummy_plugin):
    code, _, err = cli(capsys, "run", "dumm", "-p", "dummy-protocol")
    assert code == 2
    assert_one_line_error(err, "unknown method 'dumm'", "did you mean 'dummy'")
    code, _, err = cli(capsys, "run", "dummy", "-p", "lastone")
    assert code == 2
    assert_one_line_error(err, "unknown protocol 'lastone'", "did you mean 'last1'", "registered protocols: dummy-pro")


def test_cuda_without_cuda_is_a_user_error(capsys, tmp_path, dummy_plugin):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = cli(
        capsys, "run", "dummy", "-p", "dummy-protocol", "-d", "toy", "--device", "cuda", "--out", str(tmp_path)
    )
    assert code == 2
    assert_one_line_error(err, "asked for CUDA", "--device cpu")


def test_dry_run_prints_the_resolved_config_and_writes_nothing(capsys, tmp_path, dummy_plugin):
    config = tmp_path / "exp.yaml"
    config.write_text("method:\n  layers: 6\n")
    out = tmp_path / "runs"
    code, stdout, _ = cli(
        capsys,
        "run",
        "dummy",
        "-p",
        "dummy-protocol",
        "-d",
        "toy",
        "--config",
        str(config),
        "--set",
        "method.lr=2e-3",
        "--seed",
        "9",
        "--out",
        str(out),
        "--dry-run",
    )
    assert code == 0
    assert "layers: 6" in stdout and "lr: 0.002" in stdout and "seed: 9" in stdout
    assert "--set method.lr=2e-3" in stdout and f"file {config}" in stdout
    assert not out.exists()


def test_a_dummy_run_writes_a_complete_valid_record(capsys, tmp_path, dummy_plugin):
    path = run_dummy(capsys, tmp_path / "runs", "--seed", "11", "--set", "method.layers=3", "--device", "cpu")
    assert path.parent.parent == tmp_path / "runs" / "toy" / "dummy-protocol" / "dummy"
    record = json.loads(path.read_text())
    validate_record(record)
    assert record["seed"] == 11 and record["seeds"]["torch"] == 11
    assert record["config"]["method"]["layers"] == 3
    assert record["config"]["protocol"] == {"window": 64, "stride": 32}
    assert record["method"] == {
        "name": "dummy",
        "version": "1.2.0",
        "params": 123,
        "paper": "https://example.org/dummy",
        "target": record["method"]["target"],
        "checkpoint": None,
        "trained_for_missing": None,  # a method with its own execute declares no training regime
        "budget": None,  # and has no model to count
        "trained_on": {"name": "toy", "fingerprint": None},  # mmbench run: the evaluated store (no file here)
    }
    assert record["protocol"]["settings"] == {"window": 64}
    assert record["dataset"]["name"] == "toy" and record["dataset"]["version"] == "0.1"
    assert record["command"].startswith("mmbench run dummy --protocol dummy-protocol")
    assert record["env"]["torch"] and record["env"]["device"] == "cpu" and record["env"]["cpu"]
    assert [s["name"] for s in record["scenarios"]] == ["full", "optical only", "dsm only"]
    assert record["timing"]["train_s"] == 0.0 and record["timing"]["total_s"] >= 0
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert record["git"]["commit"] == head.stdout.strip()
        assert isinstance(record["git"]["dirty"], bool)
    assert read_record(path) == record


def test_the_same_seed_gives_the_same_numbers(capsys, tmp_path, dummy_plugin):
    def numbers(folder: str, seed: str) -> tuple:
        record = json.loads(run_dummy(capsys, tmp_path / folder, "--seed", seed).read_text())
        return [s["confusion_matrix"] for s in record["scenarios"]], record["aggregate"]

    first = numbers("a", "5")
    assert numbers("b", "5") == first
    assert numbers("c", "6") != first


def test_a_record_can_be_rerun_from_its_own_config(capsys, tmp_path, dummy_plugin):
    first = json.loads(run_dummy(capsys, tmp_path / "a", "--seed", "21", "--set", "method.layers=7").read_text())
    record_file = next((tmp_path / "a").rglob("result.json"))
    code, _, err = cli(
        capsys,
        "run",
        "dummy",
        "-p",
        "dummy-protocol",
        "-d",
        "toy",
        "--config",
        str(record_file),
        "--out",
        str(tmp_path / "b"),
    )
    assert code == 0, err
    second = json.loads(next((tmp_path / "b").rglob("result.json")).read_text())
    assert second["config"]["method"] == first["config"]["method"]
    assert second["seed"] == 21
    assert second["scenarios"] == first["scenarios"]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = cli(capsys, "run", "dummy", "-p", "dummy-protocol", "-d", "toy", "--config", str(bad))
    assert code == 2
    assert_one_line_error(err, "is not a usable run record", "not valid JSON")


def test_deterministic_runs_record_the_switch(capsys, tmp_path, dummy_plugin):
    import torch

    try:
        record = json.loads(run_dummy(capsys, tmp_path / "runs", "--deterministic").read_text())
    finally:
        torch.use_deterministic_algorithms(False)
    assert record["config"]["run"]["deterministic"] is True
    assert record["seeds"]["deterministic"] is True


def test_a_dataset_file_is_fingerprinted(capsys, tmp_path, dummy_plugin):
    store = tmp_path / "my-store.h5"
    store.write_bytes(b"not really hdf5, but bytes to hash")
    path = run_dummy(capsys, tmp_path / "runs", "--dataset", str(store))
    record = json.loads(path.read_text())
    assert record["dataset"]["name"] == "my-store"
    assert record["dataset"]["path"] == str(store.resolve())
    import hashlib

    assert record["dataset"]["fingerprint"] == "sha256:" + hashlib.sha256(store.read_bytes()).hexdigest()


def test_a_plugin_failing_in_its_own_execute_is_blamed_exit_2_and_debug_shows_the_traceback(
    capsys, tmp_path, dummy_plugin
):
    argv = [
        "run",
        "dummy",
        "-p",
        "dummy-protocol",
        "-d",
        "toy",
        "--out",
        str(tmp_path / "runs"),
        "--set",
        "method.fail_with=internal",
    ]
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(
        err, "method 'dummy'", "mmb-dummy-plugin", "raised RuntimeError: dummy internal failure in its own code"
    )
    assert "internal error" not in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(RuntimeError, match="dummy internal failure"):
        main([*argv, "--debug"])


def test_mmbench_own_errors_exit_1_with_one_line_and_debug_shows_the_traceback(
    capsys, tmp_path, dummy_plugin, monkeypatch
):
    import mmbench.runs.execution as execution

    def broken(*args, **kwargs):
        raise RuntimeError("mmbench's own failure")

    monkeypatch.setattr(execution, "finish_run", broken)
    argv = ["run", "dummy", "-p", "dummy-protocol", "-d", "toy", "--out", str(tmp_path / "runs")]
    code, _, err = cli(capsys, *argv)
    assert code == 1
    assert_one_line_error(err, "internal error: RuntimeError: mmbench's own failure", "--debug")
    with pytest.raises(RuntimeError, match="mmbench's own failure"):
        main([*argv, "--debug"])


def test_methods_mmbench_cannot_run_say_so(capsys, tmp_path, dummy_plugin):
    code, _, err = cli(capsys, "run", "engine-only", "-p", "dummy-protocol", "-d", "toy", "--out", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "method 'engine-only'", "is neither a mmbench.method.SegmentationMethod nor defines")
    code, _, err = cli(capsys, "run", "broken-impl", "-p", "dummy-protocol", "-d", "toy", "--out", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "cannot load its implementation", "ModuleNotFoundError")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["eval", "missing.ckpt", "-p", "last1"], "checkpoint 'missing.ckpt' does not exist"),
        (["data", "info", "missing.h5"], "tile store 'missing.h5' does not exist"),
        (["data", "verify", "missing.h5"], "tile store 'missing.h5' does not exist"),
        (["data", "convert", "earthmiss", "missing-dir", "out.h5"], "source 'missing-dir' does not exist"),
        (["leaderboard", "missing-runs"], "runs folder 'missing-runs' does not exist"),
        (["bench", "kernels", "--providers", "triton"], "provider triton does not run on cpu"),
        (
            ["bench", "kernels", "--device", "cuda:0"]
            if not __import__("torch").cuda.is_available()
            else ["bench", "kernels", "--device", "tpu"],
            "--device",
        ),
    ],
)
def test_commands_without_their_machinery_fail_cleanly(capsys, argv, fragment):
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, fragment)


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("mmbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mmbench"]


def test_the_installed_console_script_keeps_the_contract(tmp_path, dummy_plugin):
    result = subprocess.run(
        [*_console_script(), "run", "dumy", "-p", "dummy-protocol"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "unknown method 'dumy'", "did you mean 'dummy'")
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [*_console_script(), "run", "dummy", "-p", "dummy-protocol", "-d", "toy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = list((tmp_path / "runs").rglob("result.json"))
    assert len(records) == 1
    validate_record(json.loads(records[0].read_text()))


def test_help_version_and_list_do_not_import_torch_or_plugin_code(tmp_path, dummy_plugin):
    probe = (
        "import sys, contextlib, io\n"
        "from mmbench.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['run', '--help'], ['list']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.endswith('.impl'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
