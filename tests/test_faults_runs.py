"""Fault cases of issue 19, area "runs": run folders, checkpoints, `--resume`, signals, locks, write failures.

Each case runs `mmbench run`/`mmbench eval` as a user would and is classified by tests/faults.py. The runs
train the tiny-trainable method of tests/tiny_methods.py for 8 steps (validation and `last.ckpt` every 4,
a log line every 2) on an 8-tile synthetic store; the run folders the cases start from are made once per
module and copied. Subprocesses only where a real signal or a second process is the point of the case.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from faults import Result, expect_clean, hidden_temporaries, run_in_process, run_subprocess

from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.records import read_record

AREA = "runs"
SMALL = (
    "method.train.iterations=8",
    "method.train.crop_size=16",
    "method.train.batch_size=2",
    "method.train.val_tiles=1",
)


# ---------------------------------------------------------------------------------------------- helpers
def run_args(store: Path, out: Path, *extra: str, method: str = "tiny-trainable") -> list[str]:
    settings = [item for setting in SMALL for item in ("--set", setting)]
    return ["run", method, "-p", "last1", "-d", str(store), "--out", str(out), "--deterministic", *settings]


def run_args_extra(store: Path, out: Path, *extra: str, method: str = "tiny-trainable") -> list[str]:
    return [*run_args(store, out, method=method), *extra]


def run_dirs(out: Path) -> list[Path]:
    return sorted(path for path in out.glob("*/*/*/*") if path.is_dir())


def records(out: Path) -> list[Path]:
    return sorted(out.rglob("result.json"))


def matrices(record_path: Path) -> list:
    return [scenario["confusion_matrix"] for scenario in read_record(record_path)["scenarios"]]


def status(run_dir: Path) -> dict:
    path = run_dir / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def unmarked(out: Path) -> list[Path]:
    """Run folders with neither a record nor a status file: nobody can tell what they are."""
    return [d for d in run_dirs(out) if not (d / "result.json").exists() and not (d / "status.json").exists()]


def train_steps(run_dir: Path) -> list[int]:
    lines = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [entry["step"] for entry in lines if entry["event"] == "train"]


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[bool]:
    """A small tmpfs on `folder` (True), or False where mounting is not permitted (the case then injects)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = (
        shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)


class SignalReachedTheTest(Exception):
    pass


@contextlib.contextmanager
def signal_guard() -> Iterator[None]:
    """While mmbench runs in this process, SIGINT/SIGTERM that mmbench does not handle itself raise here
    instead of ending pytest (mmbench replaces these handlers while it trains and restores them after)."""

    def escaped(signum: int, frame: object) -> None:
        raise SignalReachedTheTest(f"signal {signum} was not handled by mmbench")

    previous = {signum: signal.signal(signum, escaped) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Iterator[None]:
    """tests/tiny_methods.py registered for the whole module (the `tiny_methods` fixture is per test)."""
    from conftest import _put_on_path
    from plugin_factory import make_distribution

    root = make_distribution(
        tmp_path_factory.mktemp("tiny-site"),
        "mmb-tiny-methods",
        {
            "mmbench.methods": {
                "tiny-trainable": "tiny_methods:TRAINABLE_SPEC",
                "tiny-diverging": "tiny_methods:DIVERGING_SPEC",
            }
        },
        None,
        "1.0.0",
    )
    with pytest.MonkeyPatch.context() as patch:
        _put_on_path(root, patch)
        here = str(Path(__file__).parent)
        patch.setenv("PYTHONPATH", here + os.pathsep + os.environ["PYTHONPATH"])
        patch.setenv("COLUMNS", "200")
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("store-a") / "s.h5", SyntheticConfig(tiles=8, size=64))


@pytest.fixture(scope="module")
def other_store(tmp_path_factory) -> Path:
    """Another store with the same file name (so the same run folder), other contents."""
    return write_synthetic(tmp_path_factory.mktemp("store-b") / "s.h5", SyntheticConfig(tiles=8, size=64, seed=1))


