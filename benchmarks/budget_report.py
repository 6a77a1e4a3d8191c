"""Rewrite docs/results/synthetic-v2.md's budget-check block from the committed records only.

Does the board's 3,000-step budget decide its ranking? `suites/budget-check.yaml` trains STARS and unimodal at
6,000 steps; the 3,000-step runs are the board's own (docs/results/records/synthetic-v2, copied beside them
under budget names), so every seed is paired across budgets: same data, same seed, same test tiles. Records live
in docs/results/records/budget-check/ as `<method>-<steps>-seed<S>-last1.json`. The block gives, per method and
budget, the last1 mean mIoU (mean ± sample standard deviation over seeds, 95 % hierarchical-bootstrap interval
over seeds and test tiles), each seed's selected step and validation gain over the last quarter of training
(`mmbench.leaderboard.budget.late_gain`, the board's "still improving" flag), and the CPU each seed trained on;
then what a longer budget gains each method (paired by seed and tile), the gap between every two methods at each
budget, and how that gap changes with the budget (`statistics.difference_of_differences`), which is the ranking
question asked directly. Anything with fewer than 3 seeds is printed but marked, and the page claims nothing
from it.

The same block compares two whole boards: `--shorter docs/results/records/synthetic-v2` beside the 6,000-step
board's folder (records named as a board's, `<config>-seed<S>-<protocol>.json`, their steps read from the
record's `method.train.iterations`) gives every method the longer board has, at both budgets, with the count of
trainings whose selected checkpoint is not the final step (the board's budget criterion, docs/results/synthetic-v2.md,
counted from the records, not typed), and each method's gap to the reference method (STARS) rather than every pair.

Usage: `python benchmarks/budget_report.py [RECORDS_DIR] [--shorter DIR] [--doc docs/results/synthetic-v2.md]
[--marker NAME]` (the block between `<!-- NAME:progress -->` markers; NAME defaults to the records folder's name).
"""

from __future__ import annotations

import itertools
import re
import statistics as stats_lib
from pathlib import Path

from page_block import (  # benchmarks/page_block.py: scripts run with benchmarks/ on sys.path
    report_arguments,
    write_report,
)
from redundancy_report import (
    bounds_text,
    cells,
    change_p_cells,
    change_text,
    cpu_kind,
    holm_caption,
    interval_text,
    mean_sd,
    p_text,
    paired_cells,
    points,
    read_folder,
    seed_matrices,
)

from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.budget import late_gain
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.leaderboard.table_statistics import MIN_SEEDS

# `<method>-<steps>-seed<S>-<protocol>.json` (the steps take the place of redundancy_report's level), or a
# board's `<method>-seed<S>-<protocol>.json`, whose steps are the record's own
NAME = re.compile(r"^(?P<config>.+?)(?:-(?P<level>\d+))?-seed(?P<seed>\d+)-(?P<protocol>[a-z0-9-]+)\.json$")
REFERENCE = "stars"  # with more than two methods, each one's gap is read against the reference method only


def _flag(n: int, what: str = "seeds") -> str:
    return "" if n >= MIN_SEEDS else f" ⚠ fewer than {MIN_SEEDS} {what}"


def config_row(method: str, steps: str, records: dict[int, LoadedRecord], decoded: tuple) -> str:
    ordered = [item.record for _, item in sorted(records.items())]
    values = [record["aggregate"]["mean"]["miou"] for record in ordered]
    interval = st.hierarchical_bootstrap_ci(*decoded)
    selected = " / ".join(str(step) if (step := _selected(r)) is not None else "–" for r in ordered)
    gains = " / ".join("–" if (g := late_gain(r)) is None else f"{g:+.1f}" for r in ordered)
    # null for a resumed run whose earlier segment's time is unknown (docs/run-record.md): left out of the mean
    train_s = [s for r in ordered if (s := r["timing"].get("train_s")) is not None]
    train = f"{stats_lib.mean(train_s):.0f}" if train_s else "–"
    return (
        f"| {method} | {int(steps):,} | {', '.join(str(s) for s in sorted(records))} | "
        f"{' / '.join(points(v) for v in values)} | {mean_sd(values)} {bounds_text(interval.low, interval.high)}"
        f"{_flag(len(values))} | {selected} | {gains} | {train} | "
        f"{' / '.join(cpu_kind(r) or '–' for r in ordered)} |"
    )


def _paired(decoded: dict, a: tuple[str, str], b: tuple[str, str]) -> tuple | None:
    """(a's seeds, b's seeds, scored classes) when both cells exist and share a seed, else None."""
    if a not in decoded or b not in decoded:
        return None
    (a_seeds, scored), (b_seeds, _) = decoded[a], decoded[b]
    return (a_seeds, b_seeds, scored) if set(a_seeds) & set(b_seeds) else None


