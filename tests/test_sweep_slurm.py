"""`mmbench sweep --executor slurm` without a cluster: what is submitted, and how a job runs.

A fake `sbatch` (and `srun`, which submitit looks for) on PATH records the batch script submitit writes, so
the suite's `executor:` section can be checked as sbatch options. The job function's command line is
checked directly: a training with more than one GPU runs under torchrun (PyTorch DDP, docs/training.md),
an evaluation on one GPU, and local jobs get cores // jobs threads.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mmbench.sweep import load_suite, plan_sweep
from mmbench.sweep.backends import LocalBackend, SubmititBackend, available_cores
from mmbench.sweep.jobs import THREAD_VARIABLES, JobSettings, _command, _environment

SUITE = """
datasets: [synthetic]
methods: [early-fusion]
seeds: [0]
train: last1
evaluate: [subsets]
out: {out}
executor:
  partition: gpu-long
  gpus_per_node: 2
  cpus_per_task: 16
  timeout_min: 90
  slurm_additional_parameters: {{account: proj42, constraint: a100}}
  setup: [module load cuda/12.4]
"""


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(out=tmp_path / "out"))
    return plan_sweep(load_suite(path))


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """`sbatch` copies the script it is given to submitted.sh and answers like Slurm; `srun` exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(
        f'#!/bin/sh\nfor a; do last="$a"; done\ncp "$last" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod((bin_dir / tool).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "submitted.sh"


def test_the_executor_section_becomes_sbatch_options(plan, fake_slurm, tmp_path):
    backend = SubmititBackend("slurm", tmp_path / "submitit", plan.suite.executor, plan.suite.name)
    job = backend.submit(plan.trainings[0])
    assert job.job_id == "4242"
    script = fake_slurm.read_text()
    for option in (
        "#SBATCH --partition=gpu-long",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --time=90",
        "#SBATCH --account=proj42",
        "#SBATCH --constraint=a100",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
    ):
        assert option in script, (option, script)
    assert "module load cuda/12.4" in script
    backend.submit(plan.evaluations[0])
    assert "#SBATCH --gpus-per-node=1" in fake_slurm.read_text()  # an evaluation needs one GPU


def test_a_multi_gpu_training_runs_under_torchrun_and_an_evaluation_does_not(plan):
    training = plan.trainings[0]
    command, resumed = _command(training, JobSettings(gpus=2), None)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert command[6:10] == ["-m", "mmbench", "run", "early-fusion"] and not resumed
    single, _ = _command(training, JobSettings(gpus=1), None)
    assert single[1:5] == ["-m", "mmbench", "run", "early-fusion"]
    assert "--seed" in single and str(training.out_dir) in single
    evaluation = plan.evaluations[0]
    record = {"method": {"checkpoint": {"path": "/ckpt/best.ckpt"}}}
    command, _ = _command(evaluation, JobSettings(gpus=2), record)
    assert command[1:5] == ["-m", "mmbench", "eval", "/ckpt/best.ckpt"]
    config = Path(command[command.index("--config") + 1]).read_text()
    assert "method:" not in config and "seed: 0" in config  # the method's settings come from the checkpoint


def test_local_jobs_split_the_cores():
    backend = LocalBackend(2)
    try:
        assert backend.settings.threads == max(1, available_cores() // 2)
    finally:
        backend.close()
    env = _environment(JobSettings(threads=3))
    assert all(env[name] == "3" for name in THREAD_VARIABLES)


def test_a_job_killed_under_submitit_is_marked_interrupted_for_the_next_sweep(plan, tmp_path):
    from mmbench.sweep.state import PENDING, plan_status, read_state, write_state

    training = plan.trainings[0]
    write_state(training, status="running", host="node-7", started=0.0, deadline=1e12)
    assert plan_status(plan)[training.id].state == "running"  # another host, before its time limit

    class KilledJob:
        def result(self):
            raise RuntimeError("Job 4242 (task: 0) with path ... has not produced any output (state: TIMEOUT)")

    backend = SubmititBackend.__new__(SubmititBackend)  # result() needs no executor
    result = backend.result(training, KilledJob())
    assert result.status == "failed" and "TIMEOUT" in result.error
    state = read_state(training)
    assert state["status"] == "interrupted" and state["host"] == "node-7" and "TIMEOUT" in state["error"]
    assert plan_status(plan)[training.id].state == PENDING  # the next sweep runs (resumes) it
