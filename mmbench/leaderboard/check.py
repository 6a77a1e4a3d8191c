"""`mmbench leaderboard --check`: every stored metric must follow from its record's confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

from mmbench.evaluation.metrics import recompute_matches
from mmbench.leaderboard.collect import LoadedRecord


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
    return problems
