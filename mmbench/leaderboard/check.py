"""`mmbench leaderboard --check`: every stored number that follows from a record must agree with it.

Per scenario, every metric must follow from the scenario's confusion matrix (mmbench/evaluation/metrics.py,
`recompute_matches`) and a record's per-unit matrices (schema version 2, mmbench/records/unit_confusion.py) must
sum to it exactly. The record's `aggregate` must be what its own protocol's code computes from those scenarios
(mmbench/leaderboard/aggregate_check.py). What a record does not allow to recompute is listed, never passed over
in silence (docs/leaderboard.md, "--check").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmbench.evaluation.metrics import recompute_matches
from mmbench.leaderboard.aggregate_check import check_aggregate
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.records.unit_confusion import check_unit_confusion


@dataclass
class CheckReport:
    """`problems`: one line per disagreement (record path, where, stored vs recomputed); `unchecked`: one line
    per part that could not be recomputed (record path, what, why)."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    bad_records: set[Path] = field(default_factory=set)
    scenarios: int = 0
    fragile_as_stored: int = 0  # records whose most_fragile test metrics have no stored matrix to check


def check_records(records: Sequence[LoadedRecord]) -> CheckReport:
    """Check every record's scenarios and aggregate."""
    report = CheckReport()
    for item in records:
        record = item.record
        scored = (record["protocol"].get("settings") or {}).get("classes_scored")
        before = len(report.problems)
        for scenario in record["scenarios"]:
            report.scenarios += 1
            # per_class is written in the dataset's class order, the order of the confusion matrix
            classes = list(scenario["metrics"].get("per_class") or {})
            for mismatch in recompute_matches(scenario["metrics"], scenario["confusion_matrix"], classes, scored):
                report.problems.append(f"{item.path}: scenario {scenario['name']!r}: {mismatch}")
            units_problem = check_unit_confusion(scenario)  # None for version-1 records (no unit matrices)
            if units_problem:
                report.problems.append(f"{item.path}: scenario {scenario['name']!r}: {units_problem}")
        aggregate = check_aggregate(record)
        report.problems.extend(f"{item.path}: {line}" for line in aggregate.mismatches)
        report.unchecked.extend(f"{item.path}: {line}" for line in aggregate.unchecked)
        report.fragile_as_stored += aggregate.fragile_as_stored
        if len(report.problems) > before:
            report.bad_records.add(item.path)
    return report
