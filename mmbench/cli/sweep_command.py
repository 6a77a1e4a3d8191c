"""`mmbench sweep SUITE.yaml`: check and plan the suite, then show it (`--dry-run`, `--status`) or run it.

Everything is checked before the first job starts (suite keys, plugin names, every override, the output
root, the executor's tools): a problem is one line and exit 2 with nothing started. A sweep whose jobs
failed says how many, where their logs are, and exits 2 after the other jobs finished.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mmbench.cli.options import add_overrides
from mmbench.errors import UserError
from mmbench.runtime.signals import terminate_as_interrupt

if TYPE_CHECKING:
    from mmbench.sweep.planning import SweepPlan


class SweepFailed(UserError):
    """Some jobs of the sweep failed or were not started; each was reported with its log."""


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sweep = commands.add_parser(
        "sweep",
        help="run a suite of trainings and evaluations (datasets x methods x seeds x protocols)",
        description="Plan every job of SUITE (one training per dataset, method config and seed; one evaluation of "
        "its checkpoint per further protocol), skip those already done, and run the rest locally or on Slurm. "
        "The suite format: docs/sweeps.md.",
    )
    sweep.add_argument("suite", metavar="SUITE.yaml", nargs="?", help="suite file (see suites/ and --list-suites)")
    mode = sweep.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan and estimated cost; start nothing")
    mode.add_argument("--status", action="store_true", help="print the state of every job; start nothing")
    mode.add_argument("--list-suites", action="store_true", help="list the suites shipped in suites/")
    sweep.add_argument(
        "--jobs",
        "-j",
        type=int,
        metavar="N",
        help="jobs at once (default: 1 locally; with --executor slurm every ready job is submitted)",
    )
    sweep.add_argument(
        "--executor",
        choices=["local", "slurm", "submitit-local"],
        default="local",
        help="local: child processes here (default); slurm: sbatch through submitit; submitit-local: submitit's "
        "local executor (tests)",
    )
    sweep.add_argument("--retry-failed", action="store_true", help="run failed jobs again")
    sweep.add_argument("--out", metavar="DIR", help="output root (replaces the suite's 'out:')")
    sweep.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only the jobs whose id matches this shell pattern, e.g. '*/stars/*' or '*/seed1/*' (repeatable; "
        "an evaluation brings its training); applies to --dry-run and --status too",
    )
    sweep.add_argument(
        "--order",
        choices=["seeds", "rows"],
        default="seeds",
        help="which trainings start first: seeds (default: seed 0 of every method config, then seed 1, ...; a "
        "stopped sweep has whole seeds) or rows (every seed of one method config before the next; a stopped "
        "sweep has whole rows). Results do not depend on it",
    )
    add_overrides(sweep, "override for every job, after the suite's own (repeatable)")
    sweep.set_defaults(handler="mmbench.cli.sweep_command:run")
    return sweep


def run(args: argparse.Namespace) -> int:
    if args.list_suites:
        from mmbench.sweep.catalog import list_suites

        list_suites()
        return 0
    if not args.suite:
        raise UserError("give a suite file, e.g. 'mmbench sweep suites/synthetic-cpu.yaml' (see --list-suites)")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give at least 1")
    from mmbench.sweep import load_suite, plan_sweep
    from mmbench.sweep.backends import check_executor
    from mmbench.sweep.catalog import find_suite
    from mmbench.sweep.display import show_plan, show_status
    from mmbench.sweep.planning import order_jobs, select_jobs
    from mmbench.sweep.state import plan_status

    suite = load_suite(find_suite(args.suite), out=args.out, extra_overrides=args.overrides)
    plan = select_jobs(order_jobs(plan_sweep(suite), args.order), args.only)
    parallel = _parallel(args, plan)
    if args.dry_run:
        show_plan(plan, plan_status(plan), args.executor, parallel)
        return 0
    if args.status:
        show_status(plan, plan_status(plan))
        return 0
    check_executor(args.executor)
    return _execute(args, plan, parallel)


def _parallel(args: argparse.Namespace, plan: SweepPlan) -> int:
    """Jobs in flight at once: --jobs, else 1 here and all of them on Slurm (its queue decides)."""
    if args.jobs is not None:
        return args.jobs
    return max(1, len(plan.jobs)) if args.executor == "slurm" else 1


def _execute(args: argparse.Namespace, plan: SweepPlan, parallel: int) -> int:
    from mmbench.sweep.backends import make_backend
    from mmbench.sweep.display import reporter, show_problems, show_summary
    from mmbench.sweep.driver import jobs_to_run, run_sweep
    from mmbench.sweep.state import plan_status

    started = time.monotonic()
    plan.suite.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a `kill`, a scheduler's cancel) stops the sweep as Ctrl-C does: each running job saves its
    # checkpoint and is marked interrupted, instead of dying with the sweep and leaving "running" behind.
    terminated = "terminated (SIGTERM); rerun the same command: finished jobs are skipped, interrupted trainings resume"
    with terminate_as_interrupt(terminated), _locked_output_root(plan.suite.out):
        statuses = plan_status(plan)  # under the lock: no other sweep changes states from here on
        show_problems(statuses)
        selected, _ = jobs_to_run(plan, statuses, args.retry_failed)
        if selected and args.executor == "local":
            from mmbench.sweep.backends import busy_cores_note

            note = busy_cores_note()
            if note:
                sys.stderr.write(f"mmbench sweep: note: {note}\n")
                sys.stderr.flush()
        backend = make_backend(
            args.executor, parallel, Path(plan.suite.out) / ".submitit", plan.suite.executor, plan.suite.name
        )
        with reporter(len(selected)) as report:
            outcome = run_sweep(
                plan, statuses, backend, parallel=parallel, retry_failed=args.retry_failed, reporter=report
            )
    show_summary(outcome, plan, started)
    problems = len(outcome.failed) + len(outcome.blocked)
    if problems:
        retry = "" if args.retry_failed else " with --retry-failed"
        raise SweepFailed(
            f"{problems} of {len(selected)} jobs did not finish (each is listed above with its log); fix the cause "
            f"and rerun the same command{retry} (finished jobs are skipped, interrupted trainings resume)"
        )
    if outcome.skipped_failed:
        waiting = f" ({outcome.skipped_waiting} more wait on them)" if outcome.skipped_waiting else ""
        raise SweepFailed(
            f"{outcome.skipped_failed} jobs failed in an earlier run and were left alone{waiting}; see "
            "'mmbench sweep SUITE --status' for their logs, fix the cause and rerun with --retry-failed"
        )
    return 0


@contextlib.contextmanager
def _locked_output_root(root: Path) -> Iterator[None]:
    """One sweep per output root at a time: two would start the same pending jobs. The lock (an flock on
    `<out>/.sweep.lock`) goes with the process, also when it is killed."""
    with (root / ".sweep.lock").open("a+", encoding="utf-8") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise UserError(
                f"another sweep ({owner}) is running on {root}; wait for it, watch it with --status, or stop it "
                "(its trainings resume) and run again with --jobs N; a second sweep beside it needs its own --out "
                "DIR and each sweep its own cores (taskset -c), since a sweep gives its jobs every core it sees"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
