"""Rewrite docs/results/redundancy-study.md's results block from the committed records only.

Records live in docs/results/records/redundancy-study/ (3,000 steps, the board's budget) and
docs/results/records/redundancy-study-1500/ (the first round, 1,500 steps) as `<method
config>-r<level>-seed<S>-<protocol>.json` (`benchmarks/copy_sweep_records.py` names them so from
`suites/redundancy-study.yaml`'s config names). For every (method config, redundancy) cell the block gives the
seeds found, the last1 mean mIoU (mean ± sample standard deviation over seeds, and the 95 % hierarchical-
bootstrap interval over seeds and test tiles, `mmbench.leaderboard.statistics`), and, per level, the paired
differences the study asks about (paired by seed and tile, with a paired-bootstrap interval and a paired-
permutation p-value), each beside the same pair's difference with every modality present (the subsets records,
`FullSet`: what the two differ by apart from handling a missing modality), and how each changes between levels.
A cell or a comparison with fewer than 3 seeds is printed but marked, and the reading claims nothing from it.

Usage: `python benchmarks/redundancy_report.py [RECORDS_DIR] [--marker NAME] [--doc docs/results/redundancy-study.md]`
(the block between `<!-- NAME:progress -->` markers; NAME defaults to the records folder's name).
"""

from __future__ import annotations

import re
import statistics as stats_lib
from pathlib import Path

from page_block import (  # benchmarks/page_block.py: scripts run with benchmarks/ on sys.path
    report_arguments,
    write_report,
)

from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.collect import LoadedRecord, collect_records
from mmbench.leaderboard.table_statistics import MIN_SEEDS, scored_classes, unit_matrices

NAME = re.compile(r"^(?P<config>.+)-r(?P<level>[0-9.]+)-seed(?P<seed>\d+)-(?P<protocol>[a-z0-9-]+)\.json$")
METHODS = ("stars", "stars-translator-copy", "modality-dropout", "cgan", "gemmnet", "mmformer")
LEVELS = ("0", "0.5", "1")
# The study's questions: a gains on b? (docs/results/redundancy-study.md, "Question and design")
COMPARISONS = (
    ("stars", "stars-translator-copy", "translation (STARS vs its identity translator)"),
    ("stars", "modality-dropout", "STARS vs modality dropout (the reference method against imputing nothing)"),
    ("cgan", "modality-dropout", "cGAN imputation vs modality dropout"),
    ("gemmnet", "modality-dropout", "GEMMNet imputation vs modality dropout"),
    # GEMMNet's segmenter is mmFormer-2D's (docs/methods/gemmnet.md): the closest pair with and without imputation
    ("gemmnet", "mmformer", "GEMMNet vs mmFormer (mmFormer-2D encoders with and without imputation)"),
    # whether GEMMNet's lead over modality dropout is its network's: the same question without imputation
    ("mmformer", "modality-dropout", "mmFormer vs modality dropout (GEMMNet's network without imputation)"),
)


def read_folder(folder: Path) -> list[LoadedRecord]:
    """Every record in `folder`, loaded once: a report that reads several protocols passes this list to `cells`
    and `FullSet` instead of re-reading and re-parsing the folder for each. A record that does not load ends the
    script with its path and reason."""
    records, skipped = collect_records([folder])
    if skipped:
        raise SystemExit("; ".join(f"{item.path}: {item.reason}" for item in skipped))
    return records


def cells(
    records: list[LoadedRecord], protocol: str = "last1", pattern: re.Pattern[str] = NAME
) -> dict[tuple[str, str], dict[int, LoadedRecord]]:
    """(method config, level) -> seed -> its record of `protocol`; with a `pattern` that has no level group
    (benchmarks/ablation_report.py's record names) the level is ""."""
    found: dict[tuple[str, str], dict[int, LoadedRecord]] = {}
    for item in records:
        match = pattern.match(item.path.name)
        if match is None or match["protocol"] != protocol:
            continue
        level = match.groupdict().get("level") or ""
        found.setdefault((match["config"], level), {})[int(match["seed"])] = item
    return found


def seed_matrices(
    records: dict[int, LoadedRecord], classes: list[str] | None = None
) -> tuple[dict[int, object], object]:
    """Each seed's per-unit matrices and the scored-class mask: the record's scored classes, or only those of
    them in `classes` (the minority records' `minority_classes`)."""
    matrices = {}
    for seed, item in records.items():
        units = unit_matrices(item)
        if units is None:
            raise SystemExit(f"{item.path}: no per-unit matrices (schema 1); re-evaluate its checkpoint")
        matrices[seed] = units[1]
    first = next(iter(records.values()))
    k = next(iter(matrices.values())).shape[-1]
    return matrices, scored_classes(first.record, classes, k)


