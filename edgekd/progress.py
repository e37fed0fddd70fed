"""Rich progress bars for every loop longer than a second."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
console = Console(stderr=True)


def track(items: Iterable[T], total: int | None, desc: str, status: dict | None = None) -> Iterator[T]:
    """Iterate with a bar; ``status`` (a dict the caller updates) is shown after the bar."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*cols, console=console, transient=False) as prog:
        task = prog.add_task(desc, total=total, status="")
        for item in items:
            yield item
            text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (status or {}).items())
            prog.update(task, advance=1, status=text)
