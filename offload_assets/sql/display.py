"""Query values as text a person reads, the way Athena's console (Trino) prints them.

DuckDB and Athena hand rows back as Python values; printing their ``repr`` shows
``Decimal('5.0')`` and ``b'\\x89PNG'``. Here decimals print as numbers, binary as hex bytes,
arrays as ``[a, b]``, rows and maps as ``{name=value, ...}``, booleans as ``true``/``false``
and nested nulls as ``null`` (a top-level null is ``NULL``, as the table format shows it).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any


def trino_text(value: Any, *, nested: bool = False) -> str:
    """One value in Trino's text form."""
    if value is None:
        return "null" if nested else "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex(" ")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(trino_text(v, nested=True) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{trino_text(k, nested=True)}={trino_text(v, nested=True)}" for k, v in value.items())
            + "}"
        )
    return str(value)
