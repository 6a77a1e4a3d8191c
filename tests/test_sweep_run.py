"""`mmbench sweep` running jobs: failure isolation, skipping what is done, reporting records that are not
reused, resuming a sweep killed mid-training to the uninterrupted numbers, and the submitit path.

Every job is a real `python -m mmbench run|eval` child on a tiny store with the test-only `tiny-trainable`
method (tests/tiny_methods.py), so these tests take seconds per job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from faults import terminal_sigint
from sweep_cli import sweep

from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.records import read_record
from mmbench.records.fingerprint import file_sha256


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("sweep-run") / "tiny.h5", SyntheticConfig(tiles=12, size=64))


def write_suite(path: Path, store: Path, out: Path, **fields) -> Path:
    data = {
        "datasets": [str(store)],
        "methods": [{"method": "tiny-trainable", "name": "ok"}],
        "seeds": [0],
        "train": "last1",
        "evaluate": ["subsets"],
        "out": str(out),
        "set": ["run.device=cpu", "run.deterministic=true", "method.train.iterations=4"],
        **fields,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def records(root: Path) -> list[Path]:
    return sorted(root.rglob("result.json"))


def matrices(path: Path) -> list:
    return [scenario["confusion_matrix"] for scenario in read_record(path)["scenarios"]]


def state(out: Path, job: str) -> dict:
    data = json.loads((out / f"{job}.state.json").read_text())
    if data.get("record"):
        data["record"] = str(out / data["record"])  # state files name records relative to the job folder
    return data


def test_a_failing_job_is_isolated_done_jobs_are_skipped_and_rejected_records_are_reported(
    capsys, tmp_path, store, tiny_methods
):
    out = tmp_path / "out"
    exploding = {"method": "tiny-trainable", "name": "exploding", "set": {"method.train.lr": 1.0e30}}
    suite = write_suite(
        tmp_path / "suite.yaml", store, out, methods=[{"method": "tiny-trainable", "name": "ok"}, exploding]
    )
    code, _, err = sweep(capsys, suite, "--jobs", "2")
    assert code == 2, err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "tiny/exploding/seed0/train-last1" in failed[0]
    assert f"(log: {out / 'tiny' / 'exploding' / 'seed0' / 'train-last1.log'})" in failed[0]
    assert "not started tiny/exploding/seed0/eval-subsets" in err
    assert err.strip().splitlines()[-1].startswith("mmbench sweep: error: 2 of 4 jobs did not finish")
    ok = out / "tiny" / "ok" / "seed0"
    assert state(ok, "train-last1")["status"] == "done" and state(ok, "eval-subsets")["status"] == "done"
    training, evaluation = (
        read_record(state(ok, "train-last1")["record"]),
        read_record(state(ok, "eval-subsets")["record"]),
    )
    assert evaluation["method"]["checkpoint"]["sha256"] == training["method"]["checkpoint"]["sha256"]
    assert (
        evaluation["protocol"]["name"] == "subsets" and evaluation["config"]["method"] == training["config"]["method"]
    )
    before = records(out)
    assert len(before) == 2

    # Rerun: finished jobs are skipped, the failure is left alone (and still makes the exit code non-zero).
    code, _, err = sweep(capsys, suite)
    assert code == 2 and "rerun with --retry-failed" in err.splitlines()[-1]
    assert "start " not in err and records(out) == before

    # --retry-failed runs the failure again (it fails again: the override is still there), not the rest.
    code, _, err = sweep(capsys, suite, "--retry-failed")
    assert code == 2 and "[1/2] FAILED tiny/exploding/seed0/train-last1" in err
    assert "not started tiny/exploding/seed0/eval-subsets" in err and records(out) == before

    # A record edited to another config, and a corrupt record, are reported and not reused.
    path = Path(state(ok, "eval-subsets")["record"])
    edited = json.loads(path.read_text())
    edited["config"]["method"]["width"] += 1
    path.write_text(json.dumps(edited))
    code, out_text, err = sweep(capsys, suite, "--status")
    assert code == 0
    assert "was made with a different config" in err
    assert "1 done, 1 failed, 2 pending" in out_text
    Path(state(ok, "train-last1")["record"]).write_text("{ truncated")
    code, out_text, err = sweep(capsys, suite, "--status")
    assert "is unreadable" in err and "0 done, 1 failed, 3 pending" in out_text


TRAIN_ONLY = {"evaluate": [], "set": ["run.device=cpu", "run.deterministic=true", "method.train.iterations=40"]}


def kill_mid_training(suite: Path, out: Path) -> Path:
    """Start the sweep, SIGKILL it and its training child once the first checkpoint is written; returns the
    job folder (the sweep and the run folder are left `running`, as a killed sweep leaves them)."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "mmbench", "sweep", str(suite)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list(out.rglob("last.ckpt")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)  # the sweep and its training child, mid-training
    driver.wait()
    assert list(out.rglob("last.ckpt")) and not records(out), "the kill must land mid-training"
    return out / "tiny" / "ok" / "seed0"


