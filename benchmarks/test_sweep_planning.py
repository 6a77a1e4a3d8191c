"""`mmbench sweep`: planning speed and the sweep's own overhead per job.

Run: `pytest benchmarks/test_sweep_planning.py --benchmark-only --benchmark-columns=median,iqr,ops`

- `test_plan_3500_jobs`: reading and planning a suite of 5 datasets x 20 method configs (the 12 built-in
  methods and 8 STARS ablations) x 5 seeds x 7 protocols (last1 training + 6 evaluations) = 3,500 jobs,
  every config resolved and checked by the project's config resolution. Target: < 2 s.
- `test_status_check_per_job`: deciding "already done" for jobs whose records exist (state file, record
  read and validated, config compared), per job. Part of the sweep's own overhead.
- `test_sweep_overhead_per_job`: one real sweep of 2 jobs (a 2-iteration training and one evaluation on a
  tiny store); `extra_info` holds, per job, the sweep's own seconds (the job function's wall time minus
  its child process's: state files, resume check, finding and checking the record) and the child's start-up
  seconds outside its record (interpreter, imports; the same for a hand-typed `mmbench run`). Target for
  the sweep's own part: < 1 s per job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.registry import METHODS
from mmbench.sweep import load_suite, plan_sweep
from mmbench.sweep.backends import LocalBackend
from mmbench.sweep.driver import Reporter, run_sweep
from mmbench.sweep.state import plan_status

ABLATIONS = [
    ["method.psa.branch=v1"],
    ["method.psa.enabled=false"],
    ["method.psa.sampling=uniform"],
    ["method.translator=copy"],
    ["method.stop_gradient=false"],
    ["method.shared_norm=per_call"],
    ["method.shared_norm=per_modality"],
    ["method.translator=copy", "method.loss.translation=0"],
]
EVALUATIONS = ["full", "missing1", "subsets", "random-drop", "pixel-drop", "minority"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("sweep-bench")
    first = write_synthetic(folder / "d0.h5", SyntheticConfig(tiles=6, size=64))
    paths = [first]
    for index in range(1, 5):
        paths.append(folder / f"d{index}.h5")
        paths[-1].hardlink_to(first)
    return paths


def big_suite(folder: Path, stores: list[Path]) -> Path:
    methods = [{"method": name} for name in METHODS.names()]
    methods += [{"method": "stars", "name": f"stars-ablation-{i}", "set": sets} for i, sets in enumerate(ABLATIONS)]
    assert len(methods) == 20
    data = {
        "datasets": [str(path) for path in stores],
        "methods": methods,
        "seeds": [0, 1, 2, 3, 4],
        "train": "last1",
        "evaluate": EVALUATIONS,
        "out": str(folder / "out"),
    }
    path = folder / "big.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_3500_jobs(benchmark, tmp_path, stores):
    path = big_suite(tmp_path, stores)
    plan = benchmark(lambda: plan_sweep(load_suite(path)))
    assert len(plan.jobs) == 3500 and len(plan.trainings) == 500
    benchmark.extra_info["jobs"] = len(plan.jobs)


class _Quiet(Reporter):
    pass


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, stores):
    folder = tmp_path_factory.mktemp("sweep-run")
    data = {
        "datasets": [str(stores[0])],
        "methods": ["early-fusion"],
        "seeds": [0],
        "train": "last1",
        "evaluate": ["full"],
        "out": str(folder / "out"),
        "set": {
            "run.device": "cpu",
            "method.train.iterations": 2,
            "method.train.val_every": 2,
            "method.train.crop_size": 32,
            "method.train.batch_size": 2,
        },
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    plan = plan_sweep(load_suite(path))
    outcome = run_sweep(plan, plan_status(plan), LocalBackend(1), parallel=1, retry_failed=False, reporter=_Quiet())
    assert [result.status for result in outcome.results] == ["done", "done"], outcome.results
    return plan, outcome


def test_status_check_per_job(benchmark, finished_sweep):
    plan, _ = finished_sweep
    statuses = benchmark(plan_status, plan)
    assert all(status.state == "done" for status in statuses.values())
    benchmark.extra_info["jobs"] = len(plan.jobs)


def test_sweep_overhead_per_job(benchmark, finished_sweep):
    _, outcome = finished_sweep
    results = benchmark.pedantic(lambda: outcome.results, rounds=1, iterations=1)
    benchmark.extra_info["sweep_s_per_job"] = [round(result.sweep_s or 0.0, 3) for result in results]
    benchmark.extra_info["startup_s_per_job"] = [round(result.startup_s or 0.0, 3) for result in results]
    benchmark.extra_info["wall_s_per_job"] = [round(result.wall_s, 3) for result in results]
