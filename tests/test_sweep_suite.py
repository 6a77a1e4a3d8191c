"""`mmbench sweep`: the suite file, planning and every bad input, all in-process (nothing is trained).

Bad inputs must be one line on stderr, exit 2, with nothing started (the output root is not created).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Future
from pathlib import Path

import pytest
import yaml
from module_files import benchmark_script
from sweep_cli import sweep

from mmbench.errors import UserError
from mmbench.sweep import load_suite, plan_sweep
from mmbench.sweep.planning import EVAL, TRAIN, order_jobs, select_jobs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("sweep-store") / "tiny.h5", SyntheticConfig(tiles=8, size=64))


def write_suite(folder: Path, **fields) -> Path:
    data = {
        "datasets": ["synthetic"],
        "methods": ["early-fusion"],
        "seeds": [0],
        "train": "last1",
        "evaluate": ["subsets"],
        "out": str(folder / "out"),
        **fields,
    }
    data = {key: value for key, value in data.items() if value is not None}
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_one_training_per_dataset_config_and_seed_and_one_evaluation_per_further_protocol(tmp_path, store):
    suite = load_suite(
        write_suite(
            tmp_path,
            datasets=["synthetic", str(store)],
            methods=[
                "early-fusion",
                {"method": "stars", "name": "stars-no-psa", "set": {"method.psa.enabled": False}},
                {"method": "stars", "name": "stars-v1", "set": ["method.psa.branch=v1"]},
            ],
            seeds=[0, 1],
            evaluate=["last1", "subsets", "minority"],  # last1 is the training protocol: no job of its own
        )
    )
    plan = plan_sweep(suite)
    trainings, evaluations = plan.trainings, plan.evaluations
    assert len(trainings) == 2 * 3 * 2 and len(evaluations) == 2 * 3 * 2 * 2
    assert {job.protocol for job in trainings} == {"last1"}
    assert {job.protocol for job in evaluations} == {"subsets", "minority"}
    assert plan.protocols == ("last1", "subsets", "minority")
    for evaluation in evaluations:
        training = plan.by_id[evaluation.train_id]
        assert training.kind == TRAIN and evaluation.kind == EVAL
        assert (training.dataset, training.config_name, training.seed) == (
            evaluation.dataset,
            evaluation.config_name,
            evaluation.seed,
        )
        assert evaluation.config["method"] == training.config["method"]  # the checkpoint's method section
    by_name = {job.config_name: job for job in trainings if job.seed == 0 and job.dataset == "synthetic"}
    assert by_name["stars-no-psa"].config["method"]["psa"]["enabled"] is False
    assert by_name["stars-v1"].config["method"]["psa"]["branch"] == "v1"
    assert by_name["stars-no-psa"].method == "stars" and by_name["stars-no-psa"].digest != by_name["stars-v1"].digest
    assert len({job.digest for job in plan.jobs}) == len(plan.jobs)
    assert len({job.state_path for job in plan.jobs}) == len(plan.jobs)
    # trainings come seed by seed, so a stopped sweep has every config at the same seeds
    assert [job.seed for job in trainings] == sorted(job.seed for job in trainings)


def test_the_digest_follows_the_resolved_config_not_the_way_it_was_written(tmp_path):
    as_mapping = plan_sweep(load_suite(write_suite(tmp_path, set={"method.train.iterations": 7})))
    as_list = plan_sweep(load_suite(write_suite(tmp_path, set=["method.train.iterations=7"])))
    changed = plan_sweep(load_suite(write_suite(tmp_path, set=["method.train.iterations=8"])))
    assert [job.digest for job in as_mapping.jobs] == [job.digest for job in as_list.jobs]
    assert as_mapping.jobs[0].digest != changed.jobs[0].digest
    assert as_mapping.jobs[0].iterations == 7


def test_dry_run_prints_the_plan_and_starts_nothing(capsys, tmp_path):
    path = write_suite(tmp_path, methods=["early-fusion", "unimodal"], seeds=[0, 1, 2])
    code, out, err = sweep(capsys, path, "--dry-run")
    assert code == 0, err
    assert "12 jobs = 6 trainings" in out and "6 evaluations" in out
    assert "early-fusion" in out and "unimodal" in out and "0, 1, 2" in out
    assert "0 of 12 jobs already done" in out
    assert not (tmp_path / "out").exists()


def test_status_shows_every_job_pending_before_the_first_run(capsys, tmp_path):
    code, out, err = sweep(capsys, write_suite(tmp_path, seeds=[0, 3]), "--status")
    assert code == 0, err
    assert "last1 (train)" in out and "subsets" in out
    assert "0 done, 0 failed, 4 pending, 0 running" in out
    assert not (tmp_path / "out").exists()


def test_only_keeps_the_matching_jobs_and_the_trainings_their_evaluations_need(tmp_path):
    plan = plan_sweep(load_suite(write_suite(tmp_path, methods=["early-fusion", "unimodal"], seeds=[0, 1, 2])))
    part = select_jobs(plan, ["*/unimodal/*", "*/early-fusion/seed2/eval-subsets"])
    assert [job.id for job in part.jobs] == [
        *(f"synthetic/unimodal/seed{seed}/{kind}" for seed in (0, 1) for kind in ("train-last1", "eval-subsets")),
        "synthetic/early-fusion/seed2/train-last1",  # brought by its evaluation
        "synthetic/early-fusion/seed2/eval-subsets",
        "synthetic/unimodal/seed2/train-last1",
        "synthetic/unimodal/seed2/eval-subsets",
    ]
    assert select_jobs(plan, []) is plan


def test_only_applies_to_the_dry_run_and_a_pattern_matching_nothing_is_one_line(capsys, tmp_path):
    path = write_suite(tmp_path, methods=["early-fusion", "unimodal"], seeds=[0, 1, 2])
    code, out, err = sweep(capsys, path, "--dry-run", "--only", "*/seed1/*")
    assert code == 0, err
    assert "4 jobs = 2 trainings" in out
    code, _, err = sweep(capsys, path, "--only", "*/unimodel/*")
    assert code == 2 and err.count("\n") == 1
    assert "--only '*/unimodel/*' matches no job" in err and "synthetic/early-fusion/seed0/train-last1" in err
    assert not (tmp_path / "out").exists()


def test_row_order_finishes_each_method_configs_seeds_before_the_next_and_keeps_every_job(tmp_path, store):
    suite = load_suite(
        write_suite(tmp_path, datasets=["synthetic", str(store)], methods=["early-fusion", "unimodal"], seeds=[2, 0, 1])
    )
    plan = plan_sweep(suite)
    rows = order_jobs(plan, "rows")
    assert order_jobs(plan, "seeds") is plan
    assert sorted(job.id for job in rows.jobs) == sorted(job.id for job in plan.jobs)
    assert [(job.dataset, job.config_name, job.seed) for job in rows.trainings] == [
        (dataset, name, seed)
        for dataset in ("synthetic", "tiny")
        for name in ("early-fusion", "unimodal")
        for seed in (2, 0, 1)  # the suite's seed order, within each row
    ]
    for before, job in itertools.pairwise(rows.jobs):  # each training is followed by its own evaluations
        if job.kind == EVAL:
            assert job.train_id in (before.id, before.train_id)
    with pytest.raises(UserError, match="unknown sweep order 'diagonal'"):
        order_jobs(plan, "diagonal")


class RecordingBackend:
    """A backend that records which jobs it was given and reports each done at once; nothing runs."""

    name = "recording"

    def __init__(self) -> None:
        self.started: list[str] = []

    def _done(self, ids: list[str]) -> Future:
        from mmbench.sweep.jobs import JobResult
        from mmbench.sweep.state import DONE

        self.started.extend(ids)
        future: Future = Future()
        future.set_result([JobResult(job_id, DONE, None, None, "", 0.0) for job_id in ids])
        return future

    def submit(self, job):
        return self._done([job.id])

    def result(self, job, handle):
        return handle.result()[0]

    def submit_evaluations(self, jobs):
        return self._done([job.id for job in jobs])

    def evaluation_results(self, jobs, handle):
        return handle.result()

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


def test_the_driver_starts_trainings_in_row_order(tmp_path):
    """The order reaches the driver: with one job at a time, every training of a row (and its evaluations)
    runs before the next row's first training."""
    from mmbench.sweep.driver import Reporter, run_sweep
    from mmbench.sweep.state import plan_status

    plan = order_jobs(
        plan_sweep(load_suite(write_suite(tmp_path, methods=["early-fusion", "unimodal"], seeds=[0, 1, 2]))), "rows"
    )
    backend = RecordingBackend()
    run_sweep(plan, plan_status(plan), backend, parallel=1, retry_failed=False, reporter=Reporter())
    assert [job_id.rsplit("/", 1)[0] for job_id in backend.started if job_id.endswith("train-last1")] == [
        f"synthetic/{name}/seed{seed}" for name in ("early-fusion", "unimodal") for seed in (0, 1, 2)
    ]
    assert backend.started.index("synthetic/early-fusion/seed2/eval-subsets") < backend.started.index(
        "synthetic/unimodal/seed0/train-last1"
    )


