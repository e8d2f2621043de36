"""What a query returns, on either engine, and how it fails: shared by the dispatcher and both engines."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from offload_assets.sql.display import trino_text


class QueryError(RuntimeError):
    """The query failed; the message is the engine's own (Athena's StateChangeReason, DuckDB's error)."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    engine: str
    elapsed_seconds: float
    bytes_scanned: int | None = None
    query_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def scalar(self) -> Any:
        if len(self.rows) != 1 or len(self.columns) != 1:
            raise ValueError(f"expected one value, got {len(self.rows)} row(s) of {len(self.columns)} column(s)")
        return self.rows[0][0]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_json(self) -> str:
        """A JSON array of one object per row, keys in column order (see :func:`json_value` for values)."""
        return json.dumps(
            [{c: json_value(v) for c, v in zip(self.columns, row)} for row in self.rows],
            ensure_ascii=False,
            allow_nan=False,
        )

    def to_csv(self) -> str:
        """RFC 4180 CSV with a header row (see :func:`csv_text` for values); ``\r\n`` line ends."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        writer.writerows([[csv_text(v) for v in row] for row in self.rows])
        return buf.getvalue()


def json_value(v: Any) -> Any:
    """A value as ``--format json`` writes it; the same rules at every depth.

    NULL -> ``null``; booleans; integers and finite doubles -> numbers; NaN and infinities ->
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers); decimals -> strings
    holding the exact number (``"5.0"``: a JSON number would round beyond 15-17 digits in most
    readers); binary -> base64 text; dates, times and timestamps -> text as the table prints
    them (``2026-03-10``, ``2026-03-10 08:00:00``); arrays -> arrays; maps and rows -> objects.
    """
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {k if isinstance(k, str) else trino_text(k): json_value(x) for k, x in v.items()}
    return trino_text(v)


def csv_text(v: Any) -> str:
    """A value as ``--format csv`` writes it: NULL -> an empty field; arrays, maps and rows -> their
    JSON (:func:`json_value`); everything else as the table prints it (Trino's text form: decimals as
    plain numbers, binary as hex bytes, ``true``/``false``)."""
    if v is None:
        return ""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(json_value(v), ensure_ascii=False, allow_nan=False)
    return trino_text(v)
