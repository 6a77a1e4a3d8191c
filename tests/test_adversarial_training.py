"""The engine's alternating generator/discriminator update (methods with `adversary_modules`)."""

from __future__ import annotations

import json

import pytest
import torch
from test_training import cli, records, run_args, store, subprocess_run  # noqa: F401  (fixture re-export)
from torch import nn

from mmbench.engine.checkpoint import load_checkpoint
from mmbench.engine.trainer import adversary_settings, frozen_running_stats
from mmbench.errors import ConfigError
from mmbench.records import read_record


def logged(run_root):
    (log,) = run_root.rglob("train_log.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_discriminator_is_stepped_before_the_generator_sees_it(capsys, tmp_path, store, tiny_methods):  # noqa: F811
    code, _, err = cli(
        capsys, *run_args(store, tmp_path / "runs", "--set", "method.train.log_every=1", method="tiny-adversarial")
    )
    assert code == 0, err
    train = [entry for entry in logged(tmp_path / "runs") if entry["event"] == "train"]
    assert len(train) == 12 and all("adversary_loss" in entry and "ce" in entry for entry in train)
    for entry in train:  # within a step: the generator is trained against the discriminator just updated
        assert entry["critic_seen_by_generator"] != pytest.approx(entry["critic_seen_by_adversary"], abs=1e-7)
    # across steps: nothing else touches the discriminator
    for previous, current in zip(train[:-1], train[1:], strict=True):
        assert current["critic_seen_by_adversary"] == pytest.approx(previous["critic_seen_by_generator"], abs=1e-9)
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    payload = load_checkpoint(last)
    assert set(payload["adversary"]) == {"optimizer", "scheduler", "scaler"}
    main_params = sum(len(group["params"]) for group in payload["optimizer"]["param_groups"])
    adversary_params = sum(len(group["params"]) for group in payload["adversary"]["optimizer"]["param_groups"])
    assert adversary_params == 6 and main_params > 0  # critic: 2 convs (w, b), 1 norm (w, b)
    assert payload["adversary"]["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)


def test_adversarial_runs_are_reproducible_and_resume_exactly(tmp_path, store, tiny_methods):  # noqa: F811
    args = run_args(store, tmp_path / "runs", "--set", "method.train.iterations=8", method="tiny-adversarial")
    killed = subprocess_run(args, {"MMBENCH_TEST_KILL_AT_STEP": "5"})
    assert killed.returncode == -9, killed.stderr
    resumed = subprocess_run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess_run(
        run_args(store, tmp_path / "straight", "--set", "method.train.iterations=8", method="tiny-adversarial")
    )
    assert straight.returncode == 0, straight.stderr
    a, b = read_record(records(tmp_path / "runs")[0]), read_record(records(tmp_path / "straight")[0])
    assert [s["confusion_matrix"] for s in a["scenarios"]] == [s["confusion_matrix"] for s in b["scenarios"]]
    final = [
        [e for e in logged(root) if e["event"] == "train"][-1] for root in (tmp_path / "runs", tmp_path / "straight")
    ]
    assert final[0] == {**final[1], "time": final[0]["time"], "steps_per_s": final[0]["steps_per_s"]}


def test_bad_discriminator_optimizer_settings_are_config_errors(capsys, tmp_path, store, tiny_methods):  # noqa: F811
    code, _, err = cli(
        capsys, *run_args(store, tmp_path / "runs", "--set", "method.train.adversary.lr=0", method="tiny-adversarial")
    )
    assert code == 2 and "method.train.adversary.lr=0.0 is out of range" in err and "must be a number > 0" in err
    assert records(tmp_path / "runs") == []
    with pytest.raises(ConfigError, match="'train.adversary' section with lr, betas, weight_decay"):
        adversary_settings({"lr": 0.1}, "gan")
    with pytest.raises(ConfigError, match="method.train.adversary lacks 'betas'"):
        adversary_settings({"adversary": {"lr": 0.1, "weight_decay": 0.0}}, "gan")


def test_adversary_divergence_names_the_phase(capsys, tmp_path, store, tiny_methods, monkeypatch):  # noqa: F811
    import tiny_methods as module

    original = module.TinyAdversarial.adversary_loss

    def poisoned(self, batch, info):
        terms = original(self, batch, info)
        if info.step == 2:
            terms["loss"] = terms["loss"] * float("inf")
        return terms

    monkeypatch.setattr(module.TinyAdversarial, "adversary_loss", poisoned)
    code, _, err = cli(capsys, *run_args(store, tmp_path / "runs", method="tiny-adversarial"))
    assert code == 2 and "loss term 'adversary loss' is inf at step 3" in err


def test_frozen_running_stats_restores_the_generator_but_not_the_discriminator():
    generator, discriminator = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    model = nn.ModuleDict({"g": generator, "d": discriminator}).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with frozen_running_stats(model, exclude=[discriminator]):
        generator(torch.randn(4, 3, 5, 5) + 3)
        discriminator(torch.randn(4, 3, 5, 5) + 3)
    after = model.state_dict()
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(after[f"g.{name}"], before[f"g.{name}"])
        assert not torch.equal(after[f"d.{name}"], before[f"d.{name}"])


@pytest.mark.slow
def test_two_process_ddp_runs_the_alternating_update(tmp_path, store, tiny_methods):  # noqa: F811
    import os
    import subprocess
    import sys

    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmbench",
        *run_args(
            store,
            tmp_path / "two",
            "--set",
            "method.train.iterations=4",
            "--set",
            "method.train.val_every=4",
            method="tiny-adversarial",
        ),
    ]
    result = subprocess.run(launch, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = records(tmp_path / "two")
    assert read_record(path)["method"]["checkpoint"]["world_size"] == 2
    train = [entry for entry in logged(tmp_path / "two") if entry["event"] == "train"]
    assert all(entry["critic_seen_by_generator"] != entry["critic_seen_by_adversary"] for entry in train)