@pytest.mark.parametrize(
    ("load", "machine_cores", "sweep_cores", "noted"),
    [
        (2.1, 2, 2, True),  # another unpinned sweep's two trainings: this one would add 2 threads more
        (1.0, 2, 1, False),  # the other sweep on core 0, this one pinned to core 1 (taskset -c 1)
        (0.1, 2, 2, False),  # an idle machine
        (1.0, 2, 2, True),  # one core busy, and this sweep would use both
        (1.8, 2, 1, True),  # pinned to one core, but both look busy (e.g. the load of runs stopped a minute ago)
        (3.0, 16, 8, False),  # a large machine with room left
    ],
)
def test_a_sweep_notes_when_the_cores_it_will_fill_look_busy(monkeypatch, load, machine_cores, sweep_cores, noted):
    from mmbench.sweep import backends

    monkeypatch.setattr(backends, "available_cores", lambda: sweep_cores)
    note = backends.busy_cores_note(load=load, machine_cores=machine_cores)
    assert (note is not None) == noted
    if noted:
        assert f"{load:.1f} on this machine's {machine_cores} cores" in note and "taskset -c" in note
        assert f"will run {sweep_cores} thread{'' if sweep_cores == 1 else 's'} in all" in note


@pytest.mark.parametrize("load", [0.0, 2.5])
def test_mmbench_sweep_prints_the_busy_cores_note_once_before_it_starts(capsys, monkeypatch, tmp_path, load):
    from mmbench.sweep import backends

    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(backends, "available_cores", lambda: 2)
    recording = RecordingBackend()
    monkeypatch.setattr(backends, "make_backend", lambda *args, **kwargs: recording)
    code, _, err = sweep(capsys, write_suite(tmp_path), "--quiet")
    assert code == 0, err
    assert recording.started  # the sweep went on
    assert err.count("note: the 1-minute load average") == (1 if load else 0)


