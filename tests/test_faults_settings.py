"""Fault cases of run settings (issue 19, area "settings"): a value that cannot mean what it says is refused
before training, one line naming the key and what is allowed, exit 2, and no record is written.

Built-in methods declare their rules next to their defaults (methods/_base_train_cpu.yaml; checked when the
config is resolved). A third-party method's `train:` section may declare none, so the training engine checks
the same rules itself (mmbench/engine/settings.py): the cases run the test-only `tiny-trainable`
(tests/tiny_methods.py), whose defaults are a plain mapping without rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults import expect_clean, hidden_temporaries, run_in_process

from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

AREA = "settings"
SHORT = ["--set", "method.train.iterations=2", "--set", "method.train.val_every=2", "--set", "method.train.log_every=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("settings") / "s.h5", SyntheticConfig(tiles=8, size=64))


# (case id, --set overrides, fragments the one error line must name)
TRAIN = "method.train"
CASES = [
    ("val_tiles=0", ["method.train.val_tiles=0"], [f"{TRAIN}.val_tiles=0", ">= 1"]),
    ("val_tiles=-1", ["method.train.val_tiles=-1"], [f"{TRAIN}.val_tiles=-1", ">= 1"]),
    ("val_tiles=1.5", ["method.train.val_tiles=1.5"], [f"{TRAIN}.val_tiles=1.5", "int"]),
    ("amp=bf16 on cpu", ["method.train.amp=bf16"], [f"{TRAIN}.amp='bf16'", "cpu", "off"]),
    ("amp=fp16 on cpu", ["method.train.amp=fp16"], [f"{TRAIN}.amp='fp16'", "cpu", "off"]),
    ("protocol.window=1000 on 64 px tiles", ["protocol.window=1000"], ["protocol.window=1000", "64x64"]),
    ("grad_clip=-1", ["method.train.grad_clip=-1"], [f"{TRAIN}.grad_clip=-1", ">= 0"]),
    ("weight_decay=-0.1", ["method.train.weight_decay=-0.1"], [f"{TRAIN}.weight_decay=-0.1", ">= 0"]),
    ("lr=0", ["method.train.lr=0"], [f"{TRAIN}.lr=0", "> 0"]),
    ("lr=-0.01", ["method.train.lr=-0.01"], [f"{TRAIN}.lr=-0.01", "> 0"]),
    ("lr=.nan", ["method.train.lr=.nan"], [f"{TRAIN}.lr=nan", "> 0"]),
    ("lr=.inf", ["method.train.lr=.inf"], [f"{TRAIN}.lr=inf", "finite"]),
    ("iterations=0", ["method.train.iterations=0"], [f"{TRAIN}.iterations=0", ">= 1"]),
    ("batch_size=0", ["method.train.batch_size=0"], [f"{TRAIN}.batch_size=0", ">= 1"]),
    ("crop_size=0", ["method.train.crop_size=0"], [f"{TRAIN}.crop_size=0", ">= 1"]),
    ("accumulate=0", ["method.train.accumulate=0"], [f"{TRAIN}.accumulate=0", ">= 1"]),
    ("val_every=0", ["method.train.val_every=0"], [f"{TRAIN}.val_every=0", ">= 1"]),
    ("log_every=-1", ["method.train.log_every=-1"], [f"{TRAIN}.log_every=-1", ">= 1"]),
    ("num_workers=-1", ["method.train.num_workers=-1"], [f"{TRAIN}.num_workers=-1", ">= 0"]),
    ("betas=[0.9, 1.0]", ["method.train.betas=[0.9, 1.0]"], [f"{TRAIN}.betas=[0.9, 1.0]", "[0, 1)"]),
    ("betas=[0.9]", ["method.train.betas=[0.9]"], [f"{TRAIN}.betas=[0.9]", "2 values"]),
    ("warmup_iterations=-1", ["method.train.warmup_iterations=-1"], [f"{TRAIN}.warmup_iterations=-1", ">= 0"]),
    ("warmup_start_factor=1.5", ["method.train.warmup_start_factor=1.5"], [f"{TRAIN}.warmup_start_factor=1.5"]),
    ("poly_power=0", ["method.train.poly_power=0"], [f"{TRAIN}.poly_power=0", "> 0"]),
    ("min_lr=-0.001", ["method.train.min_lr=-0.001"], [f"{TRAIN}.min_lr=-0.001", ">= 0"]),
    ("min_lr above lr", ["method.train.min_lr=0.5"], [f"{TRAIN}.min_lr=0.5", f"{TRAIN}.lr"]),
    ("augment=1", ["method.train.augment=1"], [f"{TRAIN}.augment=1", "bool"]),
]


@pytest.mark.parametrize(("case", "overrides", "names"), CASES, ids=[case for case, _, _ in CASES])
def test_a_setting_that_cannot_mean_what_it_says_is_refused(
    capsys, tmp_path, store, tiny_methods, case, overrides, names
):
    out = tmp_path / "runs"
    sets = [part for override in overrides for part in ("--set", override)]
    result = run_in_process(capsys, "run", "tiny-trainable", "-p", "last1", "-d", store, "--out", out, *SHORT, *sets)
    written = sorted(out.rglob("result.json")) + hidden_temporaries(out) + ([out] if out.exists() else [])
    expect_clean(case, AREA, result, expect_code=2, names=names, leftovers=written)


DRY_RUN = [case for case in CASES if case[1][0].startswith("method.train.") and "amp=" not in case[0]]


@pytest.mark.parametrize(("case", "overrides", "names"), DRY_RUN, ids=[case for case, _, _ in DRY_RUN])
def test_a_dry_run_refuses_what_the_engine_would_refuse(capsys, tmp_path, store, tiny_methods, case, overrides, names):
    """--dry-run reads no store and trains nothing, but it says which value the training engine would refuse
    (mmbench/runs/preflight.py `check_training_settings`) instead of printing a plan that cannot run."""
    out = tmp_path / "runs"
    sets = [part for override in overrides for part in ("--set", override)]
    argv = ("run", "tiny-trainable", "-p", "last1", "-d", store, "--out", out, "--dry-run", *SHORT, *sets)
    result = run_in_process(capsys, *argv)
    expect_clean(f"dry-run {case}", AREA, result, expect_code=2, names=names, leftovers=[out] if out.exists() else [])


ADVERSARY = [
    ("adversary weight_decay=-1", ["method.train.adversary.weight_decay=-1"], ["adversary.weight_decay=-1", ">= 0"]),
    ("adversary betas=[1.5, 0.9]", ["method.train.adversary.betas=[1.5, 0.9]"], ["adversary.betas", "[0, 1)"]),
    ("adversary lr=0", ["method.train.adversary.lr=0"], ["adversary.lr=0", "> 0"]),
]


@pytest.mark.parametrize(("case", "overrides", "names"), ADVERSARY, ids=[case for case, _, _ in ADVERSARY])
def test_a_discriminators_setting_is_checked_too(capsys, tmp_path, store, tiny_methods, case, overrides, names):
    out = tmp_path / "runs"
    sets = [part for override in overrides for part in ("--set", override)]
    result = run_in_process(capsys, "run", "tiny-adversarial", "-p", "last1", "-d", store, "--out", out, *SHORT, *sets)
    expect_clean(case, AREA, result, expect_code=2, names=names, leftovers=sorted(out.rglob("result.json")))


BUILTIN = [
    ("built-in val_tiles=0", ["method.train.val_tiles=0"], ["method.train.val_tiles=0", ">= 1"]),
    ("built-in grad_clip=-1", ["method.train.grad_clip=-1"], ["method.train.grad_clip=-1.0", ">= 0"]),
    ("built-in weight_decay=-0.1", ["method.train.weight_decay=-0.1"], ["method.train.weight_decay=-0.1", ">= 0"]),
]


@pytest.mark.parametrize(("case", "overrides", "names"), BUILTIN, ids=[case for case, _, _ in BUILTIN])
def test_a_builtin_methods_rules_refuse_before_anything_runs(capsys, case, overrides, names):
    sets = [part for override in overrides for part in ("--set", override)]
    result = run_in_process(capsys, "run", "unimodal", "-p", "last1", *sets, "--dry-run")
    expect_clean(case, AREA, result, expect_code=2, names=names)


def test_a_window_larger_than_the_tiles_is_refused_by_eval_too(capsys, tmp_path, store, tiny_methods):
    """`mmbench eval` of a checkpoint with a window the store's 64 px tiles cannot hold: refused before scoring,
    no record written."""
    one = ["--set", "method.train.iterations=1", "--set", "method.train.val_every=1"]
    result = run_in_process(capsys, "run", "tiny-trainable", "-p", "last1", "-d", store, "--out", tmp_path / "t", *one)
    assert result.code == 0, result.err
    (checkpoint,) = (tmp_path / "t").rglob("best.ckpt")
    out = tmp_path / "e"
    result = run_in_process(
        capsys, "eval", checkpoint, "-p", "last1", "-d", store, "--out", out, "--set", "protocol.window=1000"
    )
    written = sorted(out.rglob("result.json")) + hidden_temporaries(out)
    expect_clean(
        "eval with protocol.window=1000",
        AREA,
        result,
        expect_code=2,
        names=["protocol.window=1000", "64x64"],
        leftovers=written,
    )
