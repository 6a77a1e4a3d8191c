"""The suites shipped in the repository's top-level `suites/` folder.

They are found next to the `mmbench` package, which is where they are in a checkout and after
`pip install -e .` from one; a wheel does not carry them (give the suite file's path instead). `mmbench
sweep NAME` accepts a shipped suite's name for its path.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from mmbench.config import parse_yaml
from mmbench.console import stdout
from mmbench.errors import UserError


def suites_folder() -> Path:
    return Path(__file__).resolve().parents[2] / "suites"


def shipped_suites() -> dict[str, Path]:
    folder = suites_folder()
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def find_suite(argument: str) -> Path:
    """A suite file's path, or a shipped suite's name."""
    path = Path(argument)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in argument:
        return path
    shipped = shipped_suites()
    if argument in shipped:
        return shipped[argument]
    names = ", ".join(shipped) or "none found"
    raise UserError(f"suite {argument!r} is neither a file nor a shipped suite ({names}); give a suite YAML path")


def list_suites() -> None:
    shipped = shipped_suites()
    if not shipped:
        stdout().print(f"no shipped suites in {suites_folder()} (a wheel install does not carry them)")
        return
    table = Table(title=f"Shipped suites ({suites_folder()})", title_justify="left")
    table.add_column("name", style="cyan")
    table.add_column("description", overflow="fold")
    for name, path in shipped.items():
        try:
            data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
            description = str(data.get("description", "")) if isinstance(data, dict) else ""
        except UserError as exc:
            description = f"(unreadable: {exc})"
        table.add_row(name, " ".join(description.split()))
    stdout().print(table)
