"""Progress bars for long work (rich), one style for every stage."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def enabled() -> bool:
    """Bars are drawn on a terminal unless ``SEGCORE_PROGRESS=0``."""
    setting = os.environ.get("SEGCORE_PROGRESS", "auto")
    if setting in ("0", "false", "off"):
        return False
    return setting in ("1", "true", "on") or sys.stderr.isatty()


def make_progress(*extra_columns: TextColumn) -> Progress:
    """A rich ``Progress`` on stderr with count, rate, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        *extra_columns,
        console=Console(stderr=True),
        disable=not enabled(),
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
