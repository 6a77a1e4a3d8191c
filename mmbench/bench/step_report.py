"""The step profiles of mmbench/bench/step.py as a rich table (terminal) and as Markdown (docs/results)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from mmbench.bench.step import LOSS_LABEL, PARTS, StepProfile

HEADERS = {
    "data": "data",
    "forward": "forward",
    "loss": LOSS_LABEL,
    "backward": "backward",
    "optimiser": "optimiser",
    "other": "other",
}
COLUMNS = (
    "method",
    *HEADERS.values(),
    "total s/step",
    "cpu s/step",
    "steps/s",
    "peak MB",
    "step +MB",
    "threads",
)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _megabytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.0f}"


def row(profile: StepProfile) -> list[str]:
    """One method's cells: mean wall seconds per part and in total, process CPU, rate, memory (the peak, and
    how far the timed steps raised it above the memory held before them), threads."""
    return [
        profile.method,
        *(_seconds(profile.wall[part]) for part in PARTS),
        _seconds(profile.wall["total"]),
        _seconds(profile.cpu["total"]),
        f"{profile.steps_per_second:.2f}",
        _megabytes(profile.peak_memory_bytes),
        _megabytes(
            profile.peak_memory_bytes - profile.baseline_memory_bytes
            if profile.peak_memory_bytes is not None and profile.baseline_memory_bytes is not None
            else None
        ),
        f"{profile.threads}/{profile.interop_threads}",
    ]


def top(modules: dict[str, float] | None, count: int = 3, share: bool = False) -> str:
    """The `count` largest entries, `name 0.123` (seconds) or `name 45%` (shares)."""
    if not modules:
        return "-"
    items = sorted(modules.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {100 * value:.0f}%" if share else f"{name} {value:.3f}" for name, value in items)


def step_table(profiles: Sequence[StepProfile]) -> Table:
    """The parts of each method's step, one row per method."""
    first = profiles[0] if profiles else None
    title = "Training step profile (wall seconds per step, means)"
    if first is not None:
        title += f": batch {first.batch_size}, {first.size} px, {first.device}, {first.steps} steps"
    table = Table(title=title, title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "method" else "right")
    for profile in profiles:
        table.add_row(*row(profile))
    return table


def modules_table(profiles: Sequence[StepProfile]) -> Table:
    """Where forward and backward go, by the model's direct children."""
    table = Table(title="By module (the model's direct children)", title_justify="left")
    for column in ("method", "forward s/step: top 3", "backward share: top 3"):
        table.add_column(column)
    for profile in profiles:
        table.add_row(profile.method, top(profile.forward_modules), top(profile.backward_shares, share=True))
    return table


def markdown_table(profiles: Sequence[StepProfile]) -> str:
    """The main table and the by-module table, as Markdown."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c == "method" else "---:" for c in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row(profile)) + " |" for profile in profiles]
    cpu_columns = ("method", *HEADERS.values(), "total cpu s/step", "cpu/wall")
    lines += [
        "",
        "Process CPU seconds per step (all threads of the process), by part:",
        "",
        "| " + " | ".join(cpu_columns) + " |",
        "|" + "|".join("---" if c == "method" else "---:" for c in cpu_columns) + "|",
    ]
    lines += [
        "| "
        + " | ".join(
            [
                p.method,
                *(_seconds(p.cpu[part]) for part in PARTS),
                _seconds(p.cpu["total"]),
                f"{p.cpu['total'] / p.wall['total']:.2f}" if p.wall["total"] > 0 else "-",
            ]
        )
        + " |"
        for p in profiles
    ]
    lines += [
        "",
        "| method | forward by module (s/step) | backward by module (share of backward) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {p.method} | {top(p.forward_modules, 4)} | {top(p.backward_shares, 4, share=True)} |" for p in profiles
    ]
    return "\n".join(lines) + "\n"
