"""The fault-injection harness behind tests/test_faults_*.py (issue 19's table of outcomes).

Every case runs mmbench as a user would (in process through `main()`, or as a subprocess when it needs a
signal, a kill or a segfault to be real) and is then *classified* into one outcome:

- ``clean``: the expected exit code; for a user's problem exactly one ``mmbench ...: error:`` line that
  names the thing (every fragment given), no traceback, and nothing unexpected left on disk;
- ``silent``: exit 0 where the input should have been refused (a wrong result nobody is told about);
- ``internal error``: exit 1 for a problem the user can fix;
- ``traceback``: a Python traceback reached the user;
- ``crash``: killed by a signal it did not receive from the test (a segfault);
- ``leftover``: partial or stale files remain (hidden temporaries, a run folder without record or status);
- ``misleading``: the right exit code, but the message does not name the thing, or is more than one line.

`expect_clean` asserts ``clean`` and, when ``MMBENCH_FAULT_REPORT`` names a file, appends the case's id,
area and outcome to it as one JSON line: tests/fault_report.py runs the fault suite that way and prints the
counts per outcome (the table of the closing note of issue 19).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTCOMES = ("clean", "silent", "internal error", "traceback", "crash", "leftover", "misleading")
REPORT_ENV = "MMBENCH_FAULT_REPORT"


@dataclass(frozen=True)
class Result:
    """What the user saw: exit code, standard output and standard error."""

    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("mmbench") and ": error:" in line]


def run_in_process(capsys, *argv: str) -> Result:
    """`mmbench ARGV` through `main()`, as the console script would run it (fast: no new interpreter)."""
    from mmbench.cli.main import main

    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def terminal_sigint() -> None:
    """`preexec_fn` of a child that must get SIGINT as a terminal's foreground job does (default action, not
    blocked). A child inherits ignored dispositions and the blocked-signal mask across exec: a test session
    started in the background (`cmd &` in a non-interactive shell ignores SIGINT), or a test before it in the
    same session, would otherwise make a Ctrl-C case pass or fail by where it ran."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_subprocess(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 240,
) -> Result:
    """`python -m mmbench ARGV` in a new interpreter: needed for real signals, kills and crashes."""
    completed = subprocess.run(
        [sys.executable, "-m", "mmbench", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def hidden_temporaries(root: Path) -> list[Path]:
    """Write-then-rename leftovers (mmbench/atomic.py names them `.NAME.*.tmp`) anywhere below `root`."""
    if not root.exists():
        return []
    return sorted(path for path in root.rglob(".*.tmp"))


def classify(
    result: Result,
    *,
    expect_code: int = 2,
    names: Iterable[str] = (),
    leftovers: Iterable[Path] = (),
    signalled: bool = False,
) -> str:
    """One outcome of `OUTCOMES` for `result` (see the module docstring). `signalled`: the test itself
    killed the process, so a negative code or 128+N is what it asked for, not a crash."""
    code = result.code
    if (code < 0 or code >= 128) and not signalled and code not in (130, 143):
        return "crash"
    if "Traceback (most recent call last)" in result.err:
        return "traceback"
    if code == 1 and expect_code != 1:
        return "internal error"
    if code == 0 and expect_code != 0:
        return "silent"
    if list(leftovers):
        return "leftover"
    if code != expect_code and not signalled:
        return "misleading"
    if expect_code == 2:
        lines = result.error_lines()
        if len(lines) != 1 or not all(name in lines[0] for name in names):
            return "misleading"
    return "clean"


def expect_clean(
    case: str,
    area: str,
    result: Result,
    *,
    expect_code: int = 2,
    names: Iterable[str] = (),
    leftovers: Iterable[Path] = (),
    signalled: bool = False,
) -> None:
    """Assert that `result` is ``clean``; record the outcome for the report either way."""
    names, leftovers = list(names), list(leftovers)
    outcome = classify(result, expect_code=expect_code, names=names, leftovers=leftovers, signalled=signalled)
    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"case": case, "area": area, "outcome": outcome}) + "\n")
    assert outcome == "clean", (
        f"{case}: {outcome} (exit {result.code}, expected {expect_code}; wanted {names} in one error line; "
        f"leftovers {[str(p) for p in leftovers]})\nstderr: {result.err[-3000:]}"
    )
