"""Rewrite one generated block of a docs page: the text between two marker comments, nothing else.

The study scripts (redundancy_report.py, imputation_recovery.py) regenerate their tables from committed records
into the pages that read them; the prose around a block is written by hand and must survive a regeneration.
"""

from __future__ import annotations

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
