"""Leaderboards from run records: collect, group by protocol settings, aggregate seeds, rank, render.

Numbers come only from run records (and, clearly separated, from the published-reference data file);
nothing here types a number. `build_board` returns plain JSON-able data that every renderer reads.
"""

from mmbench.leaderboard.board import build_board
from mmbench.leaderboard.collect import collect_records

__all__ = ["build_board", "collect_records"]
