"""The engine's speed settings keep the numbers (mmbench/engine/speed.py, issue 20).

`method.train.memory_format` and `method.train.fused_optimizer` change how a step is computed, not what:
every built-in method's smoke run with both flipped from its defaults must give the losses pinned in
tests/fixtures/behaviour_pins.json (computed at the defaults): step 1 to rel 1e-4, the
two steps after AdamW updates to rel 3e-3. STARS' `reuse_across_branches` must leave the forward exactly
unchanged and the gradients equal to float rounding; `run.compile` is wired to every submodule with a
`forward` and refused with one line where inductor cannot build.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from behaviour_pins import pinned_store
from builtin_plugins import builtin_methods
from stars_v1_case import CASES, case_batch, case_config, case_info

from mmbench.cli.main import main
from mmbench.config import load_defaults
from mmbench.engine.batches import micro_batches
from mmbench.engine.speed import (
    NARROWEST_CHANNELS_LAST,
    compile_model,
    lay_out_inputs,
    lay_out_model,
    memory_format,
)
from mmbench.method import build_method
from mmbench.registry import METHODS
from mmbench.runtime.threads import default_threads, run_threads

STEP_ONE_TOLERANCE = 1e-4
LATER_STEPS_TOLERANCE = 3e-3
PINS = json.loads((Path(__file__).parent / "fixtures" / "behaviour_pins.json").read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return pinned_store(tmp_path_factory.mktemp("speed") / "s.h5")


def _train_defaults(method: str) -> dict:
    return load_defaults(METHODS.get(method).defaults, method).get("train", {})


def _flipped(method: str) -> dict[str, str]:
    """Both speed settings flipped away from the method's defaults: {config key: value as --set writes it}."""
    train = _train_defaults(method)
    layout = "contiguous" if train.get("memory_format", "contiguous") == "channels_last" else "channels_last"
    fused = "false" if train.get("fused_optimizer", False) else "true"
    return {"method.train.memory_format": layout, "method.train.fused_optimizer": fused}


@pytest.mark.parametrize("method", [m for m in builtin_methods() if m in PINS["smoke_losses"]])
def test_flipping_the_speed_settings_keeps_the_pinned_losses(tmp_path, store, method, one_thread):
    if "train" not in load_defaults(METHODS.get(method).defaults, method):
        pytest.skip(f"{method} is not trained by the engine")
    command = ["run", method, "--protocol", "last1", "--dataset", str(store), "--smoke", "--out", str(tmp_path)]
    flipped = _flipped(method)
    options = [part for key, value in flipped.items() for part in ("--set", f"{key}={value}")]
    assert main([*command, *options]) == 0
    (log,) = tmp_path.rglob("train_log.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    losses = [row for row in rows if row["event"] == "train"]
    pinned = PINS["smoke_losses"][method]
    assert len(losses) == len(pinned)
    for got, want in zip(losses, pinned, strict=True):
        # Step 1 is one forward and backward from the same weights: only the layout's rounding differs. Later
        # steps follow an AdamW update, which divides each gradient by its own running scale, so the rounding
        # of near-zero gradients moves their weights by up to a learning rate (DIS2's orthogonality term:
        # 7e-4 relative at step 2); a wrong layout or kernel would move step 1 itself.
        rel_tol = STEP_ONE_TOLERANCE if got["step"] == 1 else LATER_STEPS_TOLERANCE
        for term, value in want.items():
            assert math.isclose(got[term], value, rel_tol=rel_tol, abs_tol=1e-5), (method, got["step"], term)
    (record,) = tmp_path.rglob("result.json")
    train = json.loads(record.read_text())["config"]["method"]["train"]
    assert train["memory_format"] == flipped["method.train.memory_format"]
    assert str(train["fused_optimizer"]).lower() == flipped["method.train.fused_optimizer"]


def test_channels_last_reaches_the_parameters_and_the_batches(tmp_path, store):
    from mmbench.bench.step_setup import build_step

    parts = build_step(
        "early-fusion",
        store=("s", store),
        batch_size=2,
        size=32,
        device="cpu",
        run_dir=tmp_path,
        overrides=("method.train.memory_format=channels_last",),
    )
    convolutions = [
        m.weight
        for m in parts.model.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1 and m.in_channels >= NARROWEST_CHANNELS_LAST
    ]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    assert not all(w.is_contiguous() for w in convolutions)
    batch = next(parts.batches(1))
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in batch["inputs"].values())
    plain = micro_batches(
        parts.trainer.train_data,
        seed=0,
        settings={**parts.settings, "memory_format": "contiguous"},
        start_step=0,
        dist=parts.trainer.dist,
        device="cpu",
    )
    assert all(t.is_contiguous() for t in next(plain)["inputs"].values())


