"""`mmbench list`: what is registered, from which package, and what failed to load."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from mmbench.console import stdout
from mmbench.registry import REGISTRIES, Registration, Registry


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    if args.json:
        print(json.dumps({kind: [_as_json(r) for r in REGISTRIES[kind].registrations()] for kind in kinds}, indent=2))
        return 0
    console = stdout()
    for kind in kinds:
        registry = REGISTRIES[kind]
        registrations = registry.registrations()
        if not registrations:
            console.print(
                f"[bold]{kind.capitalize()}[/bold]: none registered. "
                f"Plugins register through entry points in group [cyan]{registry.group}[/cyan] "
                "(see docs/plugins.md)."
            )
            continue
        console.print(_table(registry, registrations))
    return 0


def _table(registry: Registry, registrations: list[Registration]) -> Table:
    table = Table(title=f"{registry.plural.capitalize()} ({registry.group})", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("version", no_wrap=True)
    with_modalities = hasattr(registry.spec_type, "describe_modalities")  # methods, datasets, converters
    if with_modalities:
        table.add_column("modalities", no_wrap=True)
    table.add_column("summary", overflow="fold")
    with_paper = any(r.spec is not None and r.spec.paper for r in registrations)
    if with_paper:
        table.add_column("paper", overflow="fold", max_width=32)
    table.add_column("provided by", style="dim", overflow="fold", max_width=24)
    for registration in registrations:
        sources = ", ".join(source.distribution or source.value for source in registration.sources)
        spec = registration.spec
        if spec is None:
            problem = (
                "registered more than once: " + "; ".join(s.describe() for s in registration.sources)
                if registration.status == "conflict"
                else f"failed to load ({registration.sources[0].value}): {registration.error}"
            )
            row = [registration.name, "-"]
            if with_modalities:
                row.append("")
            table.add_row(*row, f"[red]{problem}[/red]", *([""] if with_paper else []), sources)
            continue
        row = [spec.name, spec.version]
        if with_modalities:
            row.append(spec.describe_modalities())
        table.add_row(*row, spec.summary, *([spec.paper or ""] if with_paper else []), sources)
    return table


def _as_json(registration: Registration) -> dict:
    entry = {
        "name": registration.name,
        "status": registration.status,
        "sources": [source.describe() for source in registration.sources],
    }
    if registration.spec is not None:
        entry["spec"] = registration.spec.metadata()
    if registration.error is not None:
        entry["error"] = registration.error
    return entry
