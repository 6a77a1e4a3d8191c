"""The scripts that move sweep records into docs/results and rewrite the redundancy study's page from them."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "results" / "records" / "redundancy-study-1500"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copy_sweep_records_copies_only_finished_jobs_under_their_cell_names(tmp_path):
    copy = _script("copy_sweep_records")
    record = next(RECORDS.glob("stars-r0-seed0-last1.json"))
    for config, status in (("stars-r0", "done"), ("stars-r1", "running")):
        seed_dir = tmp_path / "sweep" / "synthetic" / config / "seed0"
        (seed_dir / "runs").mkdir(parents=True)
        shutil.copyfile(record, seed_dir / "runs" / "result.json")
        state = {"status": status, "record": "runs/result.json"}
        (seed_dir / "train-last1.state.json").write_text(json.dumps(state))
    assert copy.main([str(tmp_path / "sweep"), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stars-r0-seed0-last1.json"]


def test_redundancy_report_gives_cells_and_paired_differences(tmp_path):
    report = _script("redundancy_report")
    record = RECORDS / "stars-r0-seed0-last1.json"
    for config in ("stars", "stars-translator-copy"):
        shutil.copyfile(record, tmp_path / f"{config}-r0-seed0-last1.json")
    block = report.report(tmp_path)
    assert "| stars | 0 | 0 | 59.2 | 59.2 [58.6, 59.8] ⚠ fewer than 3 seeds |" in block
    # The same records on both sides: a difference of exactly 0 with a degenerate interval.
    row = next(line for line in block.splitlines() if line.startswith("| translation"))
    assert row.startswith("| translation (STARS vs its identity translator) | 0 | 1 | 0.0 [0.0, 0.0] |")
    assert row.count("0.0 [0.0, 0.0]") == 4  # the mean and each of the three one-modality scenarios
    doc = tmp_path / "page.md"
    doc.write_text("intro\n<!-- study:progress -->\nold\n<!-- /study:progress -->\ntail\n")
    assert report.main([str(tmp_path), "--marker", "study", "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("tail\n") and "59.2" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.report(empty) == f"No last1 records in {empty.as_posix()}/ yet."


def test_redundancy_report_gives_the_change_of_a_gain_between_levels(tmp_path):
    """Level 0: STARS against its identity translator (seed 0 of the first round); level 1: one STARS record
    on both sides (a gain of exactly 0). The change 0 -> 1 is then minus level 0's gain, with an interval."""
    report = _script("redundancy_report")
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


def test_dis2_compensation_bn_recalibrates_only_the_compensation_encoders_statistics():
    import torch

    from mmbench.config import load_defaults
    from mmbench.method import build_method
    from mmbench.registry import METHODS

    diagnostic = _script("dis2_compensation_bn")
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
