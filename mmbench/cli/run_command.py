"""`mmbench run` and `mmbench eval`: build the plan, show it (`--dry-run`) or execute it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from mmbench.config import to_yaml
from mmbench.console import stderr, stdout
from mmbench.context import RunOptions, RunPlan
from mmbench.errors import UserError
from mmbench.records import read_record
from mmbench.runs.execution import execute_run
from mmbench.runs.planning import RunRequest, changed_from_defaults, plan_run

FLAG_KEYS = {"seed": "run.seed", "device": "run.device", "out": "run.out", "deterministic": "run.deterministic"}


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dedicated flags the user actually gave, as dotted config keys."""
    return {key: getattr(args, name) for name, key in FLAG_KEYS.items() if getattr(args, name) is not None}


def make_request(
    args: argparse.Namespace, method: str, protocol: str | None = None, config: str | None = None
) -> RunRequest:
    """`protocol` and `config`: one protocol of a `mmbench eval` of several, with its own config file."""
    # `mmbench eval` has neither flag; `mmbench run --checkpoint` has both.
    options = RunOptions(resume=bool(getattr(args, "resume", False)), smoke=bool(getattr(args, "smoke", False)))
    config = config if protocol is not None else args.config
    return RunRequest(
        options=options,
        method=method,
        protocol=protocol if protocol is not None else args.protocol,
        dataset=args.dataset,
        command=args.command_line,
        config_file=Path(config) if config else None,
        overrides=tuple(args.overrides),
        flags=flag_overrides(args),
    )


def run(args: argparse.Namespace) -> int:
    if args.checkpoint:
        from mmbench.engine.checkpoint import load_checkpoint
        from mmbench.errors import UserError

        trained = load_checkpoint(args.checkpoint)["method"]["name"]
        if trained != args.method:
            raise UserError(f"checkpoint {args.checkpoint!r} holds method {trained!r}, not {args.method!r}")
        return evaluate(args)
    plan = plan_run(make_request(args, args.method))
    if args.dry_run:
        from mmbench.runs.preflight import check_training_settings

        show_plan(plan)
        check_training_settings(plan)  # a dry run says what the engine would refuse
        return 0
    from mmbench.runtime.distributed import end_worker_process, is_main_process, shutdown_distributed

    try:
        path = execute_run(plan)
    except BaseException:
        shutdown_distributed()
        raise
    shutdown_distributed(wait_for_peers=True)
    if is_main_process():
        show_result(path)
    return end_worker_process(0)


def evaluate(args: argparse.Namespace) -> int:
    """`mmbench eval` (and `mmbench run --checkpoint`): every protocol planned, then evaluated in one process
    (mmbench/runs/checkpoint_eval.py). One protocol behaves as it always did; with several, a failing
    protocol's one-line error is printed as it happens, the others still run, and the exit code is the
    first failure's."""
    from mmbench.runs.checkpoint_eval import (
        ProtocolResult,
        evaluate_checkpoint,
        evaluate_checkpoint_protocols,
        plan_checkpoint_evaluations,
    )

    protocols = protocol_names(args.protocol)
    configs = protocol_configs(args.config, protocols)
    requests = [make_request(args, "", protocol, configs.get(protocol)) for protocol in protocols]
    plans, payload = plan_checkpoint_evaluations(requests, args.checkpoint)
    if args.dry_run:
        for plan in plans:
            show_plan(plan)
        return 0
    if len(plans) == 1:
        show_result(evaluate_checkpoint(plans[0], payload, args.checkpoint))
        return 0

    def show(result: ProtocolResult) -> None:
        if result.record is not None:
            show_result(result.record)
        else:
            # plain, unwrapped: `mmbench sweep` reads this line back from the log (mmbench/sweep/jobs.py)
            sys.stderr.write(
                f"mmbench eval: protocol {result.protocol} failed: {' '.join(str(result.error).split())}\n"
            )
            sys.stderr.flush()

    results = evaluate_checkpoint_protocols(plans, payload, args.checkpoint, on_result=show)
    failed = [result for result in results if result.error is not None]
    if failed:
        done = len(results) - len(failed)
        stderr().print(f"{done} of {len(results)} protocols evaluated; failed: {', '.join(r.protocol for r in failed)}")
        raise failed[0].error  # type: ignore[misc]  # the first failure's one line and exit code
    return 0


