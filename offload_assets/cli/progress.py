"""Terminal progress for long operations: scan exports and conversions (rich, on stderr).

Progress goes to standard error so that standard output keeps only the result a script reads.
On a terminal the bar is live; elsewhere (a pipe, CI) rich draws nothing while it runs and
:meth:`ExportProgressBar.__exit__` prints one final line instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ItemRateColumn(ProgressColumn):
    """Items per second over the whole run (rich's own speed is a short moving window)."""

    def render(self, task: Task) -> Text:
        rate = task.fields.get("items_per_second")
        return Text(f"{rate:,.0f} items/s" if rate else "- items/s", style="progress.data.speed")


class CapacityColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rcu = task.fields.get("rcu_per_second")
        limit = task.fields.get("rate_limit")
        if rcu is None:
            return Text("")
        cap = f" of {limit:,.0f}" if limit else ""
        return Text(f"{rcu:,.0f}{cap} RCU/s", style="cyan")


class ExportProgressBar:
    """``on_progress`` callback for :func:`offload_assets.export.scan.export_table_scan`.

    The total is DescribeTable's ItemCount (refreshed by AWS about every six hours), so the bar
    and its ETA are estimates; when the table has grown, the bar runs past its total instead of
    stopping short. Safe to call from the scan's segment threads.
    """

    def __init__(self, table_name: str, console: Console | None = None) -> None:
        self.console = console or stderr_console()
        self.table_name = table_name
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items"),
            ItemRateColumn(),
            CapacityColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,  # a pipe or CI gets one summary line instead
        )
        self.task = self.progress.add_task(f"export {table_name}", total=None, start=False)
        self.last: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> ExportProgressBar:
        return self  # the bar appears with the first page, so a refused export prints no empty bar

    def __exit__(self, *exc: object) -> None:
        if self.last is None:
            return
        self.progress.stop()
        if not self.console.is_terminal:
            p = self.last
            self.console.print(
                f"export {self.table_name}: {p.items:,} items in {p.elapsed_seconds:,.1f} s "
                f"({p.items_per_second:,.0f} items/s, {p.consumed_capacity:,.0f} RCU)"
            )

    def __call__(self, p: Any) -> None:  # a ScanProgress
        with self._lock:
            if self.last is None:
                self.progress.start()
                self.progress.start_task(self.task)
            self.last = p
        total = max(p.estimated_total_items, p.items) if p.estimated_total_items else None
        self.progress.update(
            self.task,
            completed=p.items,
            total=total,
            items_per_second=p.items_per_second,
            rcu_per_second=p.capacity_per_second,
            rate_limit=p.rate_limit,
        )


class WorkSpinner:
    """An operation without a measurable total: a spinner, what is being done, and the elapsed time."""

    def __init__(self, description: str, console: Console | None = None) -> None:
        self.console = console or stderr_console()
        self.description = description
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.started = time.monotonic()

    def __enter__(self) -> WorkSpinner:
        self.progress.start()
        self.progress.add_task(self.description, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self.started
