"""The scripts that move sweep records into docs/results and rewrite the redundancy study's page from them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from module_files import benchmark_script

from mmbench.leaderboard import statistics as st

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "results" / "records" / "redundancy-study-1500"


def test_copy_sweep_records_copies_only_finished_jobs_under_their_cell_names(tmp_path):
    copy = benchmark_script("copy_sweep_records")
    record = next(RECORDS.glob("stars-r0-seed0-last1.json"))
    for config, status in (("stars-r0", "done"), ("stars-r1", "running")):
        seed_dir = tmp_path / "sweep" / "synthetic" / config / "seed0"
        (seed_dir / "runs").mkdir(parents=True)
        shutil.copyfile(record, seed_dir / "runs" / "result.json")
        state = {"status": status, "record": "runs/result.json"}
        (seed_dir / "train-last1.state.json").write_text(json.dumps(state))
    assert copy.main([str(tmp_path / "sweep"), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stars-r0-seed0-last1.json"]


def test_restored_records_make_a_fresh_sweep_count_their_jobs_done(tmp_path):
    """A clone without the sweep's output root resumes the 6,000-step board from its committed records."""
    from mmbench.sweep.planning import plan_sweep
    from mmbench.sweep.state import DONE, PENDING, plan_status
    from mmbench.sweep.suite import load_suite

    committed = REPO / "docs" / "results" / "records" / "synthetic-v2-6000"
    records = tmp_path / "records"
    records.mkdir()
    for source in committed.glob("stars-seed0-*.json"):  # one whole seed: the training and its 3 evaluations
        shutil.copyfile(source, records / source.name)
    (records / "not-a-sweep.json").write_text(json.dumps({"seed": 0, "config": {"run": {"out": "runs"}}}))
    restore = benchmark_script("restore_sweep_records")
    placed, skipped = restore.restore(records, tmp_path / "sweep")
    assert placed == 4 and len(skipped) == 1 and "not-a-sweep.json" in skipped[0]
    assert restore.restore(records, tmp_path / "sweep")[0] == 0  # never twice, never over a record

    plan = plan_sweep(load_suite(REPO / "suites" / "synthetic-v2-6000.yaml", out=tmp_path / "sweep"))
    statuses = plan_status(plan)
    state = {job.id: statuses[job.id].state for job in plan.jobs if "/stars/" in job.id}
    assert [state[f"synthetic/stars/seed0/{kind}"] for kind in ("train-last1", "eval-subsets")] == [DONE, DONE]
    assert sum(value == DONE for value in state.values()) == 4 and state["synthetic/stars/seed1/train-last1"] == PENDING