def test_a_sweep_killed_mid_training_resumes_to_the_uninterrupted_numbers(capsys, tmp_path, store, tiny_methods):
    fields = TRAIN_ONLY
    killed_out, straight_out = tmp_path / "killed", tmp_path / "straight"
    suite = write_suite(tmp_path / "killed.yaml", store, killed_out, **fields)
    job = kill_mid_training(suite, killed_out)
    assert state(job, "train-last1")["status"] == "running"  # what a killed sweep leaves

    code, out_text, _ = sweep(capsys, suite, "--status")
    assert code == 0 and "pending*" in out_text  # interrupted, resumable
    code, _, err = sweep(capsys, suite)
    assert code == 0, err
    assert "(resumed)" in err and state(job, "train-last1")["resumed"] is True
    (resumed,) = records(killed_out)
    code, _, err = sweep(capsys, write_suite(tmp_path / "straight.yaml", store, straight_out, **fields))
    assert code == 0, err
    (straight,) = records(straight_out)
    assert matrices(resumed) == matrices(straight)
    assert read_record(resumed)["aggregate"] == read_record(straight)["aggregate"]


def test_a_checkpoint_trained_on_a_since_rewritten_store_trains_afresh(capsys, tmp_path, tiny_methods):
    """The store given by path was regenerated after the kill: its checkpoint is not resumed (that would mix
    two stores in one training, or fail the job on `--resume`'s fingerprint check); the job trains anew."""
    store = write_synthetic(tmp_path / "tiny.h5", SyntheticConfig(tiles=12, size=64))
    out = tmp_path / "out"
    suite = write_suite(tmp_path / "suite.yaml", store, out, **TRAIN_ONLY)
    job = kill_mid_training(suite, out)
    write_synthetic(store, SyntheticConfig(tiles=12, size=64, seed=1))  # same path, other bytes
    code, _, err = sweep(capsys, suite)
    assert code == 0, err
    assert "(resumed)" not in err and state(job, "train-last1")["resumed"] is False
    (record,) = records(out)
    assert read_record(record)["dataset"]["fingerprint"] == file_sha256(store)


def test_the_submitit_path_runs_the_same_jobs(capsys, tmp_path, store, tiny_methods):
    out = tmp_path / "out"
    suite = write_suite(tmp_path / "suite.yaml", store, out, evaluate=["subsets", "full"], executor={"timeout_min": 30})
    code, _, err = sweep(capsys, suite, "--executor", "submitit-local", "--jobs", "2")
    assert code == 0, err
    job = out / "tiny" / "ok" / "seed0"
    assert state(job, "train-last1")["status"] == "done" and state(job, "eval-subsets")["status"] == "done"
    assert state(job, "eval-full")["log"] == str(job / "eval-subsets+full.log")  # one submitted batch
    assert len(records(out)) == 3
    assert len(list((out / ".submitit").glob("*_result.pkl"))) == 2  # submitit ran them, in its own processes
    code, out_text, _ = sweep(capsys, suite, "--status")
    assert "3 done, 0 failed, 0 pending" in out_text
    moved = tmp_path / "moved"
    out.rename(moved)  # state files name records relative to their job folder
    code, out_text, err = sweep(capsys, suite, "--status", "--out", moved)
    assert code == 0 and "3 done, 0 failed, 0 pending" in out_text, err