def gain_rows(decoded: dict, methods: list[str], budgets: dict[str, list[str]]) -> list[str]:
    """Each method's longer budget minus its shorter one, for consecutive budgets."""
    rows = []
    for method in methods:
        for low, high in itertools.pairwise(budgets[method]):
            pair = _paired(decoded, (method, high), (method, low))
            if pair is None:
                continue
            result, _, per_scenario = paired_cells(*pair)
            rows.append(
                f"| {method} | {int(low):,} → {int(high):,} | {len(result.seeds)} | {interval_text(result)}"
                f"{_flag(len(result.seeds), 'paired seeds')} | {p_text(result.p_value)} | "
                + " | ".join(per_scenario)
                + " |"
            )
    return rows


def _on_seeds(pair: tuple, seeds: set[int]) -> tuple:
    """A (a's seeds, b's seeds, scored classes) pair restricted to `seeds`."""
    a_seeds, b_seeds, scored = pair
    return {s: m for s, m in a_seeds.items() if s in seeds}, {s: m for s, m in b_seeds.items() if s in seeds}, scored


def _mean(records: dict[int, LoadedRecord]) -> float:
    return stats_lib.mean(item.record["aggregate"]["mean"]["miou"] for item in records.values())


def gap_rows(found: dict, decoded: dict, methods: list[str], budgets: dict[str, list[str]]) -> tuple[list[str], int]:
    """a − b at every budget both have (a: the one ahead at their first shared budget), then how that gap
    changes from each shared budget to the next, on the seeds all four cells have: the ranking question asked
    directly, not read off two intervals. The budgets share seeds and test tiles, but difference_of_differences
    resamples the two independently, which ignores their positive correlation: the interval is, if anything,
    too wide. A change's p is the bootstrap test its interval inverts, then Holm-adjusted over every change
    in the table with at least MIN_SEEDS paired seeds: one change excluding 0 among many is what chance gives,
    and the adjusted p says whether it is more than that. Returns the rows and how many changes were adjusted."""
    rows: list[str | tuple[str, int, st.DifferenceOfDifferences]] = []
    pairs_of_methods = itertools.combinations(methods, 2)
    if len(methods) > 2 and REFERENCE in methods:
        pairs_of_methods = ((REFERENCE, method) for method in methods if method != REFERENCE)
    for first, second in pairs_of_methods:
        shared = [steps for steps in budgets[first] if steps in budgets[second]]
        if not shared:
            continue
        a, b = sorted((first, second), key=lambda method: -_mean(found[(method, shared[0])]))
        pairs = {steps: pair for steps in shared if (pair := _paired(decoded, (a, steps), (b, steps)))}
        for steps, pair in pairs.items():
            result = st.paired_comparison(*pair)
            n = len(result.seeds)
            rows.append(
                f"| {a} − {b} | {int(steps):,} | {n} | {interval_text(result)}{_flag(n, 'paired seeds')} | "
                f"{p_text(result.p_value)} |"
            )
        for low, high in itertools.pairwise(list(pairs)):
            # the seeds all four cells have: a change read off different seed sets would mix in seed variation
            common = set.intersection(*(set(seeds) for seeds in (*pairs[low][:2], *pairs[high][:2])))
            if not common:
                continue
            (ax, bx, scored_x), (ay, by, scored_y) = _on_seeds(pairs[low], common), _on_seeds(pairs[high], common)
            change = st.difference_of_differences((ax, bx), (ay, by), scored_x, scored_y)
            label = f"change of {a} − {b} | {int(low):,} → {int(high):,}"
            rows.append((label, len(common), change))
    return _with_holm(rows)


def _with_holm(rows: list[str | tuple[str, int, st.DifferenceOfDifferences]]) -> tuple[list[str], int]:
    """The change rows (label, paired seeds, change) written out with their p cells (`change_p_cells`: Holm
    over those with at least MIN_SEEDS seeds), other rows as they are; and that family's size."""
    changes = [(row[2], row[1]) for row in rows if isinstance(row, tuple)]
    p_cells, adjusted = change_p_cells(changes)
    cells = iter(p_cells)
    out = []
    for row in rows:
        if isinstance(row, str):
            out.append(row)
            continue
        label, n, change = row
        out.append(f"| {label} | {n} | {change_text(change)}{_flag(n, 'paired seeds')} | {next(cells)} |")
    return out, adjusted


def budget_cells(folder: Path) -> dict[tuple[str, str], dict[int, LoadedRecord]]:
    """(method config, steps) -> seed -> last1 record of `folder`: the steps from the file name where it has
    them, else from the record."""
    found: dict[tuple[str, str], dict[int, LoadedRecord]] = {}
    for (config, level), records in cells(read_folder(folder), "last1", NAME).items():
        for seed, item in records.items():
            steps = level or str(item.record["config"]["method"]["train"]["iterations"])
            found.setdefault((config, steps), {})[seed] = item
    return found


def add_cells(found: dict, more: dict) -> None:
    """`more`'s cells into `found`; a cell and seed both have ends the script (two folders overlap)."""
    for cell, records in more.items():
        into = found.setdefault(cell, {})
        for seed, item in records.items():
            if seed in into:
                config, steps = cell
                raise SystemExit(f"{item.path} and {into[seed].path} are both {config} at {steps} steps, seed {seed}")
            into[seed] = item


def _selected(record: dict) -> object:
    return record["method"].get("checkpoint", {}).get("selected_step")