class FullSet:
    """The subsets records' scenario with every modality present, where nothing is imputed or translated: a − b
    there is what the two differ by apart from handling a missing modality (e.g. the segmenter), the
    comparison the last1 gains need beside them."""

    def __init__(self, records: list[LoadedRecord], pattern: re.Pattern[str] = NAME) -> None:
        found = cells(records, "subsets", pattern)
        self.decoded = {cell: seed_matrices(records) for cell, records in found.items()}
        first = next((next(iter(records.values())) for records in found.values()), None)
        scenarios = first.record["scenarios"] if first else []
        widest = max((len(scenario["available"]) for scenario in scenarios), default=0)
        self.index = next((i for i, scenario in enumerate(scenarios) if len(scenario["available"]) == widest), None)
        self.name = scenarios[self.index]["name"] if self.index is not None else None

    def pair(self, a: str, b: str, level: str) -> tuple | None:
        """(a's seeds, b's seeds, scored classes) at `level`, or None when either has no subsets records."""
        if self.index is None or (a, level) not in self.decoded or (b, level) not in self.decoded:
            return None
        (a_seeds, scored), (b_seeds, _) = self.decoded[(a, level)], self.decoded[(b, level)]
        return (a_seeds, b_seeds, scored) if set(a_seeds) & set(b_seeds) else None

    def gap(self, a: str, b: str, level: str) -> str:
        pair = self.pair(a, b, level)
        if pair is None:
            return "–"
        return interval_text(st.paired_comparison(*pair, statistic=self.index))

    def change(self, a: str, b: str, low: str, high: str) -> str:
        x, y = self.pair(a, b, low), self.pair(a, b, high)
        if x is None or y is None:
            return "–"
        change = st.difference_of_differences(x[:2], y[:2], x[2], y[2], statistic=self.index)
        return change_text(change)


def p_text(value: float | None) -> str:
    """A p-value with 2,000 draws behind it (a permutation test's smallest is 1 / 2001, `statistics.bootstrap_p`'s
    2 / 2001), so below 0.001 it reads "< 0.001"."""
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def cell_row(config: str, level: str, records: dict[int, LoadedRecord], decoded: tuple) -> str:
    values = [item.record["aggregate"]["mean"]["miou"] for _, item in sorted(records.items())]
    matrices, scored = decoded
    interval = st.hierarchical_bootstrap_ci(matrices, scored)
    flag = "" if len(values) >= MIN_SEEDS else f" ⚠ fewer than {MIN_SEEDS} seeds"
    seeds = ", ".join(str(seed) for seed in sorted(records))
    per_seed = " / ".join(points(v) for v in values)
    return (
        f"| {config} | {level} | {seeds} | {per_seed} | {mean_sd(values)} "
        f"{bounds_text(interval.low, interval.high)}{flag} |"
    )


def cpu_kind(record: dict) -> str | None:
    """The kind of CPU a record trained on (`env.cpu_numerics`, docs/run-record.md, "Same seed, same numbers"):
    its vector ISA and model, e.g. "AVX2 m1"; None for records written before that field existed."""
    numerics = record.get("env", {}).get("cpu_numerics") or {}
    return f"{numerics['isa']} m{numerics.get('model', '?')}" if numerics.get("isa") else None


def cross_cpu_seeds(a: dict[int, LoadedRecord], b: dict[int, LoadedRecord]) -> list[int]:
    """The seeds both configs have whose two records trained on different, known kinds of CPU: a pair there
    measures the machine as well as the change (the same seed gives different numbers on another CPU)."""
    kinds = [(seed, cpu_kind(a[seed].record), cpu_kind(b[seed].record)) for seed in sorted(set(a) & set(b))]
    return [seed for seed, x, y in kinds if x and y and x != y]


def mean_sd(values: list[float]) -> str:
    """Mean ± sample standard deviation over seeds in percent (no spread claimed for one seed)."""
    mean = f"{100 * stats_lib.mean(values):.1f}"
    return mean + (f" ± {100 * stats_lib.stdev(values):.1f}" if len(values) > 1 else "")


def bounds_text(low: float, high: float) -> str:
    """An interval's bounds in points, as every study table writes them: `[low, high]`."""
    return f"[{points(low)}, {points(high)}]"