def _main(*argv: str) -> int:
    from mmbench.cli.main import main
    from mmbench.registry import refresh_all

    refresh_all()
    return main([str(arg) for arg in argv])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, registered, store) -> Path:
    """The uninterrupted run's record: what every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    assert _main(*run_args(store, out)) == 0
    (path,) = records(out)
    return path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, registered, store) -> Path:
    """A run stopped by Ctrl-C after step 6: `last.ckpt` at step 6, `best.ckpt` at step 4 (the only validation)."""
    out = tmp_path_factory.mktemp("interrupted")
    with env(MMBENCH_TEST_INTERRUPT_AT_STEP="6"):
        assert _main(*run_args(store, out)) == 130
    (run_dir,) = run_dirs(out)
    return out


def copy_of(source: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a module run tree and its one run folder."""
    out = tmp_path / "runs"
    shutil.copytree(source, out)
    (run_dir,) = run_dirs(out)
    return out, run_dir


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# ------------------------------------------------------------------ case 1: resume must match what it continues
def _retag_method_version(run_dir: Path) -> None:
    for name in ("last.ckpt", "best.ckpt"):
        payload = torch.load(run_dir / name, weights_only=True)
        payload["method"]["version"] = "0.9"
        torch.save(payload, run_dir / name)


MISMATCHES = [
    # (case id, how the resume differs, fragments the one error line names)
    ("resume-other-store-same-name", "store", ["fingerprint", "s.h5", "--resume"]),
    ("resume-other-config", "config", ["method.train.lr", "0.02"]),
    ("resume-other-method-version", "version", ["method version", "0.9"]),
]


