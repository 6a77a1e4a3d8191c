"""Progress outside a terminal (issue 20): plain lines on stderr every N steps or M seconds with step, loss,
steps/s, ETA and the best validation score, a line per validation and per evaluated scenario, `--quiet`
silencing them; the rich bar's fields on a (fake) terminal; the time trigger driven by an injected clock.

capsys's stderr is not a terminal, so an in-process `main()` run prints what a nohup'd or CI run prints."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from mmbench import progress
from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.progress import Cadence, TrainingProgress, progress_bar, quieted
from mmbench.records import read_record

STEP_LINE = re.compile(
    r"^train tiny-trainable step (?P<step>\d+)/12 loss (?P<loss>\d+\.\d{4}) (?P<rate>\d+\.\d\d) steps/s "
    r"eta (?P<eta>[0-9.hms]+)(?P<best> best val \d+\.\d% \(step (?P<best_step>\d+)\))?$"
)
VAL_LINE = re.compile(r"^val step (?P<step>\d+): score \d+\.\d%( \(best( \d+\.\d% at step \d+)?\))?$")
EVAL_LINE = re.compile(r"^eval last1 \(test\): (?P<scenario>.+) mIoU \d+\.\d%$")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("progress") / "s.h5", SyntheticConfig(tiles=12, size=64))


@pytest.fixture
def every_five_steps(monkeypatch):
    """Lines by the step trigger only: what a test sees cannot depend on how fast this machine is."""
    monkeypatch.setenv(progress.STEPS_VARIABLE, "5")
    monkeypatch.setenv(progress.SECONDS_VARIABLE, "0")
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)


def run_args(store, out, *extra):
    return ["run", "tiny-trainable", "-p", "last1", "-d", str(store), "--out", str(out), "--deterministic", *extra]


def progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("train ", "val ", "eval ", "evaluating "))]


def test_a_run_without_a_terminal_prints_step_validation_and_evaluation_lines(
    capsys, tmp_path, store, tiny_methods, every_five_steps
):
    code = main(run_args(store, tmp_path / "runs"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.err.splitlines()
    assert "train tiny-trainable: 12 steps" in lines
    steps = [STEP_LINE.match(line) for line in lines if line.startswith("train tiny-trainable step")]
    assert all(steps), lines
    assert [int(m["step"]) for m in steps] == [5, 10, 12]  # every 5 steps, and the last one
    vals = [VAL_LINE.match(line) for line in lines if line.startswith("val ")]
    assert all(vals) and [int(m["step"]) for m in vals] == [4, 8, 12], lines
    # every step line comes after a validation (at 4) and carries the best score so far, with its step
    assert [int(m["best_step"]) <= int(m["step"]) - 1 for m in steps if m["best"]] == [True, True, True], lines
    record = read_record(next(tmp_path.rglob("result.json")))
    best_step = record["method"]["checkpoint"]["selected_step"]
    assert [line for line in lines if line.startswith(f"val step {best_step}:")][0].endswith("(best)")
    assert int(steps[-1]["best_step"]) in (4, 8) and int(steps[-1]["best_step"]) <= best_step
    evals = [EVAL_LINE.match(line) for line in lines if line.startswith("eval ")]
    assert all(evals) and [m["scenario"] for m in evals] == [s["name"] for s in record["scenarios"]]
    # the test evaluation comes after the last validation
    assert max(lines.index(m.string) for m in vals) < min(lines.index(m.string) for m in evals)
    assert not progress_lines(captured.out), "stdout stays for results"
    assert not any(line.startswith("mmbench") for line in progress_lines(captured.err))


def test_quiet_silences_every_progress_line_but_not_errors(capsys, tmp_path, store, tiny_methods, every_five_steps):
    code = main([*run_args(store, tmp_path / "runs"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert progress_lines(captured.err) == [] and "done in" not in captured.err, captured.err
    assert os.environ.get(progress.QUIET_VARIABLE) is None, "--quiet is undone when the command returns"
    # -q before the command too; an error still prints its one line
    code = main(["-q", *run_args(store, tmp_path / "bad"), "--set", "method.train.crop_size=640"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mmbench run: error:"), err


def test_lines_are_written_while_the_run_goes_on(tmp_path, store, tiny_methods, every_five_steps):
    """A real process with stderr in a file (no terminal): when it holds after step 10, the lines up to step
    10 are already in the file, as `tail -f` on a SLURM log would show them."""
    hold = tmp_path / "release"
    log = tmp_path / "stderr.log"
    env = {**os.environ, "MMBENCH_TEST_HOLD_AT_STEP": "10", "MMBENCH_TEST_HOLD_FILE": str(hold)}
    with log.open("w") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "mmbench", *run_args(store, tmp_path / "runs")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            for _ in range(2400):  # no timing is asserted: wait until the child says it holds
                if Path(f"{hold}.held").exists() or child.poll() is not None:
                    break
                time.sleep(0.1)
            assert Path(f"{hold}.held").exists(), log.read_text()
            so_far = log.read_text().splitlines()
        finally:
            hold.touch()
            out, _ = child.communicate(timeout=240)
    assert child.returncode == 0, log.read_text()
    assert [line.split()[3] for line in so_far if line.startswith("train tiny-trainable step")] == ["5/12", "10/12"]
    assert [line.split(":")[0] for line in so_far if line.startswith("val ")] == ["val step 4", "val step 8"]
    assert not progress_lines(out)
    assert [m for m in map(EVAL_LINE.match, log.read_text().splitlines()) if m]


# -- the time trigger, the pause, the bar: driven by an injected clock, no sleeping ----------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def not_a_terminal() -> Console:
    return Console(file=io.StringIO())


def test_the_time_trigger_prints_a_line_every_m_seconds_before_n_steps(capsys, monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    clock = FakeClock()
    every = Cadence(steps=50, seconds=30)
    with TrainingProgress("m", 100, console=not_a_terminal(), clock=clock, every=every) as bar:
        for step in range(1, 21):
            clock.now += 4.0  # 4 s per step: 30 s pass before 50 steps
            bar.step(step, loss=float(step))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "train m: 100 steps"
    # 30 s after the start: step 8 (32 s); 32 s after that: step 16
    assert [line.split()[3] for line in lines[1:]] == ["8/100", "16/100"]
    assert lines[1] == "train m step 8/100 loss 4.5000 0.25 steps/s eta 6m08s"  # mean of losses 1..8
    assert lines[2].startswith("train m step 16/100 loss 12.5000 0.25 steps/s eta 5m36s")


def test_the_step_trigger_and_the_last_step_and_a_validation(capsys, monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    clock = FakeClock()
    with TrainingProgress("m", 7, console=not_a_terminal(), clock=clock, every=Cadence(steps=3, seconds=0)) as bar:
        for step in range(1, 8):
            clock.now += 0.5
            bar.step(step, loss=1.0)
            if step == 3:
                with bar.paused():
                    clock.now += 100.0  # a validation: not training time
                bar.validated(3, 0.4123, 0.4123, 3)
            if step == 6:
                bar.validated(6, 0.30, 0.4123, 3)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "train m: 7 steps",
        "train m step 3/7 loss 1.0000 2.00 steps/s eta 2.0s",
        "val step 3: score 41.2% (best)",
        "train m step 6/7 loss 1.0000 2.00 steps/s eta 0.5s best val 41.2% (step 3)",
        "val step 6: score 30.0% (best 41.2% at step 3)",
        "train m step 7/7 loss 1.0000 2.00 steps/s eta 0.0s best val 41.2% (step 3)",
    ]


def test_a_resumed_run_starts_its_count_and_its_best_from_the_checkpoint(capsys, monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    clock = FakeClock()
    every = Cadence(steps=2, seconds=0)
    with TrainingProgress(
        "m", 10, start_step=6, best=(0.5, 4), console=not_a_terminal(), clock=clock, every=every
    ) as bar:
        for step in range(7, 9):
            clock.now += 1.0
            bar.step(step, loss=2.0)
    assert capsys.readouterr().err.splitlines() == [
        "train m: 10 steps, from step 6",
        "train m step 8/10 loss 2.0000 1.00 steps/s eta 2.0s best val 50.0% (step 4)",
    ]


def test_nothing_when_quiet_or_not_rank_zero(capsys, monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    for quiet, enabled in ((True, True), (False, False)):
        with quieted(quiet), TrainingProgress("m", 2, enabled=enabled, console=not_a_terminal()) as bar:
            bar.step(1, 1.0)
            bar.validated(1, 0.5, 0.5, 1)
            bar.step(2, 1.0)
        with quieted(quiet), progress_bar("generating s.h5", 3, enabled=enabled, console=not_a_terminal()) as go:
            go(3)
        with quieted(quiet):
            progress.note("eval x (test): a mIoU 1.0%", enabled=enabled)
    assert capsys.readouterr().err == ""


def test_the_bar_on_a_terminal_shows_step_loss_rate_eta_and_best(monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    screen = io.StringIO()
    terminal = Console(force_terminal=True, file=screen, width=200)
    clock = FakeClock()
    with TrainingProgress("stars", 10, console=terminal, clock=clock) as bar:
        for step in range(1, 11):
            clock.now += 0.5
            bar.step(step, loss=0.8123)
            if step == 4:
                bar.validated(4, 0.412, 0.412, 4)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    final = shown.splitlines()[-1]
    for field in ("train stars", "━", "10/10", "loss 0.8123", "2.00 steps/s", "eta 0.0s", "best val 41.2% @4"):
        assert field in final, final
    assert "val step 4: score 41.2% (best)" in shown  # printed above the bar


def test_a_narrow_terminal_keeps_the_count_and_the_loss(monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    screen = io.StringIO()
    clock = FakeClock()
    with TrainingProgress(
        "stars", 1500, console=Console(force_terminal=True, file=screen, width=80), clock=clock
    ) as bar:
        for step in range(1, 301):
            clock.now += 0.5
            bar.step(step, loss=0.8123)
        bar.validated(250, 0.412, 0.412, 250)
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).splitlines()[-1]
    assert len(final.rstrip()) <= 80 and "━" not in final, final
    assert final.startswith("train stars"), final
    for field in ("300/1500", "loss 0.8123", "2.00 steps/s", "eta 10m00s", "best val 41.2% @250"):
        assert field in final, final


def test_other_bars_print_every_m_seconds_and_once_at_the_end(capsys, monkeypatch):
    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    monkeypatch.setenv(progress.SECONDS_VARIABLE, "10")
    clock = FakeClock()
    with progress_bar("verifying s.h5", 100, console=not_a_terminal(), clock=clock) as advance:
        for done in range(1, 101):
            clock.now += 0.25
            advance(done)
    assert capsys.readouterr().err.splitlines() == [
        "verifying s.h5: 40/100 4.00/s eta 15s",
        "verifying s.h5: 80/100 4.00/s eta 5.0s",
        "verifying s.h5: 100/100 done in 25s",
    ]
    with pytest.raises(RuntimeError), progress_bar("verifying s.h5", 100, console=not_a_terminal()) as advance:
        advance(1)
        raise RuntimeError("a bad tile")
    with progress_bar("checking the values of s.h5", 100, console=not_a_terminal()):
        pass  # a scan skipped as already done
    assert capsys.readouterr().err == "", "no end line after an error, nor for work that did not happen"


@pytest.mark.parametrize(("variable", "value"), [(progress.STEPS_VARIABLE, "fifty"), (progress.SECONDS_VARIABLE, "-1")])
def test_a_malformed_setting_is_one_line_before_anything_runs(capsys, monkeypatch, tmp_path, variable, value):
    monkeypatch.setenv(variable, value)
    code = main(["data", "synth", "--out", str(tmp_path / "s.h5"), "--tiles", "2", "--size", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"mmbench data: error: {variable}={value!r} must be") and "unset it" in err[0]
    assert not (tmp_path / "s.h5").exists()


def test_the_sweep_under_quiet_reports_failures_only(capsys, monkeypatch):
    from mmbench.sweep.display import QuietReporter, reporter
    from mmbench.sweep.jobs import JobResult

    monkeypatch.delenv(progress.QUIET_VARIABLE, raising=False)
    job = SimpleNamespace(id="synthetic/tiny/seed0/train-last1")
    done = JobResult(job.id, "done", "r.json", None, "a.log", 1.0)
    failed = JobResult(job.id, "failed", None, "it broke", "b.log", 1.0)
    with quieted(True), reporter(2) as report:
        assert isinstance(report, QuietReporter)
        report.started(job)
        report.finished(job, done)
        report.finished(job, failed)
    err = capsys.readouterr().err.splitlines()
    assert err == ["[2/2] FAILED synthetic/tiny/seed0/train-last1: it broke (log: b.log)"]
    with reporter(1) as report:
        assert not isinstance(report, QuietReporter)
