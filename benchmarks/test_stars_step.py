"""A default CPU STARS training step and PSA alone on that step's embeddings, under pytest-benchmark.

Run: `pytest benchmarks/test_stars_step.py --benchmark-only --benchmark-group-by=param:branch`

PSA's share of the step (issue target: at most 5 % with `psa.branch: both`) is the `min` of the "psa"
row over the `min` of the "step" row of the same branch; `python benchmarks/psa_share.py` prints it
directly from interleaved repeats. One thread, the default CPU recipe's batch (8 × 96 px, three
synthetic modalities).
"""

from __future__ import annotations

import pytest
from psa_share import default_batch, psa_runner, stars_model, step_runner

from mmbench.config import load_defaults
from mmbench.registry import METHODS


@pytest.mark.parametrize("part", ["step", "psa"])
@pytest.mark.parametrize("branch", ["both", "v1"])
def test_stars_step_and_psa(benchmark, one_thread, part, branch):
    batch = default_batch(load_defaults(METHODS.get("stars").defaults, "stars"))
    model = stars_model({"branch": branch})
    run = (step_runner if part == "step" else psa_runner)(model, batch)
    counter = iter(range(10**6))
    benchmark.pedantic(lambda: run(next(counter)), rounds=10, warmup_rounds=2)