def test_inputs_other_than_maps_keep_their_layout():
    inputs = {"map": torch.randn(2, 3, 4, 5), "vector": torch.randn(2, 3)}
    laid_out = lay_out_inputs(inputs, torch.channels_last)
    assert laid_out["map"].is_contiguous(memory_format=torch.channels_last)
    assert laid_out["vector"] is inputs["vector"]
    assert memory_format({}) is torch.contiguous_format  # a recipe that predates the key


def test_fused_adamw_updates_like_the_for_loop_kernel_to_float_rounding():
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    fused = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    fused.load_state_dict(reference.state_dict())
    optimisers = [
        torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.01),
        torch.optim.AdamW(fused.parameters(), lr=0.01, weight_decay=0.01, fused=True),
    ]
    x = torch.randn(4, 3, 16, 16)
    for _ in range(5):
        for model, optimiser in zip((reference, fused), optimisers, strict=True):
            optimiser.zero_grad()
            model(x).square().mean().backward()
            optimiser.step()
    for a, b in zip(reference.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_stars_reuse_keeps_the_forward_and_running_statistics_bit_for_bit_and_gradients_to_rounding(name):
    case = CASES[name]
    results = {}
    for reuse in (False, True):
        torch.manual_seed(0)
        config = case_config(case, {"reuse_across_branches": reuse})
        model = build_method(METHODS.get("stars"), case["modalities"], 6, config)
        terms = model.training_loss(case_batch(case["modalities"]), case_info())
        terms["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[reuse] = ({k: float(v.detach()) for k, v in terms.items()}, grads, model.state_dict())
    assert results[True][0] == results[False][0]  # the same tensors: bit for bit
    buffers = [key for key in results[False][2] if "running_" in key or "num_batches" in key]
    assert any(key.startswith("translators.") for key in buffers)
    for key in buffers:  # evaluation's statistics: version 2's updates, replayed
        assert torch.equal(results[True][2][key], results[False][2][key]), key
    assert results[True][1].keys() == results[False][1].keys()
    differ = 0
    for key, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][key], grad, rtol=1e-4, atol=1e-6, msg=key)
        differ += not torch.equal(results[True][1][key], grad)
    assert differ  # the sums are reordered: if nothing differed, nothing was reused


def test_stars_reuse_runs_each_composition_and_translation_once_per_step():
    case = CASES["3 modalities"]
    counts = {}
    for reuse in (False, True):
        torch.manual_seed(0)
        config = case_config(case, {"reuse_across_branches": reuse})
        model = build_method(METHODS.get("stars"), case["modalities"], 6, config)
        calls = {"compose": 0, "translators": 0}
        for part in calls:
            for modules in getattr(model, part).values():
                for module in modules:
                    module.register_forward_hook(
                        lambda *_, part=part, calls=calls: calls.__setitem__(part, calls[part] + 1)
                    )
        model.training_loss(case_batch(case["modalities"]), case_info())
        counts[reuse] = calls
    pairs = len(model.pairs) * model.levels
    assert counts[True] == {"compose": len(model.modality_names) * model.levels, "translators": pairs}
    assert counts[False]["compose"] == 2 * counts[True]["compose"]
    assert counts[False]["translators"] > counts[True]["translators"]


