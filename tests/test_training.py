"""The training engine behind `mmbench run`: selection on validation, reproducibility, resume after a
real SIGKILL, Ctrl-C, divergence, disk-full, smoke runs, --checkpoint, and two-process DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.records import read_record

# what a finished run leaves in its folder (docs/training.md, "Files")
RUN_FILES = {"result.json", "best.ckpt", "last.ckpt", "train_log.jsonl", "train_time.json", "status.json"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("train") / "s.h5", SyntheticConfig(tiles=12, size=64))


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def records(root):
    return sorted(root.rglob("result.json"))


def matrices(record):
    return [s["confusion_matrix"] for s in record["scenarios"]]


def run_args(store, out, *extra, method="tiny-trainable", protocol="last1"):
    return ["run", method, "-p", protocol, "-d", str(store), "--out", str(out), "--deterministic", *extra]


def subprocess_run(args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mmbench", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_training_selects_on_validation_and_writes_a_record(capsys, tmp_path, store, tiny_methods):
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs"))
    assert code == 0, err
    (path,) = records(tmp_path / "runs")
    record = read_record(path)
    checkpoint = record["method"]["checkpoint"]
    assert checkpoint["selected_step"] in (4, 8, 12)
    assert "validation" in checkpoint["selection"] and checkpoint["effective_batch_size"] == 4
    assert record["timing"]["train_s"] > 0 and record["smoke"] is False
    run_dir = path.parent
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
    events = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "val"] == [4, 8, 12]
    assert [e["step"] for e in events if e["event"] == "train"] == [2, 4, 6, 8, 10, 12]
    best = max((e for e in events if e["event"] == "val"), key=lambda e: e["score"])
    assert best["step"] == checkpoint["selected_step"] and best["score"] == checkpoint["best_val_score"]
    assert events[-1]["event"] == "test"


def test_the_same_seed_trains_to_the_same_numbers(capsys, tmp_path, store, tiny_methods):
    for name in ("a", "b"):
        assert cli(capsys, *run_args(store, tmp_path / name, "--seed", "3"))[0] == 0
    first, second = (read_record(records(tmp_path / name)[0]) for name in ("a", "b"))
    assert matrices(first) == matrices(second)
    assert cli(capsys, *run_args(store, tmp_path / "c", "--seed", "4"))[0] == 0
    assert matrices(read_record(records(tmp_path / "c")[0])) != matrices(first)


def test_data_loader_workers_do_not_change_the_numbers(capsys, tmp_path, store, tiny_methods):
    assert cli(capsys, *run_args(store, tmp_path / "zero"))[0] == 0
    assert (
        cli(
            capsys,
            *run_args(
                store,
                tmp_path / "two",
                "--set",
                "method.train.num_workers=2",
                "--set",
                "method.train.accumulate=2",
                "--set",
                "method.train.batch_size=2",
            ),
        )[0]
        == 0
    )
    assert (
        cli(
            capsys,
            *run_args(
                store, tmp_path / "acc", "--set", "method.train.accumulate=2", "--set", "method.train.batch_size=2"
            ),
        )[0]
        == 0
    )
    workers, single = (read_record(records(tmp_path / name)[0]) for name in ("two", "acc"))
    assert matrices(workers) == matrices(single)
    assert workers["method"]["checkpoint"]["effective_batch_size"] == 4


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_numbers(tmp_path, store, tiny_methods):
    args = run_args(store, tmp_path / "runs", "--set", "method.train.iterations=16")
    killed = subprocess_run(args, {"MMBENCH_TEST_KILL_AT_STEP": "9"})
    assert killed.returncode == -9, killed.stderr
    assert records(tmp_path / "runs") == []
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("last.ckpt")]
    resumed = subprocess_run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    (path,) = records(tmp_path / "runs")
    assert path.parent == run_dir
    logged = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    train_steps = [entry["step"] for entry in logged if entry["event"] == "train"]
    assert train_steps == list(range(2, 17, 2)), "the resumed log must not repeat steps"
    uninterrupted = subprocess_run(run_args(store, tmp_path / "straight", "--set", "method.train.iterations=16"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    a, b = read_record(path), read_record(records(tmp_path / "straight")[0])
    assert matrices(a) == matrices(b)
    assert a["aggregate"] == b["aggregate"]
    assert a["method"]["checkpoint"]["selected_step"] == b["method"]["checkpoint"]["selected_step"]
    # the validation curve survives the kill (it is part of the saved training state)
    for key in ("total_steps", "validation_curve"):
        assert a["method"]["checkpoint"][key] == b["method"]["checkpoint"][key], key
    assert [point["step"] for point in a["method"]["checkpoint"]["validation_curve"]] == [4, 8, 12, 16]
    # train_s covers both segments: the killed one's seconds up to its checkpoint, noted beside it
    timing = a["timing"]
    assert timing["resumed_at_step"] in (4, 8) and "resumed_at_step" not in b["timing"]
    assert timing["train_s"] > timing["segment_train_s"] > 0
    notes = json.loads((run_dir / "train_time.json").read_text())["train_s_at_step"]
    assert str(timing["resumed_at_step"]) in notes and "16" in notes


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, store, tiny_methods):
    args = run_args(store, tmp_path / "runs")
    interrupted = subprocess_run(args, {"MMBENCH_TEST_INTERRUPT_AT_STEP": "6"})
    assert interrupted.returncode == 130
    assert "interrupted at step 6; continue with the same command and --resume" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    assert records(tmp_path / "runs") == [] and list((tmp_path / "runs").rglob("last.ckpt"))
    assert subprocess_run([*args, "--resume"]).returncode == 0
    assert len(records(tmp_path / "runs")) == 1


def test_resume_needs_an_unfinished_run_with_the_same_config(capsys, tmp_path, store, tiny_methods):
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", "--resume"))
    assert code == 2 and "nothing to resume" in err


def test_divergence_names_the_step_and_term_and_keeps_the_last_checkpoint(capsys, tmp_path, store, tiny_methods):
    code, _, err = cli(
        capsys, *run_args(store, tmp_path / "runs", "--set", "method.nan_at_step=6", method="tiny-diverging")
    )
    assert code == 2
    (error,) = [line for line in err.splitlines() if line.startswith("mmbench")]  # progress lines may precede it
    assert "loss term 'loss' is nan at step 6" in error
    assert records(tmp_path / "runs") == []
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    from mmbench.engine.checkpoint import load_checkpoint

    assert load_checkpoint(last)["state"]["step"] == 4


def test_a_full_disk_is_a_clear_error_and_the_previous_checkpoint_survives(
    capsys, tmp_path, store, tiny_methods, monkeypatch
):
    import mmbench.engine.resume as resume

    original = resume.save_checkpoint
    calls = {"count": 0}

    def failing(path, **kwargs):
        calls["count"] += 1
        if calls["count"] > 2:
            raise OSError(28, "No space left on device")
        return original(path, **kwargs)

    monkeypatch.setattr(resume, "save_checkpoint", failing)
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs"))
    assert code == 2
    assert "cannot write checkpoint" in err and "No space left on device" in err and "--resume" in err
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    from mmbench.engine.checkpoint import load_checkpoint

    assert load_checkpoint(last)["state"]["step"] == 4
    assert not list((tmp_path / "runs").rglob(".*.tmp"))


def test_smoke_runs_are_marked(capsys, tmp_path, store, tiny_methods):
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", "--smoke"))
    assert code == 0, err
    record = read_record(records(tmp_path / "runs")[0])
    assert record["smoke"] is True
    assert sum(sum(row) for row in record["scenarios"][0]["confusion_matrix"]) == 2 * 64 * 64


def test_checkpoint_flag_skips_training(capsys, tmp_path, store, tiny_methods):
    assert cli(capsys, *run_args(store, tmp_path / "train"))[0] == 0
    (best,) = (tmp_path / "train").rglob("best.ckpt")
    code, _, err = cli(capsys, *run_args(store, tmp_path / "eval", "--checkpoint", str(best), protocol="subsets"))
    assert code == 0, err
    record = read_record(records(tmp_path / "eval")[0])
    assert len(record["scenarios"]) == 7 and "train_s" not in record["timing"]
    code, _, err = cli(capsys, *run_args(store, tmp_path / "eval2", "--checkpoint", str(best), method="tiny-fusion"))
    assert code == 2 and "holds method 'tiny-trainable', not 'tiny-fusion'" in err


def test_a_run_reads_its_dataset_facts_and_fingerprints_the_store_once(
    capsys, tmp_path, store, tiny_methods, monkeypatch
):
    """Training, validation, the final evaluation, the checkpoint and the record share one `DatasetFacts`;
    `mmbench eval` reads them once too, for the fit check and the evaluation."""
    import mmbench.context as context

    hashed, read = [], []
    original_hash, original_read = context.file_sha256, context.DatasetFacts.from_store.__func__

    def counting_hash(path, *args, **kwargs):
        hashed.append(path)
        return original_hash(path, *args, **kwargs)

    def counting_read(cls, path, **kwargs):
        read.append(path)
        return original_read(cls, path, **kwargs)

    monkeypatch.setattr(context, "file_sha256", counting_hash)
    monkeypatch.setattr(context.DatasetFacts, "from_store", classmethod(counting_read))
    code, _, err = cli(capsys, *run_args(store, tmp_path / "train", "--smoke"))
    assert code == 0, err
    assert [Path(p).resolve() for p in hashed + read] == [store.resolve()] * 2
    (path,) = records(tmp_path / "train")
    record = read_record(path)
    (best,) = path.parent.glob("best.ckpt")
    from mmbench.engine.checkpoint import load_checkpoint

    trained_on = load_checkpoint(best)["dataset"]
    assert record["dataset"]["fingerprint"] == trained_on["fingerprint"] == original_hash(store)
    assert trained_on["modalities"] == {"optical": 3, "dsm": 1, "sar": 1} and trained_on["ignore_index"] == 255
    hashed.clear()
    read.clear()
    argv = ["eval", str(best), "--protocol", "subsets", "--dataset", str(store), "--out", str(tmp_path / "eval")]
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    assert [Path(p).resolve() for p in hashed + read] == [store.resolve()] * 2


@pytest.mark.slow
def test_two_process_ddp_on_cpu_matches_one_process(tmp_path, store, tiny_methods):
    """torchrun with gloo: each rank takes half of every step's batch; gradients are averaged."""
    single = subprocess_run(run_args(store, tmp_path / "one", "--set", "method.train.iterations=8"))
    assert single.returncode == 0, single.stderr
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmbench",
        *run_args(store, tmp_path / "two", "--set", "method.train.iterations=8"),
    ]
    result = subprocess.run(launch, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = records(tmp_path / "two")
    distributed, reference = read_record(path), read_record(records(tmp_path / "one")[0])
    assert distributed["method"]["checkpoint"]["world_size"] == 2
    assert sum(sum(row) for row in distributed["scenarios"][0]["confusion_matrix"]) == 2 * 64 * 64
    # Same data, same global batch; only floating-point summation order differs (no BatchNorm in this model).
    for mine, theirs in zip(distributed["scenarios"], reference["scenarios"], strict=True):
        assert mine["metrics"]["miou"] == pytest.approx(theirs["metrics"]["miou"], abs=0.02)
    # rank 1 wrote nothing extra (status.json and train_time.json are rank 0's)
    assert {p.name for p in path.parent.iterdir()} == RUN_FILES
