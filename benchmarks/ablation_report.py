"""Rewrite docs/results/stars-ablations-v2.md's results block from the committed records only.

Records live in docs/results/records/stars-ablations-v2/ as `<method config>-seed<S>-<protocol>.json`
(`benchmarks/copy_sweep_records.py` names them from `suites/stars-ablations-v2.yaml`'s config names). The suite
says what each variant changes (its `set:` overrides) and which config it changes it from: the suite's config of
the same method without overrides (`stars` for STARS' variants, `shaspec-norm-joint` for ShaSpec's). The block
gives every config's last1 mean mIoU (mean ± sample standard deviation over seeds, and the 95 % hierarchical-
bootstrap interval over seeds and test tiles, `mmbench.leaderboard.statistics`) and its minority-class mIoU, then
each variant minus its reference, paired by seed and tile: the last1 mean and each one-modality scenario, the
minority classes' mIoU (minority records), and, from the subsets records, the mean over all seven modality
subsets and the scenario with every modality present, where nothing is missing — a difference there is not the
missing-modality mechanism's. A config or a comparison with fewer than 3 seeds is printed but marked, and the
page's reading claims nothing from it.

Usage: `python benchmarks/ablation_report.py [RECORDS_DIR] [--suite suites/stars-ablations-v2.yaml]
[--doc docs/results/stars-ablations-v2.md] [--marker NAME]` (the block between `<!-- NAME:progress -->`
markers; NAME defaults to the records folder's name).
"""

from __future__ import annotations

import re
import statistics as stats_lib
from pathlib import Path
from typing import NamedTuple

import yaml
from page_block import (  # benchmarks/page_block.py: scripts run with benchmarks/ on sys.path
    report_arguments,
    write_report,
)
from redundancy_report import (
    FullSet,
    bounds_text,
    cells,
    cpu_kind,
    cross_cpu_seeds,
    interval_text,
    mean_sd,
    p_text,
    paired_cells,
    points,
    read_folder,
    seed_matrices,
)

from mmbench.leaderboard import statistics as st
from mmbench.leaderboard.collect import LoadedRecord
from mmbench.leaderboard.table_statistics import MIN_SEEDS

# Copies of another suite's records of a reference config, compared with this suite's own runs of it: the same
# config and seeds trained on another machine (docs/run-record.md, "Same seed, same numbers"). Shown only when
# their records are in the folder, as `<name>-seed<S>-<protocol>.json`.
MACHINE_CHECKS = {
    "stars-board": ("stars", "none: the board's STARS records (docs/results/records/synthetic-v2), earlier VM")
}
NAME = re.compile(r"^(?P<config>.+)-seed(?P<seed>\d+)-(?P<protocol>[a-z0-9-]+)\.json$")
SUITE = Path("suites/stars-ablations-v2.yaml")


class Variant(NamedTuple):
    """One method config of the suite: its name, its method, its overrides and the config it is compared with
    (None for a reference itself). A NamedTuple, not a dataclass: the tests load this script by path, outside
    sys.modules, where dataclasses cannot resolve their module."""

    name: str
    method: str
    overrides: tuple[str, ...]
    reference: str | None


def variants(suite: Path) -> list[Variant]:
    """The suite's method configs in its order, each with its reference: the config of the same method that has
    no overrides (a suite with a variant but no such config is a suite this report cannot read)."""
    entries = yaml.safe_load(suite.read_text())["methods"]
    references = {entry["method"]: entry["name"] for entry in entries if not entry.get("set")}
    found = []
    for entry in entries:
        overrides = tuple(entry.get("set") or ())
        if overrides and entry["method"] not in references:
            raise SystemExit(f"{suite}: {entry['name']} changes {entry['method']}, which has no config without `set:`")
        reference = references[entry["method"]] if overrides else None
        found.append(Variant(entry["name"], entry["method"], overrides, reference))
    return found


def _minority(loaded: list[LoadedRecord]) -> dict[str, tuple[dict, object, list[float]]]:
    """config -> (seed matrices, minority-class mask, each seed's minority mIoU) from the minority records."""
    found = cells(loaded, "minority", NAME)
    out = {}
    for (config, _), by_seed in found.items():
        classes = next(iter(by_seed.values())).record["aggregate"]["minority_classes"]
        matrices, scored = seed_matrices(by_seed, classes)
        values = [item.record["aggregate"]["minority_miou"]["mean"] for _, item in sorted(by_seed.items())]
        out[config] = (matrices, scored, values)
    return out


def config_row(variant: Variant, records: dict[int, LoadedRecord], decoded: tuple, minority: dict) -> str:
    values = [item.record["aggregate"]["mean"]["miou"] for _, item in sorted(records.items())]
    matrices, scored = decoded
    interval = st.hierarchical_bootstrap_ci(matrices, scored)
    flag = "" if len(values) >= MIN_SEEDS else f" ⚠ fewer than {MIN_SEEDS} seeds"
    if variant.name in MACHINE_CHECKS:
        changes = variant.overrides[0]
    else:
        changes = ", ".join(f"`{item}`" for item in variant.overrides) or f"reference ({variant.method} defaults)"
    seeds = ", ".join(str(seed) for seed in sorted(records))
    per_seed = " / ".join(points(v) for v in values)
    # null for a resumed run whose earlier segment's time is unknown (docs/run-record.md): left out of the mean
    train_s = [s for item in records.values() if (s := item.record["timing"].get("train_s")) is not None]
    minority_cell = mean_sd(minority[variant.name][2]) if variant.name in minority else "–"
    train = f"{stats_lib.mean(train_s):.0f}" if train_s else "–"
    cpus = " / ".join(cpu_kind(item.record) or "–" for _, item in sorted(records.items()))
    return (
        f"| {variant.name} | {changes} | {seeds} | {per_seed} | {mean_sd(values)} "
        f"{bounds_text(interval.low, interval.high)}{flag} | {minority_cell} | {train} | {cpus} |"
    )