def test_compile_reaches_every_submodule_with_a_forward(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    case = CASES["2 modalities"]
    model = build_method(METHODS.get("stars"), case["modalities"], 6, case_config(case, {}))
    names = compile_model(model)
    assert "translators.optical__sar.0" in names and "shared" in names and "classifier" in names
    assert not any(isinstance(m, (torch.nn.ModuleList, torch.nn.ModuleDict)) for m in compiled)
    assert len(compiled) == len(names)
    assert (
        model.state_dict().keys()
        == build_method(METHODS.get("stars"), case["modalities"], 6, case_config(case, {})).state_dict().keys()
    )


def test_run_compile_without_a_compiler_is_one_line_before_training(tmp_path, store, monkeypatch, capsys):
    monkeypatch.setattr("mmbench.engine.speed.shutil.which", lambda name: None)
    code = main(
        ["run", "early-fusion", "--protocol", "last1", "--dataset", str(store), "--smoke", "--out", str(tmp_path)]
        + ["--set", "run.compile=true", "--device", "cpu"]
    )
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "run.compile" in errors[0] and "C++ compiler" in errors[0]
    assert not list(tmp_path.rglob("result.json"))


@pytest.mark.parametrize(
    ("cpus", "environment", "expected"),
    [(2, {}, 1), (1, {}, 1), (16, {}, None), (2, {"OMP_NUM_THREADS": "2"}, None), (2, {"MKL_NUM_THREADS": "3"}, None)],
)
def test_default_threads_are_one_on_small_machines_unless_the_environment_says(
    monkeypatch, cpus, environment, expected
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("mmbench.runtime.threads.usable_cpus", lambda: cpus)
    assert default_threads() == expected


def test_a_run_records_its_threads_and_gives_the_caller_its_own_back(tmp_path, store):
    before = torch.get_num_threads()
    command = ["run", "early-fusion", "--protocol", "last1", "--dataset", str(store), "--smoke", "--out", str(tmp_path)]
    assert main([*command, "--set", "run.threads=1"]) == 0
    assert torch.get_num_threads() == before
    (record,) = tmp_path.rglob("result.json")
    assert json.loads(record.read_text())["env"]["torch_threads"] == 1
    with run_threads(0) as threads:
        assert threads == (default_threads() or before)
    assert torch.get_num_threads() == before
    # `mmbench eval` of the checkpoint takes the same setting (it used to run at torch's default)
    checkpoint = next(record.parent.glob("*.ckpt"))
    evaluation = tmp_path / "eval"
    command = ["eval", str(checkpoint), "--protocol", "subsets", "--out", str(evaluation), "--set", "run.threads=1"]
    assert main(command) == 0
    assert torch.get_num_threads() == before
    (record,) = evaluation.rglob("result.json")
    assert json.loads(record.read_text())["env"]["torch_threads"] == 1


def test_narrow_strided_convolutions_stay_contiguous_under_channels_last():
    """oneDNN's channels-last kernel crashed on a 1x1 stride-2 convolution with 4 input channels (STARS at
    width 4 segfaulted or hung in its ResNet shortcuts): such convolutions keep the contiguous layout."""
    torch.manual_seed(0)

    def network():
        return torch.nn.Sequential(
            torch.nn.Conv2d(4, 8, 1, stride=2), torch.nn.Conv2d(8, 4, 3, padding=1), torch.nn.Conv2d(4, 8, 3, padding=1)
        )

    reference, laid_out = network(), network()
    laid_out.load_state_dict(reference.state_dict())
    lay_out_model(laid_out, {"memory_format": "channels_last"})
    assert laid_out[0].weight.is_contiguous()  # narrow and strided: contiguous
    assert not laid_out[1].weight.is_contiguous() and not laid_out[2].weight.is_contiguous()
    x = torch.randn(2, 4, 64, 64)
    for _ in range(5):
        torch.testing.assert_close(laid_out(x.contiguous(memory_format=torch.channels_last)), reference(x))
