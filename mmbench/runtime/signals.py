"""SIGTERM handled as Ctrl-C: what a scheduler's cancel or a `kill` should do to a long mmbench command.

Why a module of its own: `mmbench run` (mmbench/runs/execution.py), the training loop (mmbench/engine/loop.py)
and `mmbench sweep` (mmbench/cli/sweep_command.py) all need it, and the sweep must not import torch for it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGTERM_EXIT = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The command was stopped by SIGTERM (a scheduler's cancel, `kill`): handled like Ctrl-C (checkpoints
    saved, temporaries removed, work stays resumable), but the command exits with 143 as a terminated process
    does (mmbench/cli/main.py reads `exit_code`)."""

    exit_code = SIGTERM_EXIT


@contextlib.contextmanager
def terminate_as_interrupt(message: str) -> Iterator[None]:
    """While entered, SIGTERM raises `Terminated(message)` in the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated(message)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
