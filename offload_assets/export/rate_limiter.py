"""Read-capacity accounting and limiting for a parallel Scan.

DynamoDB charges a Scan page the total size of the items it read, rounded up to the next 4 KB,
one read unit per 4 KB (half a unit with eventually consistent reads). ``ReturnConsumedCapacity``
reports that figure; emulators may not (moto says 1.0 for every page), so each page's figure is
also estimated from the item sizes and the estimate is used whenever the reported one is absent
or clearly not a real measurement.

The limiter keeps the consumption of all segments together at or under a rate (read units per
second). Each page books its expected cost before it is sent and is corrected when it arrives;
bookings follow each other, so a slow page costs no extra pause, and idle time is never banked:
the scan cannot burst to "catch up" after a slow stretch. Page sizes are kept small enough
(``page_limit_for``) that one page's misestimate stays a small share of any 10 s window.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

READ_UNIT_BYTES = 4096
MAX_PAGE_BYTES = 1024 * 1024
# Share of one second of budget that the pages of all segments may hold at once.
IN_FLIGHT_BUDGET_SECONDS = 0.5
CAPACITY_SOURCES = ("auto", "reported", "estimated")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _number_size(text: str) -> int:
    # AWS: about 1 byte per two significant digits, plus 1; leading and trailing zeros are trimmed.
    mantissa = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "")
    digits = mantissa.strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    # Export lines and the low-level JSON API carry binary values as base64 text.
    try:
        return len(base64.b64decode(value, validate=False))
    except (ValueError, TypeError):
        return len(str(value))


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one typed attribute value (``{"S": "x"}``, ``{"M": {...}}`` ...)."""
    ((tag, inner),) = value.items()
    if tag == "S":
        return _utf8_len(inner)
    if tag == "N":
        return _number_size(inner)
    if tag == "B":
        return _binary_size(inner)
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(_utf8_len(v) for v in inner)
    if tag == "NS":
        return sum(_number_size(v) for v in inner)
    if tag == "BS":
        return sum(_binary_size(v) for v in inner)
    if tag == "L":
        return 3 + sum(attribute_value_size(v) + 1 for v in inner)
    if tag == "M":
        return 3 + sum(_utf8_len(k) + attribute_value_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB type tag {tag!r}")


def item_size_bytes(item: Mapping[str, Any]) -> int:
    """Size DynamoDB bills for one low-level item: attribute names plus values."""
    return sum(_utf8_len(name) + attribute_value_size(value) for name, value in item.items())


def estimate_read_units(items: Iterable[Mapping[str, Any]], *, consistent: bool = False) -> float:
    """Read units of one Scan page returning ``items`` (0.5 minimum: an empty page is billed too)."""
    total = sum(item_size_bytes(i) for i in items)
    units = max(1, math.ceil(total / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


class PageCapacity:
    """Chooses, per run, between the reported and the estimated capacity of each page.

    ``auto`` trusts ``ConsumedCapacity`` until a page reports less than half of what its items
    must have cost (moto's constant 1.0 on a page of 100 KB); from then on the run uses estimates.
    """

    def __init__(self, source: str = "auto") -> None:
        if source not in CAPACITY_SOURCES:
            raise ValueError(f"capacity source {source!r}: expected one of {', '.join(CAPACITY_SOURCES)}")
        self.source = source
        self._lock = threading.Lock()
        self.reported_total = 0.0
        self.estimated_total = 0.0
        self.reported_pages = 0
        self.estimated_pages = 0

    @property
    def using(self) -> str:
        return "reported" if self.source in ("auto", "reported") else "estimated"

    def units(self, reported: float | None, estimated: float) -> float:
        with self._lock:
            self.estimated_total += estimated
            if reported is not None:
                self.reported_total += reported
            if self.source == "auto" and (reported is None or (estimated >= 2 and reported < 0.5 * estimated)):
                self.source = "estimated"
            if self.source != "estimated" and reported is not None:
                self.reported_pages += 1
                return reported
            self.estimated_pages += 1
            return estimated


class ReadCapacityLimiter:
    """Holds the combined consumption of every segment at or under ``rate`` read units per second.

    Before a page is requested its expected cost is booked with :meth:`acquire`, which sleeps until
    the budget reaches that booking: bookings follow each other, so pages are sent spaced by their
    cost and concurrent segments cannot burst together. When the page arrives, :meth:`settle`
    books the difference between its real and expected cost. Idle time is never banked. Shared by
    all segment threads.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"read capacity rate must be positive, got {rate}")
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._booked_until = clock()
        self.waited_seconds = 0.0

    def acquire(self, expected_units: float) -> float:
        """Book a page expected to cost ``expected_units``; sleeps until its turn, returns the pause."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = self._clock()
            start = max(self._booked_until, now)
            self._booked_until = start + max(0.0, expected_units) / self.rate
            wait = start - now
            self.waited_seconds += wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def settle(self, units: float, expected_units: float) -> None:
        """Correct the booking of a page that really cost ``units``."""
        if not self.rate:
            return
        with self._lock:
            self._booked_until += (units - max(0.0, expected_units)) / self.rate

    def pause(self, seconds: float) -> None:
        """Push every segment's next request back (after DynamoDB throttled one)."""
        with self._lock:
            self._booked_until = max(self._booked_until, self._clock()) + seconds


def page_limit_for(rate: float | None, segments: int, units_per_item: float | None) -> int | None:
    """Scan ``Limit`` keeping one page of every segment at most ~0.5 s of the budget.

    None (DynamoDB's own 1 MB pages) when there is no budget or 1 MB pages are small enough.
    """
    if not rate:
        return None
    target_units = max(0.5, rate * IN_FLIGHT_BUDGET_SECONDS / max(1, segments))
    if target_units >= MAX_PAGE_BYTES / READ_UNIT_BYTES / 2:
        return None
    if not units_per_item:
        return 10  # first page: small until the item size is known
    return max(1, min(10_000, int(target_units / units_per_item)))


def read_rate_limit(table: Mapping[str, Any], fraction: float, on_demand_budget: float | None) -> float | None:
    """Read units per second a scan of ``table`` (a DescribeTable ``Table``) may use, or None for no limit."""
    provisioned = (table.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits") or 0
    on_demand = (table.get("BillingModeSummary") or {}).get("BillingMode") == "PAY_PER_REQUEST" or not provisioned
    if on_demand:
        return on_demand_budget
    return provisioned * fraction
