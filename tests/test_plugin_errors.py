"""Errors that blame the right party (issue 18): a protocol naming a modality the dataset lacks is refused before
anything runs, whatever the method; a method breaking its contract stops `mmbench run` before training with one
line naming the plugin, its distribution and the rule (exit 2, not "internal error"); an exception inside a
third-party plugin's code names the plugin; a diverging loss names a checkpoint only if it is on disk."""

from __future__ import annotations

import time

import pytest
from broken_methods import BROKEN, ENTRY_POINTS

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

DISTRIBUTION = "mmb-broken-methods"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("errors") / "s.h5", SyntheticConfig(tiles=6, size=64))


@pytest.fixture
def broken(install_dist):
    install_dist(DISTRIBUTION, ENTRY_POINTS)


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_args(store, out, method, protocol="last1", *extra):
    return ["run", method, "-p", protocol, "-d", str(store), "--out", str(out), "--deterministic", *extra]


def assert_one_line(err, *parts):
    """One `mmbench ...: error:` line, the last one (progress lines may come before it: stderr is not a
    terminal here), no traceback, naming every part."""
    errors = [line for line in err.splitlines() if line.startswith("mmbench") and ": error:" in line]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert "internal error" not in err and "Traceback" not in err, err
    for part in parts:
        assert part in errors[0], err


def test_a_scenario_naming_a_missing_modality_stops_the_run_before_training(capsys, tmp_path, store, broken):
    """The silent wrong result: 'lidar only' on a store without lidar would be scored with no input at all."""
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", "early-fusion", "with-lidar"))
    assert code == 2
    assert_one_line(err, "protocol 'with-lidar'", DISTRIBUTION, "'lidar only'", "'lidar'", "lacks")
    assert list((tmp_path / "runs").rglob("*.ckpt")) == [] and list((tmp_path / "runs").rglob("result.json")) == []


def test_the_missing_modality_is_refused_for_a_method_that_keeps_its_contract_too(capsys, tmp_path, store, broken):
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", "keeper", "with-lidar"))
    assert code == 2 and "needs modality 'lidar'" in err


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_method_stops_the_run_before_training_naming_the_plugin(capsys, tmp_path, store, broken, name):
    started = time.perf_counter()
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", name))
    assert code == 2, err
    assert_one_line(err, f"method {name!r}", DISTRIBUTION, f"rule {BROKEN[name][1]!r}", "before training")
    assert list((tmp_path / "runs").rglob("*.ckpt")) == [] and list((tmp_path / "runs").rglob("*.jsonl")) == []
    assert time.perf_counter() - started < 60  # generous: the check is seconds; training never starts


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_mmbench_check_names_the_plugin_and_the_rule(capsys, broken, name):
    code, out, err = cli(capsys, "check", "method", name)
    assert code == 2 and out == ""
    assert_one_line(err, f"method {name!r}", f"from distribution {DISTRIBUTION} 1.0.0", f"rule {BROKEN[name][1]!r}")


def test_mmbench_check_of_a_method_that_keeps_the_contract_prints_the_table(capsys, broken):
    code, out, err = cli(capsys, "check", "method", "keeper")
    assert code == 0, err
    assert "✓" in out and "no-leak" in out and "checkpoint" in out and "keeps the contract" in out


def test_mmbench_check_protocol_names_the_missing_modality(capsys, broken):
    code, _, err = cli(capsys, "check", "protocol", "with-lidar")
    assert code == 2
    assert_one_line(err, "protocol 'with-lidar'", DISTRIBUTION, "rule 'scenario-modalities'", "'lidar'")


def test_an_exception_inside_plugin_code_during_training_names_the_plugin(capsys, tmp_path, store, broken):
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", "raising-in-training"))
    assert code == 2
    assert_one_line(err, "method 'raising-in-training'", DISTRIBUTION, "raised KeyError", "broken_methods.py")
    with pytest.raises(KeyError):  # --debug keeps the plugin's own traceback
        try:
            main([*run_args(store, tmp_path / "debug", "raising-in-training"), "--debug"])
        except Exception as exc:
            raise exc.__cause__ from None


def test_a_loss_diverging_before_any_checkpoint_says_none_was_written(capsys, tmp_path, store, tiny_methods):
    code, _, err = cli(
        capsys, *run_args(store, tmp_path / "runs", "tiny-diverging", "last1", "--set", "method.nan_at_step=1")
    )
    assert code == 2
    assert_one_line(err, "at step 1", "no checkpoint was written")
    assert list((tmp_path / "runs").rglob("*.ckpt")) == []


def test_a_loss_diverging_later_names_the_checkpoint_on_disk(capsys, tmp_path, store, tiny_methods):
    code, _, err = cli(
        capsys, *run_args(store, tmp_path / "runs", "tiny-diverging", "last1", "--set", "method.nan_at_step=6")
    )
    assert code == 2
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    assert_one_line(err, "at step 6", f"the last good checkpoint is {last}")


def test_a_method_shipped_with_mmbench_breaking_the_contract_is_mmbenchs_bug(
    capsys, tmp_path, store, broken, monkeypatch
):
    import mmbench.runs.preflight as preflight

    monkeypatch.setattr(preflight, "is_builtin", lambda registry, name: True)  # as if mmbench shipped it
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", "wrong-size"))
    assert code == 1
    assert "internal error" in err and "built-in method 'wrong-size'" in err and "please report it" in err


def test_evaluating_a_checkpoint_refuses_a_missing_modality_too(capsys, tmp_path, store, broken):
    assert cli(capsys, *run_args(store, tmp_path / "train", "keeper"))[0] == 0
    (best,) = (tmp_path / "train").rglob("best.ckpt")
    code, _, err = cli(capsys, *run_args(store, tmp_path / "eval", "keeper", "with-lidar", "--checkpoint", str(best)))
    assert code == 2 and "needs modality 'lidar'" in err
    assert list((tmp_path / "eval").rglob("result.json")) == []
