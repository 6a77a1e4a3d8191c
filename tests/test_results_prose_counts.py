"""The counts typed by hand around the 6,000-step board's generated block agree with the records and the block.

Why: docs/results/synthetic-v2.md, README.md and docs/sweeps.md say how far the 6,000-step board got (rows
finished, records committed, jobs a resumed sweep finds done, trainings that select a checkpoint before the
last step). The tables are regenerated from the records (tests/test_results_pages.py checks them), but these
sentences are edited by hand each time records land, and a stale count is a wrong claim about the evidence.
This test recounts each one from docs/results/records/synthetic-v2-6000/, the suite and the generated line.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "results" / "records" / "synthetic-v2-6000"
SUITE = REPO / "suites" / "synthetic-v2-6000.yaml"
READING = REPO / "docs" / "results" / "synthetic-v2.md"
RECORD_NAME = re.compile(r"^(?P<method>.+)-seed(?P<seed>\d+)-(?P<protocol>.+)\.json$")
SELECTED_LINE = re.compile(
    r"Trainings whose selected checkpoint is not the final step: (\d+) of (\d+) at 3,000; (\d+) of (\d+) at 6,000\."
)


def _suite_jobs() -> tuple[list[str], set[tuple[int, str]]]:
    """The suite's methods and, per method, the (seed, protocol) jobs a finished row has."""
    suite = yaml.safe_load(_text(SUITE))
    protocols = [suite["train"], *suite["evaluate"]]
    return suite["methods"], {(seed, protocol) for seed in suite["seeds"] for protocol in protocols}


def _records_by_method() -> dict[str, set[tuple[int, str]]]:
    found: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for path in RECORDS.glob("*.json"):
        match = RECORD_NAME.match(path.name)
        assert match, f"{path.name}: not a <method>-seed<N>-<protocol>.json record name"
        found[match["method"]].add((int(match["seed"]), match["protocol"]))
    return found


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _one(pattern: str, text: str, where: str) -> tuple[int, ...]:
    matches = re.findall(pattern, text, flags=re.S)
    assert len(matches) == 1, f"{where}: expected one sentence matching {pattern!r}, found {len(matches)}"
    found = matches[0] if isinstance(matches[0], tuple) else (matches[0],)
    return tuple(int(value.replace(",", "")) for value in found)


def _selected_bullet() -> str:
    text = _text(READING)
    start = text.index("- **Selected checkpoints**")
    end = text.index("\n- **", start + 1)
    return text[start:end]


def test_the_record_count_matches_the_prose():
    methods, row_jobs = _suite_jobs()
    records = sum(len(jobs) for jobs in _records_by_method().values())
    assert _one(r"\((\d+) records in docs/results/records/synthetic-v2-6000/", _text(READING), READING.name) == (
        records,
    )
    sweeps = _text(REPO / "docs" / "sweeps.md")
    assert _one(r'"(\d+) of (\d+) jobs already done"', sweeps, "docs/sweeps.md") == (
        records,
        len(methods) * len(row_jobs),
    )


def test_the_finished_rows_match_the_prose():
    methods, row_jobs = _suite_jobs()
    finished = sum(1 for jobs in _records_by_method().values() if jobs >= row_jobs)
    assert _one(r"in progress: (\d+) of (\d+) rows", _text(READING), READING.name) == (finished, len(methods))
    readme = _text(REPO / "README.md")
    assert _one(r"The board at 6,000 steps \([^)]*\) has (\d+) of (\d+) rows", readme, "README.md") == (
        finished,
        len(methods),
    )


def test_the_selected_checkpoint_counts_match_the_generated_line():
    at_3000, trainings, at_6000, same = _one(SELECTED_LINE.pattern, _text(READING), READING.name)
    assert trainings == same, "the generated line counts one set of trainings at both budgets"
    bullet = _selected_bullet()
    assert _one(r"\((\d+) of (\d+)\)", bullet, "the reading's selected-checkpoints bullet") == (at_6000, trainings)
    assert _one(r"\((\d+) of the same (\d+)\)", bullet, "the reading's selected-checkpoints bullet") == (
        at_3000,
        trainings,
    )
    readme = _text(REPO / "README.md")
    assert _one(
        r"(\d+) of the (\d+) trainings select a checkpoint before the last step at 6,000 \((\d+) of the same (\d+) at",
        readme,
        "README.md",
    ) == (at_6000, trainings, at_3000, trainings)
