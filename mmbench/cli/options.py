"""Argument definitions several commands share, so `--set` means and reads the same everywhere."""

from __future__ import annotations

import argparse


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--set/-s KEY=VALUE` (repeatable), collected in `args.overrides`; `help_text` says what it overrides."""
    parser.add_argument(
        "--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )
