"""Rich progress bars for every long step: one shared Progress per command."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def bar() -> Progress:
    """A Progress with steps, elapsed time, ETA and a free-text ``info`` field (loss, current item)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )


def add(progress: Progress, description: str, total: float | None) -> int:
    return progress.add_task(description, total=total, info="")
