"""The `mmbench` command line: argument parsing, dispatch and the exit-code contract.

Exit codes: 0 success; 2 a problem the user can fix (bad argument, config, plugin name or data), shown
as one line without a traceback; 1 an internal error (a bug), shown as one line that points to
`--debug`, which prints the traceback. Parsing stays import-light so that `--help` and `--version`
answer at once; each command's module (and torch) is imported only when that command runs.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from mmbench._version import __version__
from mmbench.cli.options import add_overrides

CODEC_CHOICES = ("blosc-lz4", "blosc-zstd", "gzip", "lzf", "none")  # mirrors mmbench.data.store_format
USER_FIXABLE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
PROTOCOL_HINT = "e.g. full, missing1, last1, subsets (see 'mmbench list protocols')"


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse prints the whole usage block before an error; users asked for one line and a hint."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a subcommand's absent flag from overwriting a `mmbench --debug ...` given earlier.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    parser.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bars or progress lines"
    )


def _add_run_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """Options shared by `run` and `eval`: what to evaluate on, and how the config is built. `several`
    (`eval`): --protocol and --config repeat, one record per protocol (mmbench/runs/checkpoint_eval.py)."""
    if several:
        parser.add_argument(
            "--protocol",
            "-p",
            required=True,
            action="append",
            metavar="P[,P2...]",
            help=f"missing-modality protocol, {PROTOCOL_HINT}; repeat it (or separate names by commas) to "
            "evaluate under several protocols in one process: the model and the store are loaded once",
        )
    else:
        parser.add_argument(
            "--protocol", "-p", required=True, metavar="P", help=f"missing-modality protocol, {PROTOCOL_HINT}"
        )
    parser.add_argument(
        "--dataset",
        "-d",
        default="synthetic",
        metavar="NAME|FILE.h5",
        help="registered dataset name or path to a tile store (default: synthetic)",
    )
    if several:
        parser.add_argument(
            "--config",
            "-c",
            action="append",
            metavar="[P=]FILE.yaml",
            help="YAML file with run/protocol/dataset sections, or a result.json to re-run; P=FILE: this "
            "protocol's own file, in place of a plain FILE (repeatable, one file per protocol)",
        )
    else:
        parser.add_argument(
            "--config",
            "-c",
            metavar="FILE.yaml",
            help="YAML file with run/method/protocol/dataset sections, or a result.json to re-run",
        )
    add_overrides(parser, "override one config value, e.g. --set method.lr=3e-4 (repeatable; values are YAML scalars)")
    parser.add_argument("--seed", type=int, metavar="N", help="seed for every random source (run.seed)")
    parser.add_argument("--device", metavar="auto|cpu|cuda[:N]", help="compute device (run.device, default auto)")
    parser.add_argument("--out", metavar="DIR", help="root folder of run records (run.out, default ./runs)")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic algorithms only (run.deterministic)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and plan; run nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="mmbench",
        description="Benchmark missing-modality multimodal remote-sensing segmentation methods.",
        epilog="Run 'mmbench COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mmbench {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks for errors")
    parser.add_argument("--quiet", "-q", action="store_true", default=False, help="no progress bars or progress lines")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)

    from mmbench.registry import REGISTRIES  # entry-point groups only: reads no plugin metadata

    listing = commands.add_parser("list", help=f"list registered {_and(list(REGISTRIES))}")
    listing.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="one registry only")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler="mmbench.cli.list_command:run")

    run = commands.add_parser(
        "run",
        help="train (or load) a method, evaluate it under a protocol, write a run record",
        description="Train METHOD on the dataset's training split, select on validation, evaluate under the "
        "protocol and write one run record to <out>/<dataset>/<protocol>/<method>/<run_id>/result.json.",
    )
    run.add_argument("method", metavar="METHOD", help="registered method name (see 'mmbench list methods')")
    _add_run_options(run)
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest unfinished run with the same config from its last checkpoint",
    )
    run.add_argument(
        "--smoke",
        action="store_true",
        help="whole pipeline on a tiny slice (3 steps, 2 evaluation tiles); the record says smoke",
    )
    run.add_argument("--checkpoint", metavar="FILE", help="skip training: evaluate this checkpoint of METHOD")
    run.set_defaults(handler="mmbench.cli.run_command:run")

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained checkpoint under one protocol or several",
        description="Evaluate CHECKPOINT under each --protocol and write one run record per protocol. "
        "Every protocol is planned before anything runs; the checkpoint, the model and the store are "
        "loaded once. A failing protocol writes nothing; the others still run.",
    )
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint written by 'mmbench run'")
    _add_run_options(evaluate, several=True)
    evaluate.set_defaults(handler="mmbench.cli.run_command:evaluate")

    data = commands.add_parser("data", help="create, convert, inspect and verify HDF5 tile stores")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=OneLineArgumentParser)
    data_commands.required = True
    synth = data_commands.add_parser("synth", help="generate the built-in synthetic benchmark store")
    synth.add_argument("--out", metavar="FILE.h5", help="output file (default: the user cache)")
    synth.add_argument("--seed", type=int, metavar="N", help="generator seed (default 0)")
    synth.add_argument("--tiles", type=int, metavar="N", help="number of tiles (default 72)")
    synth.add_argument(
        "--generator-version", type=int, choices=(1, 2), dest="version", help="generator version (default 2)"
    )
    synth.add_argument(
        "--redundancy", type=float, metavar="R", help="version 2's cross-modal coupling strength, 0-1 (default 0.5)"
    )
    synth.add_argument(
        "--test-share",
        type=float,
        metavar="S",
        help="share of the tiles in the test part (default 0.45: 32 of 72; 0: tiles // 6, as version 1)",
    )
    synth.add_argument("--size", type=int, metavar="PX", help="tile side in pixels (default 192)")
    synth.add_argument("--codec", choices=CODEC_CHOICES, help="HDF5 chunk codec (default blosc-lz4)")
    convert = data_commands.add_parser("convert", help="convert an official dataset layout to a tile store")
    convert.add_argument("format", metavar="FORMAT", help="registered converter name (see 'mmbench list converters')")
    convert.add_argument("source", metavar="SRC", help="extracted folder or folder of official zip archives")
    convert.add_argument("output", metavar="OUT.h5", help="tile store to write")
    convert.add_argument("--tile-size", type=int, default=512, metavar="PX", help="tile side in pixels (default 512)")
    convert.add_argument("--stride", type=int, metavar="PX", help="window stride (default: the tile size)")
    convert.add_argument("--codec", choices=CODEC_CHOICES, default="blosc-lz4", help="HDF5 chunk codec")
    info = data_commands.add_parser("info", help="summarize a tile store")
    info.add_argument("file", metavar="FILE", help="tile store (.h5)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    verify = data_commands.add_parser("verify", help="read every chunk of a tile store and check it")
    verify.add_argument("file", metavar="FILE", help="tile store (.h5)")
    for action_parser in (synth, convert, info, verify):
        _add_debug(action_parser)
    data.set_defaults(handler="mmbench.cli.data_command:run")

    board = commands.add_parser("leaderboard", help="build ranked tables and plots from run records")
    board.add_argument("runs", nargs="*", metavar="RUNS_DIR", help="folders of run records (default: ./runs)")
    board.add_argument("--dataset", metavar="D", help="only this dataset")
    board.add_argument("--protocol", metavar="P", help="only this protocol")
    board.add_argument("--format", choices=["md", "html", "csv", "json"], default="md", help="output format")
    board.add_argument("--out", metavar="FILE", help="write to FILE instead of the terminal")
    board.add_argument(
        "--check",
        action="store_true",
        help="recompute every metric from the confusion matrices; fail on any disagreement",
    )
    board.add_argument(
        "--references", metavar="FILE", help="published reference numbers (YAML; default: the packaged data file)"
    )
    board.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap replicates (default 2000)")
    board.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="bootstrap RNG seed (default 0)")
    board.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two rows, paired by seed and unit")
    board.add_argument(
        "--rerun-of",
        metavar="DIR",
        action="append",
        help="the records in RUNS_DIR rerun those in DIR (repeatable): pair them by configuration, seed and table and "
        "say which give the same numbers to the last bit",
    )
    board.set_defaults(handler="mmbench.cli.leaderboard_command:run")

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="TARGET", parser_class=OneLineArgumentParser)
    bench_commands.required = True
    kernels = bench_commands.add_parser("kernels", help="time the Triton kernels against PyTorch")
    kernels.add_argument(
        "--sizes",
        nargs="+",
        choices=["default", "paper"],
        default=["default", "paper"],
        help="problem sizes: STARS' CPU training config and/or paper scale (default: both)",
    )
    kernels.add_argument(
        "--ops",
        nargs="+",
        choices=["sample", "gather", "infonce", "confusion"],
        default=["sample", "gather", "infonce", "confusion"],
        help="kernels to time (default: all)",
    )
    kernels.add_argument(
        "--providers",
        nargs="+",
        choices=["naive", "reference", "compile", "triton"],
        help="implementations to compare (default: all that run on the device)",
    )
    kernels.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if available)")
    kernels.add_argument(
        "--min-time",
        type=float,
        default=0.5,
        metavar="S",
        help="CPU: repeat each call for at least this many seconds (default 0.5)",
    )
    kernels.add_argument(
        "--out", metavar="FILE.json", help="JSON results (default: bench/kernels-<device>-<time>.json)"
    )
    step = bench_commands.add_parser(
        "step",
        help="profile one training step of each method: time per part (data, encoders, decoders, losses, ...), "
        "peak memory, threads",
    )
    step.add_argument("methods", nargs="*", metavar="METHOD", help="registered methods (default: all)")
    step.add_argument("--batch-size", type=int, default=8, metavar="N", help="samples per step (default 8)")
    step.add_argument("--size", type=int, default=96, metavar="PX", help="crop side in pixels (default 96)")
    step.add_argument("--steps", type=int, default=5, metavar="N", help="profiled steps per method (default 5)")
    step.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed steps first (default 2)")
    step.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's)")
    step.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if available)")
    step.add_argument("--out", metavar="FILE.json", help="JSON results (default: bench/step-<device>-<time>.json)")
    step.add_argument("--markdown", metavar="FILE.md", help="also write the table as Markdown")
    for bench_parser in (kernels, step):
        _add_debug(bench_parser)
    bench.set_defaults(handler="mmbench.cli.bench_command:run")

    new = commands.add_parser(
        "new",
        help="write an installable package for a new method, protocol or dataset plugin",
        description="Write the package <dir>/NAME (pyproject.toml with the entry point, spec, code, defaults YAML, "
        "a test) from mmbench's plugin template; an existing folder is never overwritten.",
    )
    new.add_argument("kind", choices=["method", "protocol", "dataset"], help="the kind of plugin")
    new.add_argument("name", metavar="NAME", help="plugin name: lowercase letters, digits, '-', '_', '.'")
    new.add_argument("--dir", metavar="PATH", help="folder to create the package in (default: the current folder)")
    new.set_defaults(handler="mmbench.cli.new_command:run")

    from mmbench.cli.sweep_command import add_parser as add_sweep_parser  # argparse only: imports nothing heavy

    sweep = add_sweep_parser(commands)

    from mmbench.cli.check_command import add_parser as add_check_parser  # argparse only: imports nothing heavy

    check = add_check_parser(commands)

    for sub in (listing, run, evaluate, data, board, bench, sweep, new, check):
        _add_debug(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version and parse errors
        return int(exc.code or 0)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("MMBENCH_DEBUG") == "1"
    if args.command is None:
        parser.print_help()
        return 0
    args.command_line = shlex.join(["mmbench", *arguments])
    module_name, _, function_name = args.handler.partition(":")

    from mmbench.errors import UserError
    from mmbench.progress import check_environment, quieted

    try:
        check_environment()  # a malformed MMBENCH_PROGRESS_* is refused before any work starts
        handler = getattr(importlib.import_module(module_name), function_name)
        with quieted(bool(getattr(args, "quiet", False))):  # --quiet: no bars or progress lines, also in children
            return int(handler(args) or 0)
    except UserError as exc:
        if debug:
            raise
        sys.stderr.write(f"mmbench {args.command}: error: {_one_line(exc)}\n")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        detail = f": {exc}" if str(exc) else ""
        sys.stderr.write(f"mmbench {args.command}: interrupted{detail}\n")
        return int(getattr(exc, "exit_code", 130))  # SIGTERM: 143 (mmbench/runtime/signals.py `Terminated`)
    except OSError as exc:  # a full disk or read-only target no check caught first: the user's to fix
        if debug:
            raise
        if exc.errno not in USER_FIXABLE_ERRNOS:
            return _internal_error(args.command, exc)
        where = f" {exc.filename}" if exc.filename else ""
        sys.stderr.write(
            f"mmbench {args.command}: error: cannot write{where}: {exc.strerror or exc}; free space or give a "
            "writable location, then run the command again (with --resume for a run)\n"
        )
        return 2
    except Exception as exc:  # the internal-error contract: one line, exit 1, traceback on --debug
        if debug:
            raise
        return _internal_error(args.command, exc)


def _internal_error(command: str, exc: BaseException) -> int:
    sys.stderr.write(
        f"mmbench {command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
        "(rerun with --debug for the traceback, and please report it)\n"
    )
    return 1


def _and(names: list[str]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else "".join(names)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover - `python -m mmbench.cli.main`
    sys.exit(main())
