"""`mmbench new method|protocol|dataset NAME [--dir PATH]`: write an installable package for a new plugin."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from mmbench.console import stdout
from mmbench.scaffold.names import plugin_names
from mmbench.scaffold.render import write_package


def run(args: argparse.Namespace) -> int:
    names = plugin_names(args.kind, args.name)
    folder = Path(args.dir).expanduser() / names.distribution if args.dir else Path(names.distribution)
    written = write_package(names, folder)
    console = stdout()
    table = Table(title=f"{names.kind} {names.name!r}: package {names.distribution} in {folder}", title_justify="left")
    table.add_column("file", style="cyan")
    for path in written:
        table.add_row(str(path.relative_to(folder)))
    console.print(table)
    console.print(
        f"next: [bold]pip install -e {folder}[/bold], then [bold]mmbench list {names.kind}s[/bold] shows it; "
        f"[bold]pytest {folder}[/bold] runs its tests"
    )
    return 0