def test_order_is_a_command_line_choice(capsys, tmp_path):
    path = write_suite(tmp_path, methods=["early-fusion", "unimodal"], seeds=[0, 1])
    code, out, err = sweep(capsys, path, "--dry-run", "--order", "rows")
    assert code == 0, err
    assert "8 jobs = 4 trainings" in out
    code, _, err = sweep(capsys, path, "--dry-run", "--order", "diagonal")
    assert code == 2 and "invalid choice: 'diagonal'" in err


BAD_SUITES = [
    ({"methods": ["starz"]}, "unknown method 'starz'"),
    ({"train": "last2"}, "unknown protocol 'last2'"),
    ({"evaluate": ["subsetz"]}, "unknown protocol 'subsetz'"),
    ({"datasets": ["potsdam"]}, "unknown dataset 'potsdam'"),
    ({"datasets": ["/nowhere/potsdam.h5"]}, "does not exist"),
    ({"seeds": []}, "'seeds' is empty"),
    ({"seeds": [0, 0]}, "lists a seed twice"),
    ({"seed": [0]}, "unknown key 'seed' (did you mean 'seeds'?)"),
    ({"methods": [{"method": "stars", "sett": {}}]}, "unknown key methods[0].'sett'"),
    ({"methods": ["stars", {"method": "stars"}]}, "two methods have the display name 'stars'"),
    ({"set": {"method.train.iterationz": 3}}, "unknown config key 'method.train.iterationz'"),
    ({"set": {"method.train.iterations": "many"}}, "expects a int"),
    ({"methods": [{"method": "stars", "set": {"method.psa.branch": "v9"}}]}, "method.psa.branch"),
    ({"set": {"run.seed": 3}}, "run.seed is set by the suite's 'seeds'"),
    ({"set": {"protocol.window": -1}}, "protocol.window"),
    ({"methods": [{"method": "stars", "config": "missing.yaml"}]}, "missing.yaml' does not exist"),
    ({"executor": {"gpus_per_node": -1}}, "executor.gpus_per_node must be an integer >= 0"),
    ({"executor": {"partitio": "gpu"}}, "unknown key executor.'partitio'"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_SUITES, ids=[message for _, message in BAD_SUITES])
def test_a_bad_suite_is_one_line_exit_2_and_starts_nothing(capsys, tmp_path, fields, message):
    code, out, err = sweep(capsys, write_suite(tmp_path, **fields))
    assert code == 2, (out, err)
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("mmbench sweep: error:")
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_output_root_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    code, _, err = sweep(capsys, write_suite(tmp_path, out=str(tmp_path / "taken")))
    assert code == 2 and "is a file" in err and err.count("\n") == 1


def test_a_missing_suite_file_and_an_unknown_shipped_name_are_one_line(capsys, tmp_path):
    code, _, err = sweep(capsys, tmp_path / "none.yaml")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    code, _, err = sweep(capsys, "no-such-suite")
    assert code == 2 and "neither a file nor a shipped suite" in err


def test_slurm_needs_sbatch(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    code, _, err = sweep(capsys, write_suite(tmp_path), "--executor", "slurm")
    assert code == 2 and "needs Slurm's sbatch and srun" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_slurm_needs_submitit(capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "submitit" else real(name, *a))
    code, _, err = sweep(capsys, write_suite(tmp_path), "--executor", "slurm")
    assert code == 2 and "needs submitit" in err and "pip install" in err
    assert not (tmp_path / "out").exists()


def test_environment_variables_in_paths(tmp_path, store, monkeypatch):
    monkeypatch.setenv("SWEEP_TEST_DATA", str(store.parent))
    suite = load_suite(write_suite(tmp_path, datasets=["${SWEEP_TEST_DATA}/tiny.h5", "${UNSET_VAR_X:-synthetic}"]))
    assert suite.datasets == (str(store), "synthetic")
    monkeypatch.delenv("SWEEP_TEST_DATA")
    with pytest.raises(Exception, match="SWEEP_TEST_DATA"):
        load_suite(write_suite(tmp_path, datasets=["${SWEEP_TEST_DATA}/tiny.h5"]))


SHIPPED = sorted((REPO / "suites").glob("*.yaml"))


@pytest.fixture
def paper_data(tmp_path, monkeypatch, store) -> Path:
    """The paper-scale suites name converted stores under $MMBENCH_DATA; tiny stand-ins let them plan."""
    for name in ("isprs-vaihingen", "isprs-potsdam", "whu-opt-sar", "earthmiss"):
        os.link(store, tmp_path / f"{name}.h5")
    monkeypatch.setenv("MMBENCH_DATA", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_shipped_suite_plans_in_a_dry_run(capsys, tmp_path, paper_data, path):
    code, out, err = sweep(capsys, path, "--dry-run", "--out", tmp_path / "out")
    assert code == 0, err
    assert "dry run of suite" in out and "nothing is started" in out


def test_docs_sweeps_lists_every_shipped_suite():
    """docs/sweeps.md's table of shipped suites is where users pick one: a suite missing there is one they
    cannot find, and a row without a suite file names one they cannot run."""
    table = (REPO / "docs" / "sweeps.md").read_text().split("Shipped suites", 1)[1].split("## ", 1)[0]
    listed = {
        name for row in table.splitlines() if row.startswith("| `") for name in row.split("|")[1].split("`")[1::2]
    }
    assert listed == {path.stem for path in SHIPPED}


def test_the_shipped_suites_are_the_published_ones():
    names = {path.stem for path in SHIPPED}
    assert {"synthetic-cpu", "stars-ablations"} <= names
    assert len([name for name in names if name.startswith("paper-")]) >= 4
    board = load_suite(REPO / "suites" / "synthetic-cpu.yaml")
    from mmbench.registry import METHODS

    assert sorted(m.method for m in board.methods) == sorted(METHODS.names())  # every built-in method
    assert board.train == "last1" and board.evaluate == ("subsets", "minority") and len(board.seeds) == 3
    assert board.overrides[:4] == (
        "dataset.version=1",
        "dataset.redundancy=0",
        "dataset.tiles=48",
        "dataset.test_share=0",
    )
    board_v2 = load_suite(REPO / "suites" / "synthetic-v2.yaml")
    assert sorted(m.method for m in board_v2.methods) == sorted(METHODS.names())
    assert board_v2.evaluate == ("subsets", "minority", "random-drop") and len(board_v2.seeds) == 3
    assert "method.train.iterations=3000" in board_v2.overrides  # one matched budget for every method


def test_the_redundancy_study_crosses_six_methods_with_three_levels():
    study = load_suite(REPO / "suites" / "redundancy-study.yaml")
    levels = {}
    for config in study.methods:
        (level,) = [o.split("=")[1] for o in config.overrides if o.startswith("dataset.redundancy=")]
        levels.setdefault(config.name.rsplit("-r", 1)[0], set()).add(float(level))
    assert set(levels) == {"stars", "stars-translator-copy", "modality-dropout", "cgan", "gemmnet", "mmformer"}
    assert all(found == {0.0, 0.5, 1.0} for found in levels.values()), levels
    assert len(study.seeds) >= 3


def test_the_study_and_the_ablations_share_the_boards_runs_instead_of_training_them_twice():
    """`reuse:` takes a finished job whose resolved config equals the planned one (display name aside,
    mmbench/sweep/state.py): the redundancy study's 0.5 cells must be the board's rows, and the ablations'
    default STARS and joint-norm ShaSpec too, or the shared budget would silently stop being shared."""
    from mmbench.sweep.state import unlabelled

    def trainings(name: str) -> dict[str, dict]:
        plan = plan_sweep(load_suite(REPO / "suites" / f"{name}.yaml"))
        return {job.config_name: unlabelled(job.expected_config()) for job in plan.trainings if job.seed == 0}

    board, study, ablations = trainings("synthetic-v2"), trainings("redundancy-study"), trainings("stars-ablations-v2")
    for method in ("stars", "modality-dropout", "cgan", "gemmnet", "mmformer"):
        assert study[f"{method}-r0.5"] == board[method], method
    assert study["stars-translator-copy-r0.5"] == ablations["stars-translator-copy"]
    assert ablations["stars"] == board["stars"] and ablations["shaspec-norm-joint"] == board["shaspec"]
    assert study["stars-r0"] != board["stars"]  # the other levels are the study's own runs
    suites = {name: load_suite(REPO / "suites" / f"{name}.yaml") for name in ("redundancy-study", "stars-ablations-v2")}
    assert suites["redundancy-study"].reuse == (
        Path("runs/sweeps/synthetic-v2"),
        Path("runs/sweeps/stars-ablations-v2"),
    )
    assert suites["stars-ablations-v2"].reuse == (
        Path("runs/sweeps/synthetic-v2"),
        Path("runs/sweeps/redundancy-study"),
    )


def test_the_stars_ablation_suite_matches_the_ablation_script():
    module = benchmark_script("stars_ablation")
    suite = load_suite(REPO / "suites" / "stars-ablations.yaml")
    variants = {(config.method, tuple(sorted(config.overrides))) for config in suite.methods}
    expected = {(method, tuple(sorted(overrides))) for method, overrides in module.VARIANTS.values()}
    assert variants == expected
    assert suite.train == "last1" and suite.evaluate == ("minority",)
    on_v2 = load_suite(REPO / "suites" / "stars-ablations-v2.yaml")
    assert {(config.method, tuple(sorted(config.overrides))) for config in on_v2.methods} == expected
    assert not any(o.startswith("dataset.") for o in on_v2.overrides) and len(on_v2.seeds) >= 3


def test_list_suites(capsys):
    code, out, _ = sweep(capsys, "--list-suites")
    assert code == 0 and "synthetic-cpu" in out and "stars-ablations" in out


def test_costs_are_estimated_from_recorded_seconds_per_step(tmp_path):
    from mmbench.sweep.display import estimate_costs
    from mmbench.sweep.state import DONE, PENDING, JobStatus

    plan = plan_sweep(load_suite(write_suite(tmp_path, seeds=[0, 1], set={"method.train.iterations": 100})))
    statuses = {job.id: JobStatus(PENDING) for job in plan.jobs}
    train0, eval0 = (job for job in plan.jobs if job.seed == 0)
    # seed 0's training ran 10 steps/s (train 10 s of 12 s); its process started in 3 s more
    statuses[train0.id] = JobStatus(
        DONE, data={"timing": {"steps_per_s": 10.0, "train_s": 10.0, "total_s": 12.0}, "child_s": 15.0}
    )
    statuses[eval0.id] = JobStatus(DONE, data={"timing": {"total_s": 4.0}, "child_s": 7.0})
    costs = estimate_costs(plan, statuses)
    train1, eval1 = (job for job in plan.jobs if job.seed == 1)
    assert costs[train1.id] == pytest.approx(100 / 10.0 + 2.0 + 3.0)
    assert costs[eval1.id] == pytest.approx(4.0 + 3.0)
    other = plan_sweep(load_suite(write_suite(tmp_path, methods=["unimodal"])))
    assert set(estimate_costs(other, {job.id: JobStatus(PENDING) for job in other.jobs}).values()) == {None}


def test_a_config_without_records_borrows_its_methods_costs_marked_approximate(tmp_path):
    """A redundancy level or an ablation of a method that has records is estimated from them (≈); a method
    with none stays unknown, and a config's own records win over its method's."""
    from mmbench.sweep.display import estimate_costs
    from mmbench.sweep.state import DONE, PENDING, JobStatus

    methods = [
        {"method": "stars", "name": "stars-a"},
        {"method": "stars", "name": "stars-b", "set": ["method.translator=copy"]},
        {"method": "unimodal"},
    ]
    suite = write_suite(tmp_path, methods=methods, seeds=[0, 1], set={"method.train.iterations": 100})
    plan = plan_sweep(load_suite(suite))
    statuses = {job.id: JobStatus(PENDING) for job in plan.jobs}
    jobs = {(job.config_name, job.seed, job.kind): job for job in plan.jobs}
    timing = {"timing": {"steps_per_s": 10.0, "train_s": 10.0, "total_s": 12.0}, "child_s": 12.0}
    statuses[jobs[("stars-a", 0, "train")].id] = JobStatus(DONE, data=timing)
    approximate: set[str] = set()
    costs = estimate_costs(plan, statuses, approximate)
    assert costs[jobs[("stars-a", 1, "train")].id] == pytest.approx(100 / 10.0 + 2.0)
    assert costs[jobs[("stars-b", 0, "train")].id] == pytest.approx(100 / 10.0 + 2.0)
    assert approximate == {jobs[("stars-b", seed, "train")].id for seed in (0, 1)}
    assert costs[jobs[("unimodal", 0, "train")].id] is None
    assert costs[jobs[("stars-b", 0, "eval")].id] is None  # no evaluation of stars recorded yet
    slower = {"timing": {"steps_per_s": 5.0, "train_s": 20.0, "total_s": 22.0}, "child_s": 22.0}
    statuses[jobs[("stars-b", 0, "train")].id] = JobStatus(DONE, data=slower)
    approximate.clear()
    costs = estimate_costs(plan, statuses, approximate)
    assert costs[jobs[("stars-b", 1, "train")].id] == pytest.approx(100 / 5.0 + 2.0)  # its own record wins
    assert costs[jobs[("stars-a", 1, "train")].id] == pytest.approx(100 / 10.0 + 2.0) and not approximate


def test_one_sweep_per_output_root(capsys, tmp_path):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with (out / ".sweep.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 1234 on elsewhere")
        held.flush()
        code, _, err = sweep(capsys, write_suite(tmp_path))
    assert code == 2 and "another sweep (pid 1234 on elsewhere) is running on" in err and err.count("\n") == 1
    # the ways to use more cores meanwhile, without two sweeps' threads oversubscribing the same cores
    assert "run again with --jobs N" in err and "its own --out DIR" in err and "taskset -c" in err
    assert sorted(path.name for path in out.iterdir()) == [".sweep.lock"]  # nothing started


def test_a_corrupt_state_file_is_reported_and_the_job_runs_again(capsys, tmp_path):
    from mmbench.sweep.state import PENDING, plan_status

    plan = plan_sweep(load_suite(write_suite(tmp_path)))
    training = plan.trainings[0]
    training.state_path.parent.mkdir(parents=True)
    training.state_path.write_text('{"status": "do')
    status = plan_status(plan)[training.id]
    assert status.state == PENDING and "is corrupt" in status.problem
    code, out, err = sweep(capsys, write_suite(tmp_path), "--status")
    assert code == 0 and "is corrupt" in err and "0 done, 0 failed, 2 pending" in out


def test_every_job_carries_its_display_name_as_run_label(tmp_path):
    """Boards label rows by `run.label` (mmbench/leaderboard/board.py), so a suite's STARS ablations show as
    their names, not as `stars [config id]`; names that YAML would read as numbers stay strings."""
    methods = [{"name": "no fusion", "method": "early-fusion"}, {"name": "1", "method": "early-fusion"}]
    plan = plan_sweep(load_suite(write_suite(tmp_path, methods=methods, evaluate=["subsets"])))
    labels = {job.config_name: job.config["run"]["label"] for job in plan.jobs}
    assert labels == {"no fusion": "no fusion", "1": "1"}


def test_the_order_choices_are_the_planners_orders():
    """The parser lists the orders as literals (it imports nothing from the sweep, for every command's start-up
    time); this keeps them the planner's."""
    from mmbench.cli.main import build_parser
    from mmbench.sweep.planning import ORDERS

    commands = next(action for action in build_parser()._actions if action.dest == "command")
    order = next(action for action in commands.choices["sweep"]._actions if action.dest == "order")
    assert tuple(order.choices) == tuple(ORDERS) and order.default == ORDERS[0]
