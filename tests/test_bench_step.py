"""`mmbench bench step` (mmbench/bench/step.py): the parts of a real training step, their sum, the JSON and
Markdown it writes, and one-line errors for bad input.

Tolerance of "the parts sum to the total": the parts are disjoint intervals inside the step, and `other` is
the rest, so data + forward + loss & glue + backward + optimiser + other equals the total up to float
rounding (1e-9 s), and every named part is >= 0 and `other` >= -1e-9 s. No assertion compares durations
with a threshold (the machine is shared).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch

from mmbench.bench import step_setup
from mmbench.bench.step import PARTS, Clock, StepInstruments, backward_by_module, profile_method
from mmbench.bench.step_report import markdown_table
from mmbench.cli.main import main
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = write_synthetic(tmp_path_factory.mktemp("step") / "s.h5", SyntheticConfig(tiles=6, size=64))
    return ("synthetic", path)


def check_parts(profile):
    for times in (profile.wall, profile.cpu):
        named = [times[part] for part in PARTS if part != "other"]
        assert all(value >= 0 for value in named), times
        assert times["other"] >= -TOLERANCE, times
        assert math.isclose(sum(times[part] for part in PARTS), times["total"], abs_tol=TOLERANCE)
    assert math.isclose(sum(profile.forward_modules.values()), profile.wall["forward"], abs_tol=TOLERANCE)
    assert set(profile.forward_modules) <= set(profile.children)
    assert profile.backward_shares is not None, profile.backward_note
    assert math.isclose(sum(profile.backward_shares.values()), 1.0, abs_tol=1e-9)
    assert len(profile.step_wall) == profile.steps
    assert profile.peak_memory_bytes and profile.peak_memory_bytes > 0
    assert profile.threads >= 1 and profile.interop_threads >= 1


def test_a_tiny_method_is_split_into_parts_that_sum_to_the_step(store, tiny_methods):
    profile = profile_method("tiny-trainable", store=store, batch_size=2, size=32, steps=2, warmup=1)
    check_parts(profile)
    assert profile.children == ["encoders", "head"]
    assert set(profile.forward_modules) == {"encoders", "head"}  # ModuleDict children are found through it
    assert {"encoders", "head"} <= set(profile.backward_shares)


def test_an_adversarial_method_times_both_optimisers_and_the_discriminator(store, tiny_methods):
    profile = profile_method("tiny-adversarial", store=store, batch_size=2, size=32, steps=1, warmup=0)
    check_parts(profile)
    assert "critic" in profile.forward_modules
    assert profile.wall["optimiser"] > 0


def test_a_real_method_at_a_tiny_size(store):
    profile = profile_method("early-fusion", store=store, batch_size=2, size=32, steps=1, warmup=0)
    check_parts(profile)
    assert {"encoder", "decoder"} <= set(profile.forward_modules)
    assert "| early-fusion |" in markdown_table([profile])


def test_the_instruments_do_not_change_what_the_step_computes(store, tiny_methods):
    """Same seed, one step plain and one instrumented: bit-identical parameters."""
    results = []
    for instrumented in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            torch.manual_seed(0)
            parts = step_setup.build_step(
                "tiny-trainable", store=store, batch_size=2, size=32, device="cpu", run_dir=Path(folder)
            )
            batches = parts.batches(1)
            if instrumented:
                with StepInstruments(parts, Clock("cpu")).installed():
                    parts.update.step(0, [next(batches)], parts.loss)
            else:
                parts.update.step(0, [next(batches)], parts.loss)
            results.append([p.detach().clone() for p in parts.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    assert torch.Tensor.backward.__name__ == "backward"  # the wrapper is gone again


def test_backward_is_charged_to_the_module_whose_forward_created_it():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3))
    x = torch.randn(1, 2, 12, 12)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        with torch.autograd.profiler.record_function("mmbench.module::first"):
            hidden = model[1](model[0](x))
        with torch.autograd.profiler.record_function("mmbench.module::second"):
            out = model[2](hidden)
        (out * 2).sum().backward()
    totals = backward_by_module(profiler.events(), ["first", "second"])
    assert {"first", "second", "loss & glue", "gradient accumulation"} <= set(totals)


def test_the_command_writes_valid_json_and_markdown(tmp_path, store, tiny_methods, monkeypatch, capsys):
    monkeypatch.setattr(step_setup, "resolve_store", lambda dataset: store)
    out, markdown = tmp_path / "step.json", tmp_path / "step.md"
    argv = ["bench", "step", "tiny-trainable", "--batch-size", "2", "--size", "32", "--steps", "1", "--warmup", "0"]
    threads = torch.get_num_threads()
    code = main([*argv, "--threads", str(threads + 1), "--out", str(out), "--markdown", str(markdown)])
    printed = capsys.readouterr().out
    assert code == 0
    assert torch.get_num_threads() == threads, "--threads must not outlive the command (tests run in process)"
    document = json.loads(out.read_text())
    assert document["schema"] == "mmbench.step-bench/1"
    (result,) = document["results"]
    assert result["method"] == "tiny-trainable" and result["threads"] == threads + 1
    assert len(document["load_average"]) == 3
    assert "| tiny-trainable |" in markdown.read_text()
    assert "tiny-trainable" in printed


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["no-such-method"], "no-such-method"),
        (["tiny-fusion"], "tiny-fusion"),  # no method.train section: not trained by the engine
        (["--steps", "0"], "--steps"),
        (["--batch-size", "0"], "--batch-size"),
        (["--size", "0"], "--size"),
        (["--threads", "0"], "--threads"),
        (["--warmup", "-1"], "--warmup"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, names, tmp_path, tiny_methods, capsys):
    code = main(["bench", "step", *argv, "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and names in err and err.startswith("mmbench bench: error:")
    assert not (tmp_path / "x.json").exists()
