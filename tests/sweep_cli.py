"""`mmbench sweep` called in-process, as the sweep tests (tests/test_sweep_*.py) drive it."""

from __future__ import annotations

from mmbench.cli.main import main


def sweep(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `mmbench sweep ARGV...`."""
    code = main(["sweep", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err