def _before_final(records: dict[int, LoadedRecord], steps: str) -> int:
    """How many of these trainings selected a checkpoint before their final step."""
    selected = (_selected(item.record) for item in records.values())
    return sum(step is not None and int(step) < int(steps) for step in selected)


def selection_line(found: dict, methods: list[str], budgets: dict[str, list[str]]) -> str:
    """Per budget, how many trainings selected a checkpoint before their last step, counted over the (method,
    seed) pairs that ran at the longest budget and at a shorter one, at each budget those of them it has: a seed
    that has not run at the longest budget yet would otherwise make the counts count different trainings. The
    seeds left out are named."""
    every = sorted({s for m in methods for s in budgets[m]}, key=int)
    seeds_at = {(m, steps): set(found.get((m, steps), {})) for m in methods for steps in every}
    shorter = every[:-1] or every  # with one budget only, every training is counted
    counted = {m: seeds_at[(m, every[-1])] & set().union(*(seeds_at[(m, s)] for s in shorter)) for m in methods}
    parts = []
    for steps in every:
        here = [{seed: found[(m, steps)][seed] for seed in seeds_at[(m, steps)] & counted[m]} for m in methods]
        before = sum(_before_final(records, steps) for records in here)
        parts.append(f"{before} of {sum(len(records) for records in here)} at {int(steps):,}")
    left = [
        f"{m} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} at {int(steps):,}"
        for m in methods
        for steps in every
        if (seeds := sorted(seeds_at[(m, steps)] - counted[m]))
    ]
    line = "Trainings whose selected checkpoint is not the final step: " + "; ".join(parts) + "."
    return line + (
        f" Not counted (not at both the longest budget and a shorter one): {'; '.join(left)}." if left else ""
    )


def report(folder: Path, shorter: Path | None = None) -> str:
    found = budget_cells(folder)
    if shorter is not None:  # the methods of the longer board, at both budgets
        longer = {config for config, _ in found}
        add_cells(found, {cell: records for cell, records in budget_cells(shorter).items() if cell[0] in longer})
    if not found:
        return f"No last1 records in {folder.as_posix()}/ yet."
    methods = sorted({method for method, _ in found})
    budgets = {m: sorted((steps for method, steps in found if method == m), key=int) for m in methods}
    decoded = {cell: seed_matrices(records) for cell, records in found.items()}
    command = folder.as_posix() + ("" if shorter is None else f" --shorter {shorter.as_posix()}")
    sources = folder.as_posix() + "/" + ("" if shorter is None else f" and {shorter.as_posix()}/")
    lines = [
        f"Generated by `python benchmarks/budget_report.py {command}` from the records in",
        f"{sources} (mIoU in %, test part; last1: mean over the three one-modality scenarios; brackets:",
        "95 % hierarchical bootstrap over seeds and 32 test tiles; selected: the step whose checkpoint was evaluated;",
        "late gain: validation points gained over the last quarter of training; train s: `timing.train_s`, wall",
        "time under whatever else ran on the machine; CPU: the kind each seed trained on, `env.cpu_numerics`,",
        '"–" where the record predates that field).',
        "",
        "| method | steps | seeds | last1 mean per seed | mean ± sd [95 % interval] | selected | late gain "
        "| train s | CPU |",
        "|---|---:|---|---|---|---|---|---:|---|",
    ]
    lines += [config_row(m, steps, found[(m, steps)], decoded[(m, steps)]) for m in methods for steps in budgets[m]]
    lines += ["", selection_line(found, methods, budgets)]
    names = [scenario["name"] for scenario in next(iter(next(iter(found.values())).values())).record["scenarios"]]
    gains = gain_rows(decoded, methods, budgets)
    if gains:
        lines += [
            "",
            "What the longer budget gains each method, in points (paired by seed and tile; interval: paired",
            "bootstrap, 95 %; p: paired permutation test of the last1 mean, 2,000 permutations):",
            "",
            "| method | budget | paired seeds | last1 mean: longer − shorter [95 % interval] | p | "
            + " | ".join(names)
            + " |",
            "|---|---|---:|---|---:|" + "---|" * len(names),
            *gains,
        ]
    gaps, adjusted = gap_rows(found, decoded, methods, budgets)
    if gaps:
        lines += [
            "",
            "The gap between the methods at each budget, and how it changes with the budget (difference of",
            "differences: the two budgets resampled independently, 95 %), in points of the last1 mean. p: for a",
            "gap, the paired permutation test; for a change, the bootstrap test its interval inverts, then that p",
            holm_caption(adjusted),
            "",
            "| methods | steps | paired seeds | difference [95 % interval] | p |",
            "|---|---|---:|---|---:|",
            *gaps,
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = report_arguments(
        __doc__.splitlines()[0], "docs/results/records/budget-check", "docs/results/synthetic-v2.md"
    )
    parser.add_argument("--shorter", type=Path, help="a folder of the same board's records at a shorter budget")
    args = parser.parse_args(argv)
    return write_report(args, lambda folder: report(folder, args.shorter))


if __name__ == "__main__":
    raise SystemExit(main())
