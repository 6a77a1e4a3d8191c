"""Copy a sweep's finished run records into docs/results/records/<name>/ as <config>-seed<S>-<protocol>.json.

The published boards are built from committed records only (`mmbench leaderboard docs/results/records/NAME
--check`), and a sweep on 2 cores takes several sessions: this is how records are committed as they complete.
Only records of finished jobs are copied (the sweep's state file says `done`); checkpoints stay behind.

Usage: `python benchmarks/copy_sweep_records.py runs/sweeps/redundancy-study docs/results/records/redundancy-study`
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def finished_records(sweep_out: Path) -> list[tuple[str, Path]]:
    """(destination file name, record path) for every finished job under a sweep's output root."""
    found = []
    for state_path in sorted(sweep_out.glob("*/*/seed*/*.state.json")):
        state = json.loads(state_path.read_text())
        if state.get("status") != "done":
            continue
        seed_dir = state_path.parent
        config_name, seed = seed_dir.parent.name, seed_dir.name
        protocol = state_path.name.removesuffix(".state.json").split("-", 1)[1]
        record = state.get("record")
        if not record:
            raise SystemExit(f"{state_path}: a done job without a record path; re-run the sweep with --status")
        found.append((f"{config_name}-{seed}-{protocol}.json", seed_dir / record))  # relative to the seed folder
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    sweep_out, destination = Path(argv[0]), Path(argv[1])
    destination.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name, record in finished_records(sweep_out):
        target = destination / name
        if not target.exists():
            shutil.copyfile(record, target)
            copied += 1
    print(f"{copied} new records in {destination}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
