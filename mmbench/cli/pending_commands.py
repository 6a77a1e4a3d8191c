"""Commands whose argument parsing exists but whose machinery is not built yet.

They check what they can (paths exist) and then say plainly that the feature is missing, with exit
code 2, rather than printing anything that could be mistaken for a result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.errors import NotAvailableError, UserError


def leaderboard(args: argparse.Namespace) -> int:
    for folder in args.runs:
        if not Path(folder).is_dir():
            raise UserError(f"runs folder {folder!r} does not exist; check the path")
    raise NotAvailableError("'mmbench leaderboard' is not built yet; run records are already readable JSON")