def interval_text(result: st.PairedComparison) -> str:
    """A paired difference and its interval in points, as a table cell: `d [low, high]` (no explicit + sign)."""
    return f"{points(result.difference)} {bounds_text(result.low, result.high)}"


def change_text(change: st.DifferenceOfDifferences) -> str:
    """A difference of differences (how a gap changes between two levels or budgets) as a table cell, written
    as `interval_text` writes a difference."""
    return f"{points(change.estimate)} {bounds_text(change.low, change.high)}"


def change_p_cells(changes: list[tuple[st.DifferenceOfDifferences, int]]) -> tuple[list[str], int]:
    """Each (change, paired seeds)'s p cell, "p; Holm q": its bootstrap p (`statistics.bootstrap_p`) and, for a
    change with at least MIN_SEEDS paired seeds, that p Holm-adjusted over every such change of the table, the
    family a reader scans for one interval that excludes 0; "Holm –" for the others, which are not claims.
    Returns the cells and the family's size. Shared with benchmarks/budget_report.py."""
    family = [index for index, (_, n) in enumerate(changes) if n >= MIN_SEEDS]
    adjusted = dict(zip(family, st.holm([changes[index][0].p_value for index in family]), strict=True))
    cells = [
        f"{p_text(change.p_value)}; Holm {p_text(adjusted[index]) if index in adjusted else '–'}"
        for index, (change, _) in enumerate(changes)
    ]
    return cells, len(family)


def holm_caption(adjusted: int) -> str:
    """What the "Holm" p of a table's changes is adjusted for, in words a reader can check against the table."""
    if adjusted < 2:
        return f"Holm-adjusted over the changes with at least {MIN_SEEDS} paired seeds ({adjusted}: nothing to adjust):"
    return (
        f"Holm-adjusted over the table's {adjusted} changes with at least {MIN_SEEDS} paired seeds: were all "
        f"{adjusted} truly 0, about {adjusted / 20:.1f} of their 95 % intervals would exclude 0 by chance, which the "
        "adjusted p allows for:"
    )


def paired_cells(a_seeds: dict, b_seeds: dict, scored: object) -> tuple[st.PairedComparison, str, list[str]]:
    """a − b on the last1 mean (the comparison itself), its ⚠ mark when fewer than MIN_SEEDS seeds pair, and
    each scenario's difference as a cell; shared with benchmarks/ablation_report.py."""
    result = st.paired_comparison(a_seeds, b_seeds, scored)
    flag = "" if len(result.seeds) >= MIN_SEEDS else f" ⚠ fewer than {MIN_SEEDS} paired seeds"
    scenarios = next(iter(a_seeds.values())).shape[0]
    per_scenario = [
        interval_text(st.paired_comparison(a_seeds, b_seeds, scored, statistic=index)) for index in range(scenarios)
    ]
    return result, flag, per_scenario


def comparison_row(a: str, b: str, what: str, level: str, decoded: dict, full: FullSet) -> str | None:
    """One paired comparison at one level: the last1 mean, each scenario (which modality was left), then the
    same pair with every modality present (`FullSet`)."""
    if (a, level) not in decoded or (b, level) not in decoded:
        return None
    a_seeds, scored = decoded[(a, level)]
    b_seeds, _ = decoded[(b, level)]
    if not set(a_seeds) & set(b_seeds):
        return None
    result, flag, per_scenario = paired_cells(a_seeds, b_seeds, scored)
    n = len(result.seeds)
    return (
        f"| {what} | {level} | {n} | {interval_text(result)} | "
        f"{p_text(result.p_value)}{flag} | " + " | ".join(per_scenario) + f" | {full.gap(a, b, level)} |"
    )