def comparison_row(variant: Variant, found: dict, decoded: dict, minority: dict, full: FullSet) -> str | None:
    """The variant minus its reference, paired by seed and tile (None when they share no seed); marked where a
    seed's two records trained on different kinds of CPU (`cross_cpu_seeds`)."""
    a, b = (variant.name, ""), (variant.reference, "")
    if a not in decoded or b not in decoded:
        return None
    (a_seeds, scored), (b_seeds, _) = decoded[a], decoded[b]
    if not set(a_seeds) & set(b_seeds):
        return None
    result, flag, per_scenario = paired_cells(a_seeds, b_seeds, scored)
    n = len(result.seeds)
    if crossed := cross_cpu_seeds(found[a], found[b]):
        flag += f" ⚠ seed {', '.join(map(str, crossed))} paired across CPU kinds"
    minority_cell = "–"
    if variant.name in minority and variant.reference in minority:
        (ma, mask, _), (mb, _, _) = minority[variant.name], minority[variant.reference]
        if set(ma) & set(mb):
            minority_cell = interval_text(st.paired_comparison(ma, mb, mask))
    subsets = full.pair(variant.name, variant.reference, "")
    subsets_mean = interval_text(st.paired_comparison(*subsets)) if subsets else "–"
    return (
        f"| {variant.name} | {variant.reference} | {n} | {interval_text(result)} | {p_text(result.p_value)}{flag} | "
        + " | ".join(per_scenario)
        + f" | {minority_cell} | {subsets_mean} | {full.gap(variant.name, variant.reference, '')} |"
    )


def report(folder: Path, suite: Path = SUITE) -> str:
    loaded = read_folder(folder)  # read once for the last1, minority and subsets records
    found = cells(loaded, "last1", NAME)
    if not found:
        return f"No last1 records in {folder.as_posix()}/ yet."
    configs = variants(suite)
    method = {variant.name: variant.method for variant in configs}  # a machine check's method is its reference's
    configs += [
        Variant(name, method[reference], (what,), reference)
        for name, (reference, what) in MACHINE_CHECKS.items()
        if (name, "") in found and reference in method
    ]
    decoded = {cell: seed_matrices(records) for cell, records in found.items()}  # each record's matrices decoded once
    minority = _minority(loaded)
    lines = [
        f"Generated by `python benchmarks/ablation_report.py {folder.as_posix()}` from the records in",
        f"{folder.as_posix()}/ and the configs of {suite.as_posix()} (mIoU in %, test part; last1: mean over the",
        "three one-modality scenarios; brackets: 95 % hierarchical bootstrap over seeds and 32 test tiles; minority:",
        "mIoU over the minority classes, mean over the same scenarios; train s: `timing.train_s`, wall time under",
        'whatever else ran on the machine; CPU: the kind each seed trained on, `env.cpu_numerics`, "–" where the',
        "record predates that field).",
        "",
        "| method config | changes (suite `set:`) | seeds | last1 mean mIoU per seed | mean ± sd [95 % interval] "
        "| minority mIoU | train s | CPU |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for variant in configs:
        if (variant.name, "") in found:
            records = found[(variant.name, "")]
            lines.append(config_row(variant, records, decoded[(variant.name, "")], minority))
    missing = [v.name for v in configs if len(found.get((v.name, ""), {})) < MIN_SEEDS]
    lines.append("")
    if missing:
        lines.append(
            f"Configs with fewer than {MIN_SEEDS} seeds ({len(missing)} of {len(configs)}): {', '.join(missing)}."
        )
    else:
        lines.append(f"Every one of the {len(configs)} configs has at least {MIN_SEEDS} seeds.")
    full = FullSet(loaded, NAME)
    rows = [
        row
        for variant in configs
        if variant.reference and (row := comparison_row(variant, found, decoded, minority, full))
    ]
    if rows:
        names = [scenario["name"] for scenario in next(iter(next(iter(found.values())).values())).record["scenarios"]]
        lines += [
            "",
            "Each variant minus its reference, in points (paired by seed and tile; interval: paired bootstrap, 95 %;",
            "p: paired permutation test of the last1 mean, 2,000 permutations; no correction for the number of",
            "variants). The last two columns come from the subsets records: the mean over all seven modality subsets,",
            "and the subset with every modality present, where nothing is missing:",
            "",
            "| variant | reference | paired seeds | last1 mean: variant − reference [95 % interval] | p | "
            + " | ".join(f"{name}" for name in names)
            + f" | minority mIoU | subsets mean | {full.name or 'all present'} |",
            "|---|---|---:|---|---:|" + "---|" * (len(names) + 3),
            *rows,
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = report_arguments(
        __doc__.splitlines()[0], "docs/results/records/stars-ablations-v2", "docs/results/stars-ablations-v2.md"
    )
    parser.add_argument("--suite", default=str(SUITE))
    args = parser.parse_args(argv)
    return write_report(args, lambda folder: report(folder, Path(args.suite)))


if __name__ == "__main__":
    raise SystemExit(main())
