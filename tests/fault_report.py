"""Run the fault-injection suite and print its table of outcomes (issue 19's closing-note table).

    python tests/fault_report.py [PYTEST ARGS...]

Each case of tests/test_faults_*.py records its outcome through tests/faults.py (`expect_clean`); this script
collects them and prints the count of every outcome per area, then the cases that were not clean.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from faults import OUTCOMES, REPORT_ENV  # noqa: E402


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "outcomes.jsonl"
        report.touch()
        tests = sorted(str(path) for path in HERE.glob("test_faults_*.py"))
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *argv],
            env={**os.environ, REPORT_ENV: str(report)},
            check=False,
        )
        rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        table[row["area"]][row["outcome"]] += 1
    print(f"\n{'area':<14}" + "".join(f"{name:>16}" for name in OUTCOMES) + f"{'cases':>8}")
    for area in sorted(table):
        counts = table[area]
        print(f"{area:<14}" + "".join(f"{counts[name]:>16}" for name in OUTCOMES) + f"{sum(counts.values()):>8}")
    total = collections.Counter()
    for counts in table.values():
        total.update(counts)
    print(f"{'total':<14}" + "".join(f"{total[name]:>16}" for name in OUTCOMES) + f"{sum(total.values()):>8}")
    for row in rows:
        if row["outcome"] != "clean":
            print(f"not clean: {row['case']} ({row['area']}): {row['outcome']}")
    return 0 if rows and all(row["outcome"] == "clean" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