def protocol_names(given: str | list[str]) -> list[str]:
    """`--protocol a --protocol b,c` -> [a, b, c] (`mmbench run --checkpoint` gives one string)."""
    values = [given] if isinstance(given, str) else given
    names = [name.strip() for value in values for name in value.split(",")]
    if not all(names):
        raise UserError(f"--protocol {','.join(values)!r} names an empty protocol; give names like last1,subsets")
    return names


def protocol_configs(given: str | list[str] | None, protocols: list[str]) -> dict[str, str | None]:
    """Each protocol's config file: `--config P=FILE` for protocol P, else the plain `--config FILE` (at most
    one). A value counts as `P=FILE` only when P is one of the protocols evaluated."""
    values = [given] if isinstance(given, str) else list(given or [])
    common: list[str] = []
    own: dict[str, str] = {}
    for value in values:
        name, equals, path = value.partition("=")
        if equals and name in protocols:
            if name in own:
                raise UserError(f"--config gives protocol {name!r} two files; give one --config {name}=FILE")
            own[name] = path
        elif equals and "/" not in name and not Path(value).exists():
            raise UserError(
                f"--config {value!r}: {name!r} is not a protocol of this evaluation ({', '.join(protocols)})"
            )
        else:
            common.append(value)
    if len(common) > 1:
        raise UserError("--config is given twice without a protocol; give one FILE for all, or P=FILE each")
    return {protocol: own.get(protocol, common[0] if common else None) for protocol in protocols}


def show_plan(plan: RunPlan) -> None:
    console = stdout()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("method", f"{plan.method.name} {plan.method.version}  ({plan.method.target})")
    summary.add_row("protocol", f"{plan.protocol.name} {plan.protocol.version}")
    dataset = plan.dataset
    summary.add_row("dataset", f"{dataset.name}" + (f"  ({dataset.path})" if dataset.path else ""))
    summary.add_row("seed", str(plan.seed))
    console.print(Panel(summary, title="dry run: nothing is computed or written", title_align="left"))
    console.print(Syntax(to_yaml(plan.config.data), "yaml", theme="ansi_dark", background_color="default"))
    changed = changed_from_defaults(plan)
    if changed:
        table = Table(title="Changed from the defaults", title_justify="left")
        table.add_column("key", style="cyan", overflow="fold")
        table.add_column("value", overflow="fold")
        table.add_column("set by", style="dim", overflow="fold")
        for key, source in changed.items():
            table.add_row(key, repr(plan.config.get(key)), source)
        console.print(table)


def show_result(path: Path) -> None:
    record = read_record(path)
    console = stdout()
    if record["scenarios"]:
        table = Table(title=f"{record['method']['name']} under {record['protocol']['name']}", title_justify="left")
        for column in ("scenario", "available", "mIoU", "mF1", "OA"):
            table.add_column(column, justify="right" if column[0].isupper() or column[0] == "m" else "left")
        for scenario in record["scenarios"]:
            metrics = scenario["metrics"]
            table.add_row(
                scenario["name"],
                ", ".join(scenario["available"]),
                *(_percent(metrics[key]) for key in ("miou", "mf1", "oa")),
            )
        console.print(table)
    if record["aggregate"]:
        summary = Table(title=f"{record['protocol']['name']} summary", title_justify="left")
        summary.add_column("aggregate", style="cyan")
        summary.add_column("value", justify="right")
        for key, value in _flatten(record["aggregate"]):
            summary.add_row(key, _percent(value) if isinstance(value, float) and abs(value) <= 1 else str(value))
        console.print(summary)
    console.print(f"run record: [bold]{path}[/bold]")


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Leaves of a nested aggregate as ("mean.miou", value) rows; per-scenario maps are in the table above."""
    rows: list[tuple[str, Any]] = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if key in ("per_scenario_miou", "train_class_frequencies"):
            continue
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{path}."))
        elif isinstance(value, list):
            rows.append((path, ", ".join(map(str, value))))
        else:
            rows.append((path, value))
    return rows


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"
