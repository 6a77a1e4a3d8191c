"""`mmbench leaderboard --check`: every stored metric must follow from its record's confusion matrix, and a
record's per-unit matrices (schema version 2, mmbench/records/unit_confusion.py) must sum to it exactly."""

from __future__ import annotations

from collections.abc import Sequence

from mmbench.evaluation.metrics import recompute_matches
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.records.unit_confusion import check_unit_confusion


def check_records(records: Sequence[LoadedRecord]) -> list[str]:
    """One line per disagreement: record path, scenario, metric, stored vs recomputed."""
    problems = []
    for item in records:
        record = item.record
        scored = (record["protocol"].get("settings") or {}).get("classes_scored")
        for scenario in record["scenarios"]:
            # per_class is written in the dataset's class order, the order of the confusion matrix
            classes = list(scenario["metrics"].get("per_class") or {})
            for mismatch in recompute_matches(scenario["metrics"], scenario["confusion_matrix"], classes, scored):
                problems.append(f"{item.path}: scenario {scenario['name']!r}: {mismatch}")
            units_problem = check_unit_confusion(scenario)  # None for version-1 records (no unit matrices)
            if units_problem:
                problems.append(f"{item.path}: scenario {scenario['name']!r}: {units_problem}")
    return problems
