"""`mmbench bench kernels`: the providers of every kernel problem, timed side by side, as a table and JSON;
`mmbench bench step`: one training step of each method, split into its parts (mmbench/bench/step.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from mmbench.console import stdout
from mmbench.errors import UserError


def _device(requested: str | None) -> Any:
    import torch

    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise UserError(f"--device {requested!r} is not a device ({exc}); use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: CUDA is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {requested}: only cpu and cuda are benchmarked")
    return device


def _format(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def results_table(rows: list[Any], bandwidth: float) -> Table:
    table = Table(title=f"Kernels (device-copy bandwidth {bandwidth:.1f} GB/s)", title_justify="left")
    for column in (
        "op",
        "problem",
        "provider",
        "median ms",
        "p20-p80 ms",
        "vs naive",
        "MB moved",
        "GB/s",
        "% copy BW",
        "GFLOP/s",
        "peak MB",
    ):
        table.add_column(column, justify="left" if column in ("op", "problem", "provider") else "right")
    naive = {(row.op, row.problem): row.median_ms for row in rows if row.provider == "naive"}
    for row in rows:
        if row.error:
            table.add_row(row.op, row.problem, row.provider, f"[red]{row.error}[/red]", *["-"] * 7)
            continue
        baseline = naive.get((row.op, row.problem))
        table.add_row(
            row.op,
            row.problem,
            row.provider,
            _format(row.median_ms),
            f"{_format(row.p20_ms)}-{_format(row.p80_ms)}",
            f"{baseline / row.median_ms:.1f}x" if baseline else "-",
            _format(row.bytes_moved / 1e6),
            _format(row.gbps),
            _format(100 * row.copy_fraction if row.copy_fraction is not None else None, 2),
            _format(row.gflops),
            _format(row.peak_memory_bytes / 1e6 if row.peak_memory_bytes is not None else None),
        )
    return table


def targets_table(targets: list[dict[str, Any]]) -> Table:
    table = Table(title="Targets", title_justify="left")
    for column in ("target", "measured", "needed", "met"):
        table.add_column(column)
    for target in targets:
        unit = target["unit"]
        value = f"{100 * target['value']:.0f}%" if not unit else f"{target['value']:.1f}{unit}"
        needed = f">= {100 * target['threshold']:.0f}%" if not unit else f">= {target['threshold']:.0f}{unit}"
        table.add_row(target["name"], value, needed, "[green]yes[/green]" if target["met"] else "[red]no[/red]")
    return table


def run(args: argparse.Namespace) -> int:
    if args.bench_command == "step":
        return step(args)
    return kernels(args)


def step(args: argparse.Namespace) -> int:
    """Profile each named method's training step (default: every trainable registered method)."""
    import torch

    from mmbench.bench.step import check_counts
    from mmbench.bench.step_setup import check_trainable, trainable_methods

    check_counts(batch_size=args.batch_size, size=args.size, steps=args.steps, warmup=args.warmup, threads=args.threads)
    device = _device(args.device)
    methods = list(args.methods) or trainable_methods()
    for name in args.methods:
        check_trainable(name)  # an unknown name is the registry's one-line error; before any store is made
    threads_before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _profile_steps(args, methods, device)
    finally:
        torch.set_num_threads(threads_before)  # the process's setting, not the benchmark's (tests run in process)


def _profile_steps(args: argparse.Namespace, methods: list[str], device: Any) -> int:
    from mmbench.atomic import write_json_atomic, write_text_atomic
    from mmbench.bench.step import profile_method, result_document
    from mmbench.bench.step_report import markdown_table, modules_table, step_table
    from mmbench.bench.step_setup import resolve_store
    from mmbench.progress import progress_bar
    from mmbench.records import utc_now

    out = Path(args.out) if args.out else Path("bench") / f"step-{device.type}-{utc_now():%Y%m%d-%H%M%S}.json"
    store = resolve_store(getattr(args, "dataset", None))
    profiles = []
    with progress_bar("profiling training steps", len(methods)) as advance_to:
        for index, name in enumerate(methods):
            advance_to(index, description=f"profiling {name}")
            profiles.append(
                profile_method(
                    name,
                    store=store,
                    batch_size=args.batch_size,
                    size=args.size,
                    steps=args.steps,
                    warmup=args.warmup,
                    device=str(device),
                )
            )
        advance_to(len(methods), description="profiled")
    document = result_document(profiles, device=str(device), command=args.command_line, store=store[1])
    console = stdout()
    console.print(step_table(profiles))
    console.print(modules_table(profiles))
    write_json_atomic(out, document)
    console.print(f"results: {out}")
    if args.markdown:
        write_text_atomic(args.markdown, markdown_table(profiles))
        console.print(f"table: {args.markdown}")
    return 0


def kernels(args: argparse.Namespace) -> int:
    from mmbench.atomic import write_json_atomic
    from mmbench.bench.kernel_cases import available_providers, select_problems
    from mmbench.bench.kernels import copy_bandwidth, measure, result_document
    from mmbench.progress import progress_bar
    from mmbench.records import utc_now

    device = _device(args.device)
    possible = available_providers(device)
    providers = tuple(args.providers or possible)
    missing = [name for name in providers if name not in possible]
    if missing:
        raise UserError(
            f"provider {', '.join(missing)} does not run on {device} (Triton is timed on CUDA only); "
            f"choose from {', '.join(possible)}"
        )
    problems = select_problems(tuple(args.sizes), tuple(args.ops))
    out = Path(args.out) if args.out else Path("bench") / f"kernels-{device.type}-{utc_now():%Y%m%d-%H%M%S}.json"

    console = stdout()
    bandwidth = copy_bandwidth(device)
    rows: list[Any] = []
    total = len(problems) * len(providers)
    with progress_bar("timing kernels", total) as advance_to:
        for problem in problems:

            def done(row: Any, problem: Any = problem) -> None:
                rows.append(row)
                advance_to(len(rows), description=f"{problem.op} {problem.name}: {row.provider}")

            measure(problem, device, providers, bandwidth, on_done=done, min_time=args.min_time)
    document = result_document(rows, device, bandwidth, args.command_line)
    console.print(results_table(rows, bandwidth))
    if document["targets"]:
        console.print(targets_table(document["targets"]))
    write_json_atomic(out, document)
    console.print(f"results: {out}")
    return 0
