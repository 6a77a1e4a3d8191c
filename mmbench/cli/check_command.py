"""`mmbench check method|protocol|dataset NAME`: run a plugin's contract checks (mmbench/testing, described in
docs/checking.md) in seconds, before a real run finds the problem after an hour of training.

All rules passing prints a table of the checks and exits 0; a broken rule exits 2 with one line naming the
plugin, its distribution, the rule and the fix. The parser part is import-light (argparse only), like every
command's (mmbench/cli/main.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from mmbench.cli.options import add_overrides

KINDS = ("method", "protocol", "dataset")
MARKS = {"pass": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "skip": "[dim]–[/dim]", "fail": "[red]✗[/red]"}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    check = commands.add_parser(
        "check",
        help="check that a method, protocol or dataset plugin keeps mmbench's contract (seconds, on CPU)",
        description="Build the plugin small and check every rule of its contract: logits shape, dtype and "
        "classes, availability patterns, no information from missing modalities, determinism, checkpoints, "
        "training loss and gradients (methods); scenarios and aggregates (protocols); the prepared store "
        "(datasets). See docs/checking.md.",
    )
    check.add_argument("kind", choices=KINDS, help="what to check")
    check.add_argument("name", metavar="NAME", help="registered name (see 'mmbench list')")
    check.add_argument(
        "--dataset",
        "-d",
        metavar="NAME|FILE.h5",
        help="take modalities and classes from this dataset's store (default: the synthetic benchmark's)",
    )
    add_overrides(check, "override one config value of the checked plugin, e.g. --set method.width=16 (repeatable)")
    check.add_argument(
        "--full-size", action="store_true", help="methods: build at the default config, not its tiny_config"
    )
    check.add_argument("--size", type=int, default=32, metavar="PX", help="methods: input side in pixels (32)")
    check.set_defaults(handler="mmbench.cli.check_command:run")
    return check


def run(args: argparse.Namespace) -> int:
    from mmbench.errors import PluginContractError

    report = {"method": _method, "protocol": _protocol, "dataset": _dataset}[args.kind](args)
    if report.failures:
        if getattr(args, "debug", False) and report.exception is not None:
            raise report.exception
        others = [result.rule for result in report.failures[1:]]
        more = f" (also broken: {', '.join(others)})" if others else ""
        raise PluginContractError(report.line(report.failures[0]) + more)
    _print(report)
    return 0


def _facts(args: argparse.Namespace) -> Any:
    """The store's facts when --dataset is given, else None (the synthetic benchmark's modalities)."""
    if not args.dataset:
        return None
    from mmbench.config import resolve_run_config
    from mmbench.context import DatasetFacts
    from mmbench.runs.planning import resolve_dataset

    dataset = resolve_dataset(args.dataset)
    settings = resolve_run_config({"dataset": dataset.spec}).section("dataset")
    dataset = dataset.materialize(settings)
    if dataset.path is None:
        from mmbench.errors import UserError

        raise UserError(f"dataset {dataset.name!r} has no tile store to read; give its store with --dataset FILE.h5")
    return DatasetFacts.from_store(dataset.path, name=dataset.name)


def _section_overrides(args: argparse.Namespace, section: str) -> list[str]:
    from mmbench.errors import ConfigError

    wrong = [text for text in args.overrides if not text.startswith(f"{section}.")]
    if wrong:
        raise ConfigError(f"--set {wrong[0]}: 'mmbench check {args.kind}' takes only {section}.KEY=VALUE overrides")
    return list(args.overrides)


def _method(args: argparse.Namespace) -> Any:
    from mmbench.config.resolve import parse_override
    from mmbench.registry import DATASETS
    from mmbench.testing import check_method

    overrides = dict(parse_override(text) for text in _section_overrides(args, "method"))
    config = {key.removeprefix("method."): value for key, value in overrides.items()}
    facts = _facts(args)
    if facts is not None:
        modalities, classes = dict(facts.modalities), len(facts.classes)
    else:
        modalities, classes = None, len(DATASETS.get("synthetic").classes)
    return check_method(
        args.name,
        modalities=modalities,
        num_classes=classes,
        config=config,
        tiny=not args.full_size,
        size=args.size,
        raise_on_failure=False,
    )


def _protocol(args: argparse.Namespace) -> Any:
    from mmbench.testing import check_protocol

    overrides = _section_overrides(args, "protocol")
    facts = _facts(args)
    if facts is None:
        return check_protocol(args.name, overrides=overrides, raise_on_failure=False)
    return check_protocol(
        args.name,
        modalities=facts.modality_names,
        classes=facts.classes,
        channels=dict(facts.modalities),
        overrides=overrides,
        raise_on_failure=False,
    )


def _dataset(args: argparse.Namespace) -> Any:
    from mmbench.testing import check_dataset

    return check_dataset(args.name, overrides=_section_overrides(args, "dataset"), raise_on_failure=False)


def _print(report: Any) -> None:
    from rich.table import Table

    from mmbench.console import stdout

    table = Table(title=f"{report.kind} {report.name!r} ({report.origin})", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("result")
    for result in report.results:
        table.add_row(MARKS.get(result.status, result.status), result.rule, result.detail)
    console = stdout()
    console.print(table)
    warnings = len(report.warnings)
    note = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    console.print(f"[green]ok[/green]: {report.kind} {report.name!r} keeps the contract{note}")