@pytest.mark.parametrize(("case", "change", "names"), MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_resume_refuses_what_does_not_match(
    capsys, tmp_path, registered, store, other_store, interrupted, case, change, names
):
    out, run_dir = copy_of(interrupted, tmp_path)
    dataset, extra = store, []
    if change == "store":
        dataset = other_store
    elif change == "config":
        extra = ["--set", "method.train.lr=0.02"]
    else:
        _retag_method_version(run_dir)
    result = run_in_process(capsys, *run_args_extra(dataset, out, "--resume", *extra))
    expect_clean(case, AREA, result, expect_code=2, names=names, leftovers=records(out))


# --------------------------------------------------- case 2: a failed run is marked and never offered to --resume
def test_a_failed_run_is_marked_failed_and_not_resumed(capsys, tmp_path, registered, store):
    out = tmp_path / "runs"
    args = run_args_extra(store, out, "--set", "method.nan_at_step=6", method="tiny-diverging")
    failed = run_in_process(capsys, *args)
    expect_clean("failed-run-marked", AREA, failed, names=["loss term", "step 6"], leftovers=unmarked(out))
    (run_dir,) = run_dirs(out)
    assert status(run_dir).get("state") == "failed" and "loss term" in status(run_dir).get("error", "")
    again = run_in_process(capsys, *args, "--resume")
    expect_clean("failed-run-not-resumed", AREA, again, names=["nothing to resume", "failed"])


def test_divergence_before_any_checkpoint_names_none(capsys, tmp_path, registered, store):
    out = tmp_path / "runs"
    args = run_args_extra(store, out, "--set", "method.nan_at_step=2", method="tiny-diverging")
    result = run_in_process(capsys, *args)
    names = ["loss term", "step 2", "no checkpoint was written"]
    expect_clean("diverged-before-first-checkpoint", AREA, result, names=names, leftovers=run_dirs(out))
    assert "last good checkpoint" not in result.err


# ------------------ case 3 (and 4): a corrupt checkpoint neither blocks other runs nor stops its own; stale .tmp
def test_corrupt_last_checkpoint_falls_back_to_best(capsys, tmp_path, registered, store, interrupted, straight):
    out, run_dir = copy_of(interrupted, tmp_path)
    truncate(run_dir / "last.ckpt")
    result = run_in_process(capsys, *run_args_extra(store, out, "--resume"))
    expect_clean("corrupt-last-falls-back-to-best", AREA, result, expect_code=0, leftovers=hidden_temporaries(out))
    notes = [line for line in result.err.splitlines() if "best.ckpt" in line]
    assert len(notes) == 1 and "last.ckpt" in notes[0] and "step 4" in notes[0], result.err
    assert train_steps(run_dir) == [2, 4, 6, 8], "the resumed log must not repeat steps"
    assert matrices(run_dir / "result.json") == matrices(straight)


def test_a_corrupt_run_of_another_config_does_not_block_resume(capsys, tmp_path, registered, store, interrupted):
    """Also case 4: a checkpoint temporary a kill left in the resumed folder is gone afterwards."""
    out, run_dir = copy_of(interrupted, tmp_path)
    corrupt = run_dir.parent / "29991231T000000Z-s0-ffffff"  # sorts newest
    shutil.copytree(run_dir, corrupt)
    for name in ("last.ckpt", "best.ckpt"):
        truncate(corrupt / name)
    (run_dir / ".last.ckpt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    result = run_in_process(capsys, *run_args_extra(store, out, "--resume"))
    expect_clean("corrupt-other-run-does-not-block", AREA, result, expect_code=0)
    assert (run_dir / "result.json").exists() and not (corrupt / "result.json").exists()
    expect_clean("stale-tmp-removed", AREA, result, expect_code=0, leftovers=hidden_temporaries(run_dir))


# ------------------------------------------------------------- case 5/10: one process per run folder (a lock)
def test_a_second_resume_is_locked_out(capsys, tmp_path, registered, store, interrupted):
    out, run_dir = copy_of(interrupted, tmp_path)
    hold = tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, "-m", "mmbench", *run_args_extra(store, out, "--resume")],
        env={**os.environ, "MMBENCH_TEST_HOLD_AT_STEP": "7", "MMBENCH_TEST_HOLD_FILE": str(hold)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reached = Path(f"{hold}.held")
        for _ in range(2400):  # the first process says when it holds the folder; no timing is asserted
            if reached.exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert reached.exists(), first.communicate()[1] if first.poll() is not None else "first resume never held"
        second = run_in_process(capsys, *run_args_extra(store, out, "--resume"))
    finally:
        hold.touch()
        stdout, stderr = first.communicate(timeout=240)
    expect_clean(
        "concurrent-resume-locked-out", AREA, second, names=["in use by process", str(first.pid), str(run_dir)]
    )
    expect_clean("concurrent-resume-first-finishes", AREA, Result(first.returncode, stdout, stderr), expect_code=0)
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) and train_steps(run_dir) == [2, 4, 6, 8]


# --------------------------------------------------------------------------------- case 6: write failures
def _chained_failing_torch_save(after: int):
    """torch.save as it fails on a full disk: RuntimeError (inline_container.cc) raised while handling ENOSPC."""
    real, calls = torch.save, {"n": 0}

    def save(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            handle.write(b"PK partial")
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:  # noqa: TRY203 - keep the implicit context, as torch does
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
        return real(obj, handle, *args, **kwargs)

    return save


WRITE_FAILURES = [
    # (case id, saves that succeed first, fragments): best@4 and last@4 succeed, the third save fails
    ("disk-full-during-training", 2, ["cannot write checkpoint", "No space left on device", "--resume"]),
    ("disk-full-first-checkpoint", 0, ["cannot write checkpoint", "No space left on device", "no checkpoint"]),
]


@pytest.mark.parametrize(("case", "after", "names"), WRITE_FAILURES, ids=[w[0] for w in WRITE_FAILURES])
def test_a_full_disk_during_training_is_one_line(capsys, tmp_path, monkeypatch, registered, store, case, after, names):
    out = tmp_path / "runs"
    monkeypatch.setattr(torch, "save", _chained_failing_torch_save(after))
    result = run_in_process(capsys, *run_args(store, out))
    expect_clean(case, AREA, result, names=names, leftovers=hidden_temporaries(out) + unmarked(out))
    if after:
        (run_dir,) = run_dirs(out)
        assert status(run_dir).get("state") == "interrupted", "a write failure stays resumable"
    else:
        assert "intact" not in result.err and not any(out.rglob("*")), "no checkpoint yet: nothing to keep or resume"


def test_a_real_full_disk_then_resume_after_freeing_space(capsys, tmp_path, registered, store, straight, interrupted):
    """A tmpfs that holds the set-up (status, lock, log: a page each) and both step-4 checkpoints but not a
    third: the step-8 write fails for real (torch.save's RuntimeError over ENOSPC); grown, the run resumes to
    the uninterrupted result."""
    checkpoint = (run_dirs(interrupted)[0] / "last.ckpt").stat().st_size
    size = 4096 * -(-(16_384 + 5 * checkpoint // 2) // 4096)
    folder = tmp_path / "full"
    with tmpfs(folder, f"size={size}") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here; the injected full-disk cases cover this")
        out = folder / "runs"
        result = run_in_process(capsys, *run_args(store, out))
        names = ["cannot write checkpoint", "No space left on device", "--resume"]
        expect_clean("disk-full-real-tmpfs", AREA, result, names=names, leftovers=hidden_temporaries(out))
        (run_dir,) = run_dirs(out)
        assert status(run_dir).get("state") == "interrupted"
        subprocess.run(["mount", "-o", "remount,size=2m", str(folder)], check=True)
        resumed = run_in_process(capsys, *run_args_extra(store, out, "--resume"))
        expect_clean("disk-full-real-tmpfs-resumed", AREA, resumed, expect_code=0, leftovers=hidden_temporaries(out))
        assert matrices(run_dir / "result.json") == matrices(straight)
        assert train_steps(run_dir) == [2, 4, 6, 8]


def test_the_record_write_failing_is_one_line(capsys, tmp_path, monkeypatch, registered, store):
    import mmbench.runs.execution as execution

    def full(record, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    out = tmp_path / "runs"
    monkeypatch.setattr(execution, "write_record", full)
    result = run_in_process(capsys, *run_args(store, out))
    expect_clean(
        "record-write-fails", AREA, result, names=["run record", "No space left", "--resume"], leftovers=unmarked(out)
    )


def test_too_little_disk_space_is_refused_before_training(capsys, tmp_path, monkeypatch, registered, store):
    folder = tmp_path / "small"
    with tmpfs(folder, "size=8k") as mounted:
        if not mounted:
            import mmbench.engine.trainer as trainer

            monkeypatch.setattr(trainer, "free_bytes", lambda path: 4096)
        result = run_in_process(capsys, *run_args(store, folder / "runs"))
        expect_clean(
            "disk-space-precheck",
            AREA,
            result,
            names=["disk space", str(folder)],
            leftovers=hidden_temporaries(folder) + unmarked(folder / "runs"),
        )
        assert "step" not in result.err  # refused before training


# ------------------------------------------------------------------------ case 7: --out that cannot be written
def test_out_on_a_read_only_filesystem(capsys, tmp_path, monkeypatch, registered, store):
    folder = tmp_path / "ro"
    with tmpfs(folder, "ro,size=1m") as mounted:
        if not mounted:
            import mmbench.runs.run_dir as run_dir_module

            def read_only(path):
                raise OSError(errno.EROFS, "Read-only file system", str(path))

            monkeypatch.setattr(run_dir_module, "probe_writable", read_only)
        result = run_in_process(capsys, *run_args(store, folder / "runs"))
    expect_clean("out-read-only", AREA, result, names=["--out", str(folder), "Read-only"])


@pytest.mark.parametrize("command", ["run", "eval"])
def test_out_naming_a_file(capsys, tmp_path, registered, store, interrupted, command):
    target = tmp_path / "notes.txt"
    target.write_text("not a folder\n")
    if command == "run":
        result = run_in_process(capsys, *run_args(store, target))
    else:
        best = run_dirs(interrupted)[0] / "best.ckpt"
        result = run_in_process(capsys, "eval", best, "-p", "last1", "-d", store, "--out", target)
    expect_clean(f"{command}-out-is-a-file", AREA, result, names=["--out", str(target), "not a folder"])
    assert target.read_text() == "not a folder\n"


# ------------------------------------------------------------------------------ case 8: messages about checkpoints
def test_a_directory_given_as_checkpoint(capsys, tmp_path, registered, store, interrupted):
    folder = run_dirs(interrupted)[0]
    evaluated = run_in_process(capsys, "eval", folder, "-p", "last1", "-d", store, "--out", tmp_path / "e")
    expect_clean("eval-checkpoint-is-a-directory", AREA, evaluated, names=[str(folder), "is a directory", ".ckpt"])
    flagged = run_in_process(
        capsys, "run", "tiny-trainable", "-p", "last1", "-d", store, "--checkpoint", folder, "--out", tmp_path / "r"
    )
    expect_clean("run-checkpoint-is-a-directory", AREA, flagged, names=[str(folder), "is a directory", ".ckpt"])


def _drop_modality(source: Path, target: Path, name: str, extra: str | None = None) -> None:
    """A checkpoint as if trained without modality `name` (its encoder removed), or with one more, `extra`."""
    payload = torch.load(source, weights_only=True)
    modalities = dict(payload["dataset"]["modalities"])
    modalities.pop(name)
    payload["model"] = {key: value for key, value in payload["model"].items() if f"encoders.{name}." not in key}
    if extra is not None:
        modalities[extra] = 1
    payload["dataset"]["modalities"] = modalities
    torch.save(payload, target)


def test_modality_mismatch_hint_works(capsys, tmp_path, registered, store, interrupted):
    best = run_dirs(interrupted)[0] / "best.ckpt"
    # trained on a modality this store lacks: no protocol setting can help, and the message must not say it can
    lacking = tmp_path / "lacking.ckpt"
    _drop_modality(best, lacking, "sar", extra="nir")
    result = run_in_process(capsys, "eval", lacking, "-p", "last1", "-d", store, "--out", tmp_path / "a")
    expect_clean("eval-modality-the-store-lacks", AREA, result, names=["nir", "lacks"])
    assert "protocol.modalities" not in result.err
    # trained on fewer modalities than the store has: the hint names the setting, and following it works
    fewer = tmp_path / "fewer.ckpt"
    _drop_modality(best, fewer, "sar")
    result = run_in_process(capsys, "eval", fewer, "-p", "last1", "-d", store, "--out", tmp_path / "b")
    expect_clean("eval-modality-subset-hint", AREA, result, names=["protocol.modalities=[optical,dsm]"])
    hint = result.error_lines()[0].split("--set ")[1].split()[0].rstrip(";")
    followed = run_in_process(capsys, "eval", fewer, "-p", "last1", "-d", store, "--out", tmp_path / "b", "--set", hint)
    expect_clean("eval-modality-hint-followed", AREA, followed, expect_code=0)


# ------------------------------------------------------------ case 9: signals at a few steps, then --resume
SIGNALS = [
    # (case id, hook, step, exit code of the signalled run, in a subprocess)
    ("kill-9-at-step-5", "MMBENCH_TEST_KILL_AT_STEP", "5", -9, True),
    ("sigterm-at-step-3", "MMBENCH_TEST_TERMINATE_AT_STEP", "3", 143, False),
    ("sigint-at-step-7", "MMBENCH_TEST_INTERRUPT_AT_STEP", "7", 130, False),
]


@pytest.mark.parametrize(("case", "hook", "step", "code", "subprocess_"), SIGNALS, ids=[s[0] for s in SIGNALS])
def test_signals_then_resume_reproduce_the_uninterrupted_run(
    capsys, tmp_path, registered, store, straight, case, hook, step, code, subprocess_
):
    out = tmp_path / "runs"
    if subprocess_:
        stopped = run_subprocess(run_args(store, out), env={hook: step})
    else:  # a real signal to this process; the guard fails the test, not the test run, if mmbench ignores it
        with env(**{hook: step}), signal_guard():
            stopped = run_in_process(capsys, *run_args(store, out))
    hinted = code == -9 or "--resume" in stopped.err
    expect_clean(f"{case}-stops", AREA, stopped, expect_code=code, signalled=True)
    assert stopped.code == code and hinted, stopped.err
    (run_dir,) = run_dirs(out)
    if code != -9:
        assert not hidden_temporaries(out) and status(run_dir).get("state") == "interrupted"
    resumed = run_in_process(capsys, *run_args_extra(store, out, "--resume"))
    leftovers = hidden_temporaries(out) + [p for p in [run_dir / ".lock"] if p.exists()]
    expect_clean(f"{case}-resumes", AREA, resumed, expect_code=0, leftovers=leftovers)
    assert status(run_dir).get("state") == "finished"
    assert train_steps(run_dir) == [2, 4, 6, 8]
    assert matrices(run_dir / "result.json") == matrices(straight)