def test_the_evaluations_of_one_training_run_as_one_eval_process(capsys, tmp_path, store, tiny_methods):
    out = tmp_path / "out"
    suite = write_suite(tmp_path / "suite.yaml", store, out, evaluate=["subsets", "full", "missing1"])
    code, _, err = sweep(capsys, suite, "--jobs", "2")
    assert code == 0, err
    job = out / "tiny" / "ok" / "seed0"
    shared = job / "eval-subsets+full+missing1.log"
    commands = [line for line in shared.read_text().splitlines() if line.startswith("# ")]
    assert len(commands) == 1 and " eval " in commands[0]
    assert all(f"--protocol {name}" in commands[0] for name in ("subsets", "full", "missing1"))
    for name in ("subsets", "full", "missing1"):  # state and done stay per (training, protocol) job
        data = state(job, f"eval-{name}")
        assert data["status"] == "done" and data["log"] == str(shared)
        assert read_record(data["record"])["protocol"]["name"] == name
        assert str(shared) in (job / f"eval-{name}.log").read_text()  # each job's own log points there
    assert err.count("start tiny/ok/seed0/eval-") == 3 and err.count("done tiny/ok/seed0/eval-") == 3
    code, out_text, err = sweep(capsys, suite, "--status")
    assert code == 0 and "4 done, 0 failed, 0 pending" in out_text  # one state per job


