"""`mmbench leaderboard RUNS --rerun-of ORIGINAL` (mmbench/leaderboard/reruns.py) on the committed board records:
the board's STARS and cGAN rerun (docs/results/records/board-rerun) and copies of them with one part changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmbench.cli.main import main
from mmbench.records.unit_confusion import decode_unit_confusion, encode_unit_confusion

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "results" / "records"
BOARD, RERUN = RECORDS / "synthetic-v2", RECORDS / "board-rerun"


def reruns(capsys, *argv) -> tuple[int, dict, str]:
    code = main(["leaderboard", *map(str, argv), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def edited_copy(tmp_path: Path, name: str, edit) -> Path:
    """The board-rerun folder with one record changed by `edit(record)`."""
    folder = tmp_path / "rerun"
    shutil.copytree(RERUN, folder)
    record = json.loads((folder / name).read_text())
    edit(record)
    (folder / name).write_text(json.dumps(record))
    return folder


def test_the_committed_board_rerun_gives_the_boards_numbers(capsys):
    code, result, _ = reruns(capsys, RERUN, "--rerun-of", BOARD)
    assert code == 0 and len(result["pairs"]) == 6 and all(pair["identical"] for pair in result["pairs"])
    assert result["summary"].startswith("6 of 6 paired runs give the same numbers to the last bit")
    # the rerun's STARS config has a key the board's lacks (added later, the board's behaviour as its default)
    stars = [pair for pair in result["pairs"] if pair["method"] == "stars"]
    assert len(stars) == 3 and all(pair["config_keys_in_one"] == ["decoder_norm"] for pair in stars)
    assert len(result["no_rerun"]) == 144 - 6 and not result["no_original"]


def _swap_two_units(record: dict) -> None:
    """Two tiles' matrices exchanged in one scenario: its confusion matrix and metrics stay the same to the last
    bit, so only the per-unit comparison can see it."""
    entry = record["scenarios"][0]["unit_confusion"]
    names, counts = decode_unit_confusion(entry)
    counts = counts.copy()
    counts[[0, 1]] = counts[[1, 0]]
    assert not np.array_equal(counts[0], counts[1])
    record["scenarios"][0]["unit_confusion"] = encode_unit_confusion(entry["unit"], names, counts)


@pytest.mark.parametrize(
    ("edit", "part"),
    [
        (lambda r: r["method"]["checkpoint"]["validation_curve"][3].update(score=0.5), "validation curve"),
        (lambda r: r["method"]["checkpoint"].update(selected_step=2750), "selected step"),
        (lambda r: r["scenarios"][1]["metrics"].update(miou=r["scenarios"][1]["metrics"]["miou"] + 1e-12), "metrics"),
        (lambda r: r["scenarios"][0]["confusion_matrix"][0].__setitem__(0, 1), "confusion matrices"),
        (_swap_two_units, "per-unit matrices"),
    ],
    ids=["curve", "selected", "metric", "matrix", "units"],
)
def test_one_changed_part_is_named(capsys, tmp_path, edit, part):
    folder = edited_copy(tmp_path, "cgan-seed1-last1.json", edit)
    code, result, _ = reruns(capsys, folder, "--rerun-of", BOARD)
    assert code == 0
    changed = [pair for pair in result["pairs"] if not pair["identical"]]
    assert [(pair["seed"], pair["differences"]) for pair in changed] == [(1, [part])]
    assert result["summary"].startswith("5 of 6 paired runs")


def test_a_changed_config_value_is_another_configuration_not_a_rerun(capsys, tmp_path):
    folder = edited_copy(tmp_path, "cgan-seed2-last1.json", lambda r: r["config"]["method"].update(width=99))
    code, result, _ = reruns(capsys, folder, "--rerun-of", BOARD)
    assert code == 0 and len(result["pairs"]) == 5
    assert [Path(path).name for path in result["no_original"]] == ["cgan-seed2-last1.json"]


def test_nothing_to_pair_or_a_run_twice_is_one_line_and_exit_2(capsys, tmp_path):
    longer = tmp_path / "longer"  # STARS at 6,000 steps: same seeds, another training budget
    longer.mkdir()
    shutil.copy(RECORDS / "budget-check" / "stars-6000-seed0-last1.json", longer)
    code, _, err = reruns(capsys, RERUN, "--rerun-of", longer)
    assert code == 2 and "no record pairs" in err and len(err.strip().splitlines()) == 1
    twice = tmp_path / "twice"
    twice.mkdir()
    for name in ("a.json", "b.json"):
        shutil.copy(BOARD / "cgan-seed0-last1.json", twice / name)
    code, _, err = reruns(capsys, RERUN, "--rerun-of", twice)
    assert code == 2 and "keep one of them" in err and len(err.strip().splitlines()) == 1


def test_markdown_names_the_pairs_and_counts_the_unpaired(capsys):
    assert main(["leaderboard", str(RERUN), "--rerun-of", str(BOARD)]) == 0
    out = capsys.readouterr().out
    assert out.count("| yes |") == 6 and "6 of 6 paired runs" in out and "- no rerun: 128 more" in out


def test_an_undecodable_per_unit_entry_is_one_line_naming_the_file(capsys, tmp_path):
    # schema-valid (a malformed entry is skipped by the collector with a line of its own), but not base64
    folder = edited_copy(
        tmp_path, "cgan-seed0-last1.json", lambda r: r["scenarios"][0]["unit_confusion"].update(data="*")
    )
    code, _, err = reruns(capsys, folder, "--rerun-of", BOARD)
    assert code == 2 and "cgan-seed0-last1.json" in err and len(err.strip().splitlines()) == 1
