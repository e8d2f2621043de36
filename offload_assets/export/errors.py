"""What every export engine (scan, native, incremental) raises, and the deadline behind ExportTimeout.

Kept apart from :mod:`offload_assets.export.partition_export` so the engines can raise them without importing
the dispatcher that imports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ExportRefusedError(ValueError):
    """The partition cannot be produced with the table's export method (the message says why and what to do)."""


class ExportOwnershipError(ExportRefusedError):
    """Another run owns this partition's export (its lease is alive, it finished meanwhile, or it took over first)."""


class ExportTimeoutError(TimeoutError):
    """The export ran past its configured limit; nothing was published."""


class ExportFailedError(RuntimeError):
    """DynamoDB reported the export as failed, or its output is not what it said it wrote."""


class ExportDeadline:
    """The instant past which an export gives up (``export_timeout_minutes``); None means no limit."""

    def __init__(self, seconds: float | None, *, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.what = what
        self._clock = clock
        self.started = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def remaining(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed

    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self, detail: str = "") -> None:
        """Raise :class:`ExportTimeoutError` once the limit has passed."""
        if self.expired():
            raise ExportTimeoutError(
                f"{self.what} exceeded its timeout of {self.seconds:,.0f} s (export_timeout_minutes); "
                f"nothing was published{'. ' + detail if detail else ''}"
            )
