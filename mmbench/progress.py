"""Rich progress bars for long work, drawn on stderr so that stdout stays clean for results."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


def bar_columns() -> tuple:
    """The columns every mmbench bar shows: description, bar, done/total, elapsed, time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Yields `advance_to(completed, total=None, description=None)`; the bar shows rate and time left.
    Nothing is drawn when stderr is not a terminal (logs, pipes, CI), where a frozen bar would only
    clutter the output."""
    from rich.progress import Progress

    from mmbench.console import stderr

    columns = bar_columns()
    console = stderr()
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)

        def advance_to(completed: int, total: int | None = None, description: str | None = None) -> None:
            changes = {"total": total, "description": description}
            progress.update(task, completed=completed, **{k: v for k, v in changes.items() if v is not None})

        yield advance_to
