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
