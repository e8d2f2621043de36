"""Query values printed as Athena's console prints them, not as Python reprs."""

import datetime as dt
from decimal import Decimal

import pytest

from offload_assets.sql.display import trino_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "NULL"),
        (Decimal("5.0"), "5.0"),
        (Decimal("1E+3"), "1000"),
        (b"\x89PNG", "89 50 4e 47"),
        ([Decimal("5.0"), Decimal("4")], "[5.0, 4]"),
        ({"page_count": 320, "extra": None}, "{page_count=320, extra=null}"),
        ([{"a": True}], "[{a=true}]"),
        (dt.datetime(2026, 3, 10, 8, 0), "2026-03-10 08:00:00"),
        (dt.date(2026, 3, 10), "2026-03-10"),
        ("Tolkien", "Tolkien"),
        (7, "7"),
    ],
)
def test_values_print_in_trinos_text_form(value, text):
    assert trino_text(value) == text