def change_rows(decoded: dict, full: FullSet) -> tuple[list[str], int]:
    """Per comparison, how its gain changes between two levels, (a − b at the higher level) − (a − b at the
    lower), with the difference-of-differences interval (`statistics.difference_of_differences`): the study's
    question "does it help more as the shared structure grows" asked directly, not read off two intervals;
    with its p, Holm-adjusted over the table (`change_p_cells`). Returns the rows and that family's size."""
    found: list[tuple[str, str, int, st.DifferenceOfDifferences]] = []
    for a, b, what in COMPARISONS:
        for low_level, high_level in (("0", "0.5"), ("0.5", "1"), ("0", "1")):
            cells_needed = [(c, lvl) for c in (a, b) for lvl in (low_level, high_level)]
            if any(cell not in decoded for cell in cells_needed):
                continue
            (ax, scored_x), (bx, _) = decoded[(a, low_level)], decoded[(b, low_level)]
            (ay, scored_y), (by, _) = decoded[(a, high_level)], decoded[(b, high_level)]
            n = min(len(set(ax) & set(bx)), len(set(ay) & set(by)))
            if n == 0:
                continue
            change = st.difference_of_differences((ax, bx), (ay, by), scored_x, scored_y)
            row = f"| {what} | {low_level} → {high_level} | {n} | {change_text(change)}"
            found.append((row, full.change(a, b, low_level, high_level), n, change))
    p_cells, adjusted = change_p_cells([(change, n) for _, _, n, change in found])
    rows = [
        f"{row}{'' if n >= MIN_SEEDS else f' ⚠ fewer than {MIN_SEEDS} paired seeds'} | {p} | {every} |"
        for (row, every, n, _), p in zip(found, p_cells, strict=True)
    ]
    return rows, adjusted


def _scenario_names(found: dict) -> list[str]:
    first = next(iter(next(iter(found.values())).values()))
    return [scenario["name"] for scenario in first.record["scenarios"]]


def report(folder: Path) -> str:
    if not any(folder.glob("*.json")):
        return f"No last1 records in {folder.as_posix()}/ yet."
    loaded = read_folder(folder)  # read once for the last1 cells and the subsets records (`FullSet`)
    found = cells(loaded)
    decoded = {cell: seed_matrices(records) for cell, records in found.items()}  # each record's matrices decoded once
    lines = [
        f"Generated by `python benchmarks/redundancy_report.py {folder.as_posix()}` from {len(found)} cells of last1",
        f"records in {folder.as_posix()}/ (mIoU in %, test part, mean over the three one-modality",
        "scenarios; brackets: 95 % hierarchical bootstrap over seeds and 32 test tiles).",
        "",
        "| method config | redundancy | seeds | last1 mean mIoU per seed | mean ± sd [95 % interval] |",
        "|---|---|---|---|---|",
    ]
    for config in METHODS:
        for level in LEVELS:
            if (config, level) in found:
                lines.append(cell_row(config, level, found[(config, level)], decoded[(config, level)]))
    missing = [f"{c} at {lvl}" for c in METHODS for lvl in LEVELS if len(found.get((c, lvl), {})) < MIN_SEEDS]
    total = len(METHODS) * len(LEVELS)
    lines.append("")
    if missing:
        lines.append(f"Cells with fewer than {MIN_SEEDS} seeds ({len(missing)} of {total}): {', '.join(missing)}.")
    else:
        lines.append(f"Every one of the {total} cells has at least {MIN_SEEDS} seeds.")
    full = FullSet(loaded)
    rows = [
        row
        for a, b, what in COMPARISONS
        for level in LEVELS
        if (row := comparison_row(a, b, what, level, decoded, full))
    ]
    if rows:
        lines += [
            "",
            "Paired differences, a − b in points of last1 mean mIoU and of each scenario's mIoU (paired by seed and",
            "tile; interval: paired bootstrap, 95 %; p: paired permutation test of the mean, 2,000 permutations):",
            "",
            "| comparison | redundancy | paired seeds | a − b [95 % interval] | p | "
            + " | ".join(f"{name}: a − b" for name in _scenario_names(found))
            + f" | {full.name or 'all present'} (subsets): a − b |",
            "|---|---|---:|---|---:|" + "---|" * (len(_scenario_names(found)) + 1),
            *rows,
        ]
    changes, adjusted = change_rows(decoded, full)
    if changes:
        lines += [
            "",
            "Does the gain change with redundancy? (a − b at the higher level) − (a − b at the lower), in points of",
            "last1 mean mIoU; interval: 95 % bootstrap of the difference, each level resampled on its own (different",
            "trainings, different test tiles), pairs within a level by seed and tile. The last column is the same",
            "change with every modality present (subsets records), where nothing is imputed or translated: a",
            "change there is not the missing-modality mechanism's. p: the bootstrap test the interval inverts, then",
            holm_caption(adjusted),
            "",
            "| comparison | levels | paired seeds (fewest) | change of a − b [95 % interval] | p | with every "
            "modality present |",
            "|---|---|---:|---|---:|---|",
            *changes,
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = report_arguments(
        __doc__.splitlines()[0], "docs/results/records/redundancy-study", "docs/results/redundancy-study.md"
    )
    return write_report(parser.parse_args(argv), report)


if __name__ == "__main__":
    raise SystemExit(main())