def test_a_batch_whose_process_fails_marks_each_job_without_a_record_failed(
    capsys, tmp_path, store, tiny_methods, monkeypatch
):
    import mmbench.sweep.jobs as jobs

    real = jobs._run_child

    def full_fails(command, log, settings):
        if "eval" not in command:
            return real(command, log, settings)
        at = command.index("full")  # evaluate the other protocols; say full failed, as mmbench eval does
        config = next(i for i, part in enumerate(command) if part.startswith("full="))
        kept = [part for i, part in enumerate(command) if i not in (at - 1, at, config - 1, config)]
        assert real(kept, log, settings) == 0
        log.write("mmbench eval: protocol full failed: boom in full\nmmbench eval: error: boom in full\n")
        return 2

    monkeypatch.setattr(jobs, "_run_child", full_fails)
    out = tmp_path / "out"
    suite = write_suite(tmp_path / "suite.yaml", store, out, evaluate=["subsets", "full", "missing1"])
    code, _, err = sweep(capsys, suite)
    assert code == 2
    job = out / "tiny" / "ok" / "seed0"
    failed = state(job, "eval-full")
    assert failed["status"] == "failed" and failed["error"] == "exit code 2: boom in full"
    assert failed["log"] == str(job / "eval-subsets+full+missing1.log")
    assert state(job, "eval-subsets")["status"] == "done" and state(job, "eval-missing1")["status"] == "done"
    assert "FAILED tiny/ok/seed0/eval-full" in err and "boom in full" in err
    assert len(records(out)) == 3


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "kill"])
def test_ctrl_c_and_sigterm_interrupt_each_job_once_and_leave_it_resumable(
    capsys, tmp_path, store, tiny_methods, signum, exit_code
):
    out = tmp_path / "out"
    fields = {"evaluate": [], "set": ["run.device=cpu", "run.deterministic=true", "method.train.iterations=400"]}
    suite = write_suite(tmp_path / "suite.yaml", store, out, **fields)
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    driver = subprocess.Popen(
        [sys.executable, "-m", "mmbench", "sweep", str(suite)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=terminal_sigint,
    )
    deadline = time.monotonic() + 300
    while not list(out.rglob("last.ckpt")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.send_signal(signum)  # what Ctrl-C or a kill sends the sweep (its jobs are in sessions of their own)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == exit_code, f"{err}\n(this test process: SIGINT handler, blocked signals = {inherited})"
    assert "mmbench sweep: interrupted" in err and "Traceback" not in err
    job = out / "tiny" / "ok" / "seed0"
    assert state(job, "train-last1")["status"] == "interrupted" and not records(out)
    log = (job / "train-last1.log").read_text()
    assert "interrupted at step" in log  # the run saved its checkpoint
    step = log.split("interrupted at step ")[1].split(";")[0]
    code, out_text, _ = sweep(capsys, suite, "--status")
    assert code == 0 and f"pending* @{step}" in out_text  # where it will resume, read from the notes


def test_identical_jobs_of_another_sweep_are_reused_not_rerun(capsys, tmp_path, store, tiny_methods):
    """A study whose cell equals a board's row (same method, config, dataset and seed) takes the board's
    training and evaluations instead of running them again; what the board did not run is run here, from
    the reused checkpoint; a job of another config is not reused."""
    board_out, study_out = tmp_path / "board", tmp_path / "study"
    board = write_suite(tmp_path / "board.yaml", store, board_out)
    code, _, err = sweep(capsys, board)
    assert code == 0, err
    board_train = json.loads((board_out / "tiny" / "ok" / "seed0" / "train-last1.state.json").read_text())
    board_records = records(board_out)
    study = write_suite(
        tmp_path / "study.yaml",
        store,
        study_out,
        reuse=[str(board_out)],
        methods=[{"method": "tiny-trainable", "name": "ok-in-study"}],
        evaluate=["subsets", "minority"],
    )
    code, out, _ = sweep(capsys, study, "--dry-run")
    assert code == 0 and "2 of 3 jobs already done (2 reused from the sweeps under 'reuse:')" in " ".join(out.split())
    code, _, err = sweep(capsys, study)
    assert code == 0, err
    started = sorted(line.split()[-1] for line in err.splitlines() if line.startswith("start "))
    assert started == ["tiny/ok-in-study/seed0/eval-minority"]
    assert records(board_out) == board_records  # nothing written into the reused sweep
    cell = study_out / "tiny" / "ok-in-study" / "seed0"
    reused = json.loads((cell / "train-last1.state.json").read_text())
    assert reused["status"] == "done" and reused["reused_from"].endswith("board/tiny/ok/seed0/train-last1.state.json")
    assert reused["record"] == str((board_out / "tiny" / "ok" / "seed0" / board_train["record"]).resolve())
    minority = read_record(state(cell, "eval-minority")["record"])
    assert minority["method"]["checkpoint"]["sha256"] == read_record(reused["record"])["method"]["checkpoint"]["sha256"]
    code, out, _ = sweep(capsys, study, "--status")
    assert code == 0 and out.count("done (reused)") == 2

    # A reused record that no longer matches the planned config is not taken: the job runs here.
    changed = write_suite(
        tmp_path / "changed.yaml",
        store,
        tmp_path / "changed",
        reuse=[str(board_out)],
        set=["run.device=cpu", "run.deterministic=true", "method.train.iterations=5"],
    )
    code, out, _ = sweep(capsys, changed, "--dry-run")
    assert code == 0 and "0 of 2 jobs already done" in " ".join(out.split())

    own = write_suite(tmp_path / "own.yaml", store, board_out, reuse=[str(board_out)])
    code, _, err = sweep(capsys, own, "--dry-run")
    assert code == 2 and "'reuse' lists the suite's own output root" in err
