"""Every built-in method passes a smoke run (`mmbench run METHOD --smoke`) with its default config, and
computes the losses pinned in tests/fixtures/behaviour_pins.json (written before the harness was regrouped;
tests/fixtures/generate_behaviour_pins.py says when to regenerate them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from behaviour_pins import pinned_store, smoke_losses
from builtin_plugins import builtin_methods

from mmbench.records import read_record

PINS = json.loads((Path(__file__).parent / "fixtures" / "behaviour_pins.json").read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return pinned_store(tmp_path_factory.mktemp("smoke") / "s.h5")


def test_every_pinned_method_is_still_registered():
    """The pins cannot silently shrink: each method pinned before the regrouping must still run here."""
    assert set(PINS["smoke_losses"]) <= set(builtin_methods())
    assert "stars" in PINS["smoke_losses"]


@pytest.mark.parametrize("method", builtin_methods())
def test_every_builtin_method_passes_a_smoke_run_with_its_pinned_losses(tmp_path, store, method, one_thread):
    losses = smoke_losses(method, store, tmp_path)
    (path,) = tmp_path.rglob("result.json")
    record = read_record(path)
    assert record["smoke"] is True and record["method"]["name"] == method
    assert all(s["metrics"]["miou"] is not None for s in record["scenarios"])
    pinned = PINS["smoke_losses"].get(method)
    if pinned is None:
        return  # a method added after the pins: nothing to compare with (tests/fixtures/generate_behaviour_pins.py)
    assert [sorted(step) for step in losses] == [sorted(step) for step in pinned]
    for got, want in zip(losses, pinned, strict=True):
        for term, value in want.items():
            assert math.isclose(got[term], value, rel_tol=1e-4, abs_tol=1e-5), (method, got["step"], term)


def test_a_checkpoint_written_before_the_regrouping_evaluates_to_the_same_matrices(tmp_path, store, one_thread):
    from mmbench.cli.main import main

    checkpoint = Path(__file__).parent / "fixtures" / "unimodal_tiny.ckpt"
    assert (
        main(["eval", str(checkpoint), "--protocol", "subsets", "--dataset", str(store), "--out", str(tmp_path)]) == 0
    )
    (path,) = tmp_path.rglob("result.json")
    matrices = {s["name"]: s["confusion_matrix"] for s in read_record(path)["scenarios"]}
    assert matrices == PINS["unimodal_tiny_subsets"]
