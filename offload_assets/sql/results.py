"""What a query returns, on either engine, and how it fails: shared by the dispatcher and both engines."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


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
        return json.dumps(self.as_dicts(), default=_json_value, ensure_ascii=False)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        writer.writerows([[_text_value(v) for v in row] for row in self.rows])
        return buf.getvalue()


def _json_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        import base64

        return base64.b64encode(v).decode()
    return str(v)


def _text_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=_json_value, ensure_ascii=False)
    return str(v)
