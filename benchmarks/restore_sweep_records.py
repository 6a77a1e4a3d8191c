"""Put committed run records back where a sweep looks for them, so a fresh clone resumes a sweep instead of
re-running what is already published: the inverse of benchmarks/copy_sweep_records.py.

Why: a sweep on 2 cores takes several working sessions, and a session's machine may not keep the sweep's output
root (runs/ is not committed). Only the records are committed (docs/results/records/NAME/); a sweep adopts a record
it finds in a job's record folder when the record is that job's result (same resolved config, seed and, for an
evaluation, the checkpoint its training selected: mmbench/sweep/state.py), so placing each record at
`<job folder>/<dataset>/<protocol>/<method>/<run id>/result.json` makes `mmbench sweep SUITE` count those jobs done
and run the rest. A record that is not the suite's job is simply not adopted (`mmbench sweep SUITE --status` says
why), and nothing is ever overwritten. Checkpoints are not committed: restore whole seeds (the training and its
evaluations), as copy_sweep_records.py copies them.

The job folder is the last three parts of the record's own `config.run.out` (`<dataset>/<method config>/seed<S>`,
the sweep's layout), below SWEEP_OUT; records not written by a sweep are skipped and named.

Usage: `python benchmarks/restore_sweep_records.py docs/results/records/synthetic-v2-6000 runs/sweeps/synthetic-v2-6000`
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from mmbench.records import record_path


def sweep_record_path(record: dict, sweep_out: Path) -> Path | None:
    """Where the sweep whose output root is `sweep_out` looks for this record; None for a record whose
    `config.run.out` is not a sweep job folder (`.../<dataset>/<method config>/seed<S>`)."""
    out = Path(str(record.get("config", {}).get("run", {}).get("out", "")))
    if len(out.parts) < 3 or out.parts[-1] != f"seed{record.get('seed')}":
        return None
    job_folder = sweep_out.joinpath(*out.parts[-3:])
    names = (record["dataset"]["name"], record["protocol"]["name"], record["method"]["name"])
    return record_path(job_folder, *names, record["run_id"])


def restore(records: Path, sweep_out: Path) -> tuple[int, list[str]]:
    """(records placed, one line per record skipped)."""
    placed, skipped = 0, []
    for source in sorted(records.glob("*.json")):
        record = json.loads(source.read_text(encoding="utf-8"))
        target = sweep_record_path(record, sweep_out)
        if target is None:
            skipped.append(f"{source}: not written by a sweep (config.run.out is not <dataset>/<config>/seed<S>)")
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(source, partial)
            os.replace(partial, target)  # never a half-copied record where the sweep looks
            placed += 1
    return placed, skipped


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    placed, skipped = restore(Path(argv[0]), Path(argv[1]))
    for line in skipped:
        print(f"skipped {line}")
    print(f"{placed} records placed under {argv[1]}; 'mmbench sweep SUITE --status' shows which jobs they complete")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
