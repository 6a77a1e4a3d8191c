"""Rewrite one generated block of a docs page: the text between two marker comments, nothing else.

The study scripts (redundancy_report.py, ablation_report.py, budget_report.py, imputation_recovery.py) regenerate
their tables from committed records into the pages that read them; the prose around a block is written by hand
and must survive a regeneration. The first three share one command line (`report_arguments`, `write_report`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The block's opening and closing comments: `<!-- NAME:progress -->` ... `<!-- /NAME:progress -->`."""
    return f"<!-- {name}:progress -->", f"<!-- /{name}:progress -->"


def replace_block(doc: Path, name: str, block: str) -> None:
    """Put `block` between the page's NAME markers (module docstring); a page without them is an error, since
    the block belongs where its prose reads it."""
    begin, end = markers(name)
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no {begin} ... {end} block; add one where the table belongs")
    start, stop = text.index(begin) + len(begin), text.index(end)
    doc.write_text(text[:start] + "\n" + block.rstrip("\n") + "\n" + text[stop:])


def report_arguments(description: str, records: str, doc: str) -> argparse.ArgumentParser:
    """The study scripts' shared command line: `[RECORDS_DIR] [--marker NAME] [--doc PAGE]`, the marker
    defaulting to the records folder's name; a script adds its own options to the parser it gets back."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("records", nargs="?", default=records)
    parser.add_argument("--marker", help="the page block's name (default: the records folder's name)")
    parser.add_argument("--doc", default=doc)
    return parser


def write_report(args: argparse.Namespace, report: Callable[[Path], str]) -> int:
    """Generate the block from the records folder, put it in the page and print it."""
    folder = Path(args.records)
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder of records; copy them with benchmarks/copy_sweep_records.py")
    block = report(folder)
    replace_block(Path(args.doc), args.marker or folder.name, block)
    print(block)
    return 0