def test_redundancy_report_gives_cells_and_paired_differences(tmp_path):
    report = benchmark_script("redundancy_report")
    record = RECORDS / "stars-r0-seed0-last1.json"
    for config in ("stars", "stars-translator-copy"):
        shutil.copyfile(record, tmp_path / f"{config}-r0-seed0-last1.json")
    block = report.report(tmp_path)
    assert "| stars | 0 | 0 | 59.2 | 59.2 [58.6, 59.8] ⚠ fewer than 3 seeds |" in block
    assert "Cells with fewer than 3 seeds (18 of 18): stars at 0, stars at 0.5," in block
    # The same records on both sides: a difference of exactly 0 with a degenerate interval.
    row = next(line for line in block.splitlines() if line.startswith("| translation"))
    assert row.startswith("| translation (STARS vs its identity translator) | 0 | 1 | 0.0 [0.0, 0.0] |")
    assert row.count("0.0 [0.0, 0.0]") == 4  # the mean and each of the three one-modality scenarios
    assert row.endswith("| – |")  # no subsets records: no every-modality column value
    doc = tmp_path / "page.md"
    doc.write_text("intro\n<!-- study:progress -->\nold\n<!-- /study:progress -->\ntail\n")
    assert report.main([str(tmp_path), "--marker", "study", "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("tail\n") and "59.2" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.report(empty) == f"No last1 records in {empty.as_posix()}/ yet."


def test_redundancy_report_says_when_every_cell_is_complete(tmp_path, monkeypatch):
    report = benchmark_script("redundancy_report")
    record = RECORDS / "stars-r0-seed0-last1.json"
    for config in ("stars", "stars-translator-copy"):
        for seed in (0, 1):  # the same record under two seed names: enough for a threshold of 2
            shutil.copyfile(record, tmp_path / f"{config}-r0-seed{seed}-last1.json")
    monkeypatch.setattr(report, "METHODS", ("stars", "stars-translator-copy"))
    monkeypatch.setattr(report, "LEVELS", ("0",))
    monkeypatch.setattr(report, "MIN_SEEDS", 2)
    block = report.report(tmp_path)
    assert "Every one of the 2 cells has at least 2 seeds." in block
    assert "Cells with fewer" not in block


def test_redundancy_report_puts_the_every_modality_gap_beside_each_comparison(tmp_path):
    """With subsets records the last column of a comparison is a − b in the scenario with every modality
    present, the paired comparison of those records' own matrices; and of a change, the change of that gap."""
    from mmbench.leaderboard import statistics as st
    from mmbench.leaderboard.collect import collect_records
    from mmbench.leaderboard.table_statistics import scored_classes, unit_matrices

    report = benchmark_script("redundancy_report")
    for config, source in (("stars", "stars"), ("stars-translator-copy", "stars-translator-copy")):
        for level in ("0", "1"):
            for protocol in ("last1", "subsets"):
                name = f"{source}-r{level}-seed0-{protocol}.json"
                shutil.copyfile(RECORDS / name, tmp_path / f"{config}-r{level}-seed0-{protocol}.json")
    block = report.report(tmp_path)
    header = next(line for line in block.splitlines() if line.startswith("| comparison | redundancy"))
    assert header.endswith("| optical+dsm+sar (subsets): a − b |")
    records, _ = collect_records([tmp_path])
    by_name = {item.path.name: item for item in records}
    a, b = (by_name[f"{config}-r0-seed0-subsets.json"] for config in ("stars", "stars-translator-copy"))
    index = [scenario["name"] for scenario in a.record["scenarios"]].index("optical+dsm+sar")
    scored = scored_classes(a.record, None, unit_matrices(a)[1].shape[-1])
    want = st.paired_comparison({0: unit_matrices(a)[1]}, {0: unit_matrices(b)[1]}, scored, statistic=index)
    row = next(line for line in block.splitlines() if line.startswith("| translation") and "| 0 |" in line)
    cell = f"{100 * want.difference:.1f} [{100 * want.low:.1f}, {100 * want.high:.1f}]"
    assert row.endswith(f"| {cell} |") and abs(want.difference) > 0.001
    change = next(line for line in block.splitlines() if "| 0 → 1 |" in line)
    assert change.count("[") == 2 and not change.endswith("| – |")


def test_redundancy_report_gives_the_change_of_a_gain_between_levels(tmp_path):
    """Level 0: STARS against its identity translator (seed 0 of the first round); level 1: one STARS record
    on both sides (a gain of exactly 0). The change 0 -> 1 is then minus level 0's gain, with an interval."""
    report = benchmark_script("redundancy_report")
    for config, source in (("stars", "stars-r0"), ("stars-translator-copy", "stars-translator-copy-r0")):
        shutil.copyfile(RECORDS / f"{source}-seed0-last1.json", tmp_path / f"{config}-r0-seed0-last1.json")
        shutil.copyfile(RECORDS / "stars-r1-seed0-last1.json", tmp_path / f"{config}-r1-seed0-last1.json")
    block = report.report(tmp_path)
    rows = {line.split(" | ")[1]: line for line in block.splitlines() if line.startswith("| translation")}
    gain_0 = float(rows["0"].split(" | ")[3].split(" [")[0])
    change = rows["0 → 1"].split(" | ")[3]
    assert gain_0 > 0.5 and float(change.split(" [")[0]) == -gain_0
    low, high = (float(v) for v in change.split(" [")[1].split(" ⚠")[0].rstrip("]").split(", "))
    assert low < -gain_0 < high and "⚠ fewer than 3 paired seeds" in rows["0 → 1"]
    # one seed: the change has its p but is in no Holm family (not a claim), and the caption says so
    assert re.search(r"⚠ fewer than 3 paired seeds \| (\d\.\d{3}|< 0\.001); Holm – \|", rows["0 → 1"])
    assert "Holm-adjusted over the changes with at least 3 paired seeds (0: nothing to adjust):" in block


def test_dis2_compensation_bn_recalibrates_only_the_compensation_encoders_statistics():
    import torch

    from mmbench.config import load_defaults
    from mmbench.method import build_method
    from mmbench.registry import METHODS

    diagnostic = benchmark_script("dis2_compensation_bn")
    spec = METHODS.get("dis2")
    config = {**load_defaults(spec.defaults, "dis2"), **spec.load().tiny_config}
    channels = {"optical": 3, "dsm": 1, "sar": 1}
    torch.manual_seed(0)
    model = build_method(spec, channels, 6, config)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    batches = [{n: torch.randn(8, c, 32, 32, generator=generator) + 3.0 for n, c in channels.items()} for _ in range(4)]
    norm = next(m for m in model.compensation["dsm"]["optical"].modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    norm.register_forward_hook(lambda module, args, out: seen.append(args[0].mean(dim=(0, 2, 3)).detach()))
    diagnostic.recalibrate(model, batches, keep=None, seed=0)
    after = model.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    stats = {key for key in changed if key.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert changed and changed == stats and all(key.startswith("compensation.") for key in changed)
    assert not model.training and all(not m.training for m in model.modules())
    norms = diagnostic._compensation_norms(model)
    assert all(n.momentum == 0.1 and int(n.num_batches_tracked) == 4 for n in norms)
    # Every batch counts alike: the running mean is the average of the 4 batches' means, all 8 rows each.
    assert len(seen) == 4
    torch.testing.assert_close(norm.running_mean, torch.stack(seen).mean(0), rtol=1e-5, atol=1e-6)


class _ConstantImputer:
    """Imputes every missing modality as one constant per band; checks that what it is not given is 0-filled
    and flagged missing, as the evaluation engine would give it."""

    def __init__(self, modalities, values):
        self.modality_names, self.values = tuple(modalities), values

    def complete(self, inputs, available):

        completed = {}
        for index, name in enumerate(self.modality_names):
            if bool(available[:, index].all()):
                completed[name] = inputs[name]
                continue
            assert not bool(available[:, index].any()) and not bool(inputs[name].any())
            completed[name] = self.values[name].view(1, -1, 1, 1).expand_as(inputs[name]).clone()
        return completed


def _tiny_test_part(tmp_path):
    from mmbench.data.loader import TileDataset
    from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic

    store = write_synthetic(tmp_path / "s.h5", SyntheticConfig(tiles=8, size=64, version=2, redundancy=0.5))
    return TileDataset(store, split="default", part="test", modalities=["optical", "dsm", "sar"], label_variant="full")


def test_imputation_recovery_scores_the_part_mean_as_0_and_zero_fill_by_its_formula(tmp_path):
    """R² of imputing the part's mean is 0 for every (target, given), whole tiles or overlapping windows; R² of
    imputing 0 is 1 − Σy² / Σ(y − ȳ)², computed here from the tiles themselves."""
    import numpy as np
    import torch

    recovery = benchmark_script("imputation_recovery")
    data = _tiny_test_part(tmp_path)
    stacked = {name: torch.stack([data[i]["inputs"][name] for i in range(len(data))]) for name in data.modalities}
    means = {name: x.mean(dim=(0, 2, 3)) for name, x in stacked.items()}
    for window, stride in ((None, None), (48, 16)):
        scorer = recovery.InputImputation(_ConstantImputer(data.modalities, means), window, stride)
        tiles, entries = recovery.measure_model(scorer, data)
        assert len(tiles) == len(data) and len(entries) == 9
        for entry in entries:
            errors, deviations = (np.asarray([entry[key]]) for key in ("squared_error", "squared_deviation"))
            point, _ = recovery.r2_replicates(errors, deviations, n_boot=50, rng_seed=0)
            assert abs(point) < 1e-5, (window, entry["target"], entry["given"])
    zeros = {name: torch.zeros_like(value) for name, value in means.items()}
    _, entries = recovery.measure_model(
        recovery.InputImputation(_ConstantImputer(data.modalities, zeros), None, None), data
    )
    for entry in entries:
        y = stacked[entry["target"]].double()
        want = 1 - (y**2).sum(dim=(0, 2, 3)) / ((y - y.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum(dim=(0, 2, 3))
        errors, deviations = (np.asarray([entry[key]]) for key in ("squared_error", "squared_deviation"))
        point, _ = recovery.r2_replicates(errors, deviations, n_boot=50, rng_seed=0)
        assert point < 0 and abs(point - float(want.mean())) < 1e-4


@pytest.mark.parametrize("translator", ["copy", "learned"])
def test_shared_feature_recovery_without_translation_is_the_source_features_r2(tmp_path, translator):
    """Without translation the decoder gets a given modality's own shared features for a missing one: STARS with
    `translator: copy` hands them over, and for learned translators the script scores them as the
    `_untranslated` variant. Either way its R² for dsm ← optical is 1 − Σ(S_optical − S_dsm)² / Σ(S_dsm − mean)²
    per pyramid level (channels pooled, levels averaged) and its cosine the mean over positions of
    cos(S_optical, S_dsm), both computed here from the encoder directly; the learned translators score otherwise."""
    import numpy as np
    import torch

    from mmbench.config import load_defaults
    from mmbench.method import build_method
    from mmbench.registry import METHODS

    recovery = benchmark_script("imputation_recovery")
    data = _tiny_test_part(tmp_path)
    spec = METHODS.get("stars")
    config = {**load_defaults(spec.defaults, "stars"), **spec.load().tiny_config, "translator": translator}
    torch.manual_seed(0)
    model = build_method(spec, {"optical": 3, "dsm": 1, "sar": 1}, 6, config).eval()
    _, entries = recovery.measure_model(recovery.SharedTranslation(model), data)
    (entry,) = [e for e in entries if (e["target"], e["given"]) == ("dsm", ["optical"])]
    with torch.inference_mode():
        inputs = {n: torch.stack([data[i]["inputs"][n] for i in range(len(data))]) for n in data.modalities}
        shared = {n: model.encode(n, x)["shared"] for n, x in inputs.items()}
    want, want_cosine = [], []
    for source, target in zip(shared["optical"], shared["dsm"], strict=True):
        source, target = source.double(), target.double()
        spread = ((target - target.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum()
        want.append(1 - float(((source - target) ** 2).sum() / spread))
        want_cosine.append(float(torch.nn.functional.cosine_similarity(source, target, dim=1).mean()))
    suffix = "" if translator == "copy" else "_untranslated"
    assert ("squared_error_untranslated" in entry) == (translator == "learned")

    def scored(numerator, denominator, replicates):
        point, _ = replicates(np.asarray([entry[numerator]]), np.asarray([entry[denominator]]), 50, 0)
        return point

    r2 = scored("squared_error" + suffix, "squared_deviation", recovery.r2_replicates)
    cosine = scored("cosine_sum" + suffix, "positions", recovery.cosine_replicates)
    assert len(entry["positions"][0]) == len(want) > 1
    assert abs(r2 - float(np.mean(want))) < 1e-6 and abs(cosine - float(np.mean(want_cosine))) < 1e-6
    if translator == "learned":
        assert abs(scored("squared_error", "squared_deviation", recovery.r2_replicates) - r2) > 1e-3


def _recovery_record(method, level, seed, r2, tiles=4):
    deviations = [[float(1 + tile)] for tile in range(tiles)]  # a different spread per tile, one band
    return {
        "format": "mmbench-imputation-recovery/1",
        "method": {"name": method, "version": "1"},
        "label": f"{method}-r{level:g}",
        "space": "input",
        "seed": seed,
        "dataset": {"config": {"redundancy": level}},
        "tiles": [str(tile) for tile in range(tiles)],
        "entries": [
            {
                "target": "dsm",
                "given": ["optical"],
                "squared_error": [[d[0] * (1 - r2)] for d in deviations],
                "absolute_error": [[0.0] for _ in deviations],
                "squared_deviation": deviations,
            }
        ],
    }


def test_imputation_recovery_report_gives_each_level_and_the_change(tmp_path):
    """Every tile at R² 0.2 (level 0) and 0.5 (level 1): the cells and the change are exact, and so are
    their intervals, whatever the resampling draws; a cell with 2 seeds is marked."""
    recovery = benchmark_script("imputation_recovery")
    for seed in range(3):
        for level, r2 in ((0.0, 0.2), (1.0, 0.5)):
            (tmp_path / f"cgan-r{level:g}-seed{seed}.json").write_text(
                json.dumps(_recovery_record("cgan", level, seed, r2))
            )
    for seed in range(2):
        (tmp_path / f"ae-r1-seed{seed}.json").write_text(json.dumps(_recovery_record("ae", 1.0, seed, 0.4)))
    for seed in range(3):
        (tmp_path / f"ae-r0-seed{seed}.json").write_text(json.dumps(_recovery_record("ae", 0.0, seed, 0.1)))
    table = recovery.report(tmp_path, n_boot=200)
    assert "| cgan | dsm ← optical | 0.20 [0.20, 0.20] | 0.50 [0.50, 0.50] | +0.30 [+0.30, +0.30] |" in table
    assert "| ae | dsm ← optical | 0.10 [0.10, 0.10] | 0.40 [0.40, 0.40] ⚠ | +0.30 [+0.30, +0.30] ⚠ |" in table


def test_imputation_recovery_takes_a_record_only_with_the_checkpoint_it_scored(tmp_path):
    recovery = benchmark_script("imputation_recovery")
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights")
    record = tmp_path / "result.json"
    for named, message in (
        ({"path": str(tmp_path / "gone.ckpt"), "sha256": "sha256:0"}, "is not on this machine"),
        ({"path": str(checkpoint), "sha256": "sha256:0"}, "sha256 differs"),
    ):
        record.write_text(json.dumps({"run_id": "r", "method": {"checkpoint": named}}))
        try:
            recovery.checkpoint_of(record)
        except recovery.MeasurementError as error:
            assert message in str(error)
        else:
            raise AssertionError("a record whose checkpoint is gone or changed was accepted")
        assert recovery.main(["measure", str(record), "--out", str(tmp_path / "out")]) == 2
    assert not list((tmp_path / "out").iterdir())


def test_imputation_recovery_writes_records_that_read_back_whole(tmp_path):
    recovery = benchmark_script("imputation_recovery")
    record = {**_recovery_record("cgan", 0.0, 0, 0.3), "env": {"cpu": "x"}}
    recovery.write_atomically(tmp_path / "cgan-r0-seed0.json", record)
    assert json.loads((tmp_path / "cgan-r0-seed0.json").read_text()) == record
    assert [p.name for p in tmp_path.iterdir()] == ["cgan-r0-seed0.json"]


def test_imputation_recovery_names_a_method_it_cannot_measure():
    recovery = benchmark_script("imputation_recovery")
    with pytest.raises(recovery.NotMeasurable, match="neither imputes"):
        recovery.scorer_for(object(), None, None)
    with pytest.raises(recovery.MeasurementError, match="whole tiles"):
        recovery.scorer_for(type("Translating", (), {"translated_shared": lambda self: None})(), 64, 32)


def _ablation_folder(tmp_path, configs):
    """The board's STARS seed-0 records (last1, subsets, minority) under each config name: every variant
    identical to its reference."""
    source = REPO / "docs" / "results" / "records" / "synthetic-v2"
    folder = tmp_path / "records"
    folder.mkdir()
    for config in configs:
        for protocol in ("last1", "subsets", "minority"):
            shutil.copyfile(source / f"stars-seed0-{protocol}.json", folder / f"{config}-seed0-{protocol}.json")
    return folder


def test_ablation_report_pairs_each_variant_with_its_methods_default_config(tmp_path):
    report = benchmark_script("ablation_report")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "methods:\n"
        "  - {method: stars, name: stars}\n"
        "  - {method: stars, name: stars-no-psa, set: [method.psa.enabled=false]}\n"
        "  - {method: shaspec, name: shaspec-norm-joint}\n"
        "  - {method: shaspec, name: shaspec-norm-per-call, set: [method.shared_norm=per_call]}\n"
    )
    assert [(v.name, v.reference) for v in report.variants(suite)] == [
        ("stars", None),
        ("stars-no-psa", "stars"),
        ("shaspec-norm-joint", None),
        ("shaspec-norm-per-call", "shaspec-norm-joint"),
    ]
    block = report.report(_ablation_folder(tmp_path, ("stars", "stars-no-psa", "stars-board")), suite)
    assert "| stars | reference (stars defaults) | 0 | 70.7 | 70.7 [" in block
    assert "| stars-no-psa | `method.psa.enabled=false` | 0 | 70.7 | 70.7 [" in block
    assert "Configs with fewer than 3 seeds (5 of 5): stars, stars-no-psa, shaspec-norm-joint," in block
    # the board's copies of the reference, trained on another machine, are compared with the suite's own runs
    assert "| stars-board | none: the board's STARS records" in block
    assert any(line.startswith("| stars-board | stars | 1 | 0.0 [0.0, 0.0] |") for line in block.splitlines())
    # Identical records on both sides: every difference exactly 0 with a degenerate interval: the last1 mean,
    # its three scenarios, the minority classes, the subsets mean and the every-modality subset.
    row = next(line for line in block.splitlines() if line.startswith("| stars-no-psa | stars |"))
    assert row.count("0.0 [0.0, 0.0]") == 7, row
    assert "⚠ fewer than 3 paired seeds" in row
    assert not any(line.startswith("| shaspec-norm-per-call |") for line in block.splitlines())  # no records


def test_ablation_report_refuses_a_variant_without_a_reference_config(tmp_path):
    report = benchmark_script("ablation_report")
    suite = tmp_path / "suite.yaml"
    suite.write_text("methods:\n  - {method: stars, name: stars-no-psa, set: [method.psa.enabled=false]}\n")
    with pytest.raises(SystemExit, match="stars-no-psa changes stars, which has no config without `set:`"):
        report.variants(suite)


def test_ablation_report_reads_the_shipped_suite():
    report = benchmark_script("ablation_report")
    found = {v.name: v.reference for v in report.variants(REPO / "suites" / "stars-ablations-v2.yaml")}
    assert found["stars-psa-v1"] == "stars" and found["shaspec-norm-per-modality"] == "shaspec-norm-joint"
    assert found["stars"] is None and len(found) == 12


def _budget_folder(tmp_path, seeds_at_6000=(0, 1, 2)):
    """The board's STARS and unimodal last1 records at 3,000 steps, and the same records again as 6,000-step runs
    (a longer budget that changed nothing) for `seeds_at_6000`."""
    source = REPO / "docs" / "results" / "records" / "synthetic-v2"
    folder = tmp_path / "records"
    folder.mkdir()
    for method in ("stars", "unimodal"):
        for seed in (0, 1, 2):
            record = source / f"{method}-seed{seed}-last1.json"
            shutil.copyfile(record, folder / f"{method}-3000-seed{seed}-last1.json")
            if seed in seeds_at_6000:
                shutil.copyfile(record, folder / f"{method}-6000-seed{seed}-last1.json")
    return folder


def test_budget_report_gives_each_budget_the_gain_and_the_gap_between_methods(tmp_path):
    report = benchmark_script("budget_report")
    block = report.report(_budget_folder(tmp_path))
    lines = block.splitlines()
    # per-seed values, selected steps and late gains are the records' own (docs/results/synthetic-v2.md)
    assert "| stars | 3,000 | 0, 1, 2 | 70.7 / 69.5 / 69.3 | 69.8 ± 0.8 [" in block
    row = next(line for line in lines if line.startswith("| stars | 3,000 |"))
    assert "| 3000 / 2750 / 3000 | +1.3 / +0.3 / +1.2 |" in row and "⚠" not in row
    # identical records at both budgets: every gain is exactly 0 with a degenerate interval
    gain = next(line for line in lines if line.startswith("| stars | 3,000 → 6,000 |"))
    assert gain.startswith("| stars | 3,000 → 6,000 | 3 | 0.0 [0.0, 0.0] |") and gain.count("0.0 [0.0, 0.0]") == 4
    # the method ahead comes first; the gap is the same at both budgets, so its change is 0
    assert any(line.startswith("| unimodal − stars | 3,000 | 3 | 4.9 [") for line in lines)
    assert any(line.startswith("| unimodal − stars | 6,000 | 3 | 4.9 [") for line in lines)
    change = next(line for line in lines if line.startswith("| change of unimodal − stars | 3,000 → 6,000 | 3 | 0.0 ["))
    # the budgets are resampled independently, so the change's replicates spread around its 0: p near 1, and
    # with one change to adjust its Holm p is its own
    raw, adjusted = re.fullmatch(r".*\| (\d\.\d{3}); Holm (\d\.\d{3}) \|", change).groups()
    assert float(raw) > 0.9 and adjusted == raw
    assert "Holm-adjusted over the changes with at least 3 paired seeds (1: nothing to adjust):" in lines
    doc = tmp_path / "page.md"
    doc.write_text("intro\n<!-- records:progress -->\nold\n<!-- /records:progress -->\ntail\n")
    assert report.main([str(tmp_path / "records"), "--doc", str(doc)]) == 0
    assert "old" not in doc.read_text() and "| unimodal − stars | 3,000 |" in doc.read_text()


def test_budget_report_reads_a_change_of_gap_only_on_seeds_every_cell_has(tmp_path):
    report = benchmark_script("budget_report")
    lines = report.report(_budget_folder(tmp_path, seeds_at_6000=(0,))).splitlines()
    assert next(line for line in lines if line.startswith("| stars | 6,000 |")).endswith(
        "⚠ fewer than 3 seeds | 3000 | +1.3 | 1637 | – |"  # a copy of the 3,000-step record
    )
    # seed 0 alone at 6,000 steps: the change compares seed 0's gap with itself, not with the 3-seed mean gap
    change = next(line for line in lines if line.startswith("| change of unimodal − stars |"))
    assert change.startswith("| change of unimodal − stars | 3,000 → 6,000 | 1 | 0.0 [") and "⚠" in change
    # selections are counted over the same trainings at both budgets: seed 0 of each selected step 3000, its
    # final step at 3,000 and not at 6,000; the seeds only the 3,000-step runs have are named, not counted
    assert (
        "Trainings whose selected checkpoint is not the final step: 0 of 2 at 3,000; 2 of 2 at 6,000. Not counted (not "
        "at both the longest budget and a shorter one): stars seeds 1, 2 at 3,000; unimodal seeds 1, 2 at 3,000."
        in lines
    )


def test_budget_report_adjusts_the_p_of_every_change_with_3_seeds_together():
    """Three changes with 3 paired seeds share one Holm family; a change on fewer seeds is printed, flagged and
    left out of it (it is not a claim, so it neither needs adjusting nor dilutes the others)."""
    report = benchmark_script("budget_report")

    def change(p_value):
        return st.DifferenceOfDifferences(0.01, 0.0, 0.02, 2000, 0, 0.95, p_value)

    rows = ["| a − b | 3,000 | 3 | 1.0 [0.2, 1.8] | 0.010 |"] + [
        (f"change of a − {name} | 3,000 → 6,000", n, change(p))
        for name, n, p in (("b", 3, 0.01), ("c", 3, 0.04), ("d", 1, 0.002), ("e", 3, 0.3))
    ]
    out, adjusted = report._with_holm(rows)
    assert adjusted == 3 and out[0] == rows[0]
    assert out[1].endswith("| 3 | 1.0 [0.0, 2.0] | 0.010; Holm 0.030 |")  # smallest of three: x 3
    assert out[2].endswith("| 0.040; Holm 0.080 |")  # second: x 2
    assert out[3].endswith("⚠ fewer than 3 paired seeds | 0.002; Holm – |")
    assert out[4].endswith("| 0.300; Holm 0.300 |")
    caption = benchmark_script("redundancy_report").holm_caption(3)
    assert "were all 3 truly 0, about 0.1 of their 95 % intervals" in caption


def test_budget_report_counts_every_training_of_a_single_budget(tmp_path):
    report = benchmark_script("budget_report")
    folder = tmp_path / "records"
    folder.mkdir()
    for source in (REPO / "docs" / "results" / "records" / "synthetic-v2-6000").glob("stars-seed*-last1.json"):
        shutil.copyfile(source, folder / source.name)
    # STARS at 6,000 steps selected 6000 / 4750 / 5750
    assert "Trainings whose selected checkpoint is not the final step: 2 of 3 at 6,000." in report.report(folder)


def test_budget_report_compares_two_boards_reading_steps_from_the_records(tmp_path):
    report = benchmark_script("budget_report")
    boards = REPO / "docs" / "results" / "records"
    folders = {}
    for board in ("synthetic-v2", "synthetic-v2-6000"):
        folders[board] = tmp_path / board
        folders[board].mkdir()
        for source in boards.joinpath(board).glob("stars-seed*-last1.json"):
            shutil.copyfile(source, folders[board] / source.name)
    block = report.report(folders["synthetic-v2-6000"], folders["synthetic-v2"])
    assert "| stars | 3,000 | 0, 1, 2 | 70.7 / 69.5 / 69.3 |" in block  # the same names, told apart by steps
    assert "| stars | 6,000 | 0, 1, 2 | 73.6 / 73.9 / 72.7 |" in block and "| 6000 / 4750 / 5750 |" in block
    assert "not the final step: 1 of 3 at 3,000; 2 of 3 at 6,000." in block
    assert "| stars | 3,000 → 6,000 | 3 | 3.6 [" in block
    # a method only the shorter board has is left out; one cell given twice is an error naming both records
    shutil.copyfile(
        boards / "synthetic-v2" / "unimodal-seed0-last1.json", folders["synthetic-v2"] / "u-seed0-last1.json"
    )
    assert "| u |" not in report.report(folders["synthetic-v2-6000"], folders["synthetic-v2"])
    with pytest.raises(SystemExit, match="stars-seed0-last1.json and .*both stars at 6000 steps, seed 0"):
        report.report(folders["synthetic-v2-6000"], folders["synthetic-v2-6000"])


def test_ablation_report_marks_a_seed_whose_pair_trained_on_two_kinds_of_cpu(tmp_path):
    report = benchmark_script("ablation_report")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "methods:\n  - {method: stars, name: stars}\n"
        "  - {method: stars, name: stars-no-psa, set: [method.psa.enabled=false]}\n"
    )
    folder = _ablation_folder(tmp_path, ("stars", "stars-no-psa"))
    for config, isa in (("stars", "AVX512"), ("stars-no-psa", "AVX2")):
        path = folder / f"{config}-seed0-last1.json"
        record = json.loads(path.read_text())
        record["env"]["cpu_numerics"] = {"isa": isa, "model": "1"}
        path.write_text(json.dumps(record))
    lines = report.report(folder, suite).splitlines()
    assert next(line for line in lines if line.startswith("| stars | reference")).endswith("| AVX512 m1 |")
    row = next(line for line in lines if line.startswith("| stars-no-psa | stars |"))
    assert "⚠ seed 0 paired across CPU kinds" in row
    # a record that predates the field cannot tell: no mark
    path = folder / "stars-seed0-last1.json"
    record = json.loads(path.read_text())
    record["env"].pop("cpu_numerics")
    path.write_text(json.dumps(record))
    assert "CPU kinds" not in report.report(folder, suite)
