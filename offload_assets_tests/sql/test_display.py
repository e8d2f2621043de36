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


def _result(columns, rows):
    from offload_assets.sql.results import QueryResult

    return QueryResult(columns=tuple(columns), rows=tuple(tuple(r) for r in rows), engine="duckdb", elapsed_seconds=0)


def test_json_format_is_stable_and_valid_json():
    """One object per row, keys in column order; exact decimals as strings, binary as base64, no NaN literal."""
    import json

    result = _result(
        ["id", "price", "cover", "tags", "meta", "ok", "score", "day", "missing"],
        [
            [
                7,
                Decimal("19.90"),
                b"\x89PNG",
                [Decimal("5.0"), None],
                {"pages": 320, "at": dt.datetime(2026, 3, 10, 8, 0)},
                True,
                float("nan"),
                dt.date(2026, 3, 10),
                None,
            ]
        ],
    )
    text = result.to_json()
    assert text == (
        '[{"id": 7, "price": "19.90", "cover": "iVBORw==", "tags": ["5.0", null], '
        '"meta": {"pages": 320, "at": "2026-03-10 08:00:00"}, "ok": true, "score": "NaN", "day": "2026-03-10", '
        '"missing": null}]'
    )
    assert list(json.loads(text)[0]) == list(result.columns)  # column order kept
    assert _result(["x"], []).to_json() == "[]"


def test_csv_format_is_stable():
    """A header, then each value as the table prints it; NULL is empty; nested values are JSON."""
    result = _result(
        ["id", "price", "cover", "tags", "ok", "author"],
        [[7, Decimal("1E+3"), b"\x89PNG", [1, {"a": None}], False, 'Tolkien, "J.R.R."'], [8, None, None, [], None, ""]],
    )
    assert result.to_csv().splitlines() == [
        "id,price,cover,tags,ok,author",
        '7,1000,89 50 4e 47,"[1, {""a"": null}]",false,"Tolkien, ""J.R.R."""',
        "8,,,[],,",
    ]
