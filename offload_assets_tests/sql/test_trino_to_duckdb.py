"""Trino (Athena) SQL translated to DuckDB gives Trino's answers (pure: in-memory DuckDB, no network)."""

from __future__ import annotations

import duckdb
import pytest

from offload_assets.sql.trino_to_duckdb import (
    TranslationError,
    athena_column_name,
    duckdb_schema_of,
    parse_trino,
    table_references,
    to_duckdb,
)

DB = "dynamodb-exports"


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute(f'CREATE SCHEMA "{DB}"')
    c.execute(
        f"""CREATE TABLE "{DB}".reviews AS SELECT * FROM (VALUES
            ('a', 5::BIGINT, ['x', 'y'], MAP(['k'], [1::BIGINT]), {{'pages': 7::BIGINT}}),
            ('b', 2::BIGINT, [], MAP(['k', 'j'], [2::BIGINT, 3::BIGINT]), NULL),
            ('c', -7::BIGINT, NULL, NULL, {{'pages': 3::BIGINT}})
        ) AS t(user, rating, tags, counts, details)"""
    )
    yield c
    c.close()


def run(con, sql: str):
    tree = parse_trino(sql)
    table_references(tree, DB)
    schema = {DB: {"reviews": duckdb_schema_of(con, DB, "reviews")}}
    cursor = con.execute(to_duckdb(tree, schema))
    return [athena_column_name(d[0]) for d in cursor.description], cursor.fetchall()


CASES = [
    # Trino divides integers as integers, truncating toward zero.
    ("SELECT rating / 2 FROM reviews ORDER BY user", [(2,), (1,), (-3,)]),
    ("SELECT sum(rating) / count(*) FROM reviews", [(0,)]),
    ("SELECT rating / 2.0 FROM reviews WHERE user = 'a'", [(2.5,)]),
    # cardinality of arrays and of maps.
    ("SELECT cardinality(tags), cardinality(counts) FROM reviews ORDER BY user", [(2, 1), (0, 2), (None, None)]),
    ("SELECT user FROM reviews WHERE contains(tags, 'y')", [("a",)]),
    (
        "SELECT any_match(tags, t -> t = 'x'), all_match(tags, t -> t <> 'z'), none_match(tags, t -> t = 'x') FROM reviews WHERE user = 'a'",
        [(True, True, False)],
    ),
    ("SELECT user, t FROM reviews CROSS JOIN UNNEST(tags) AS u(t) ORDER BY t", [("a", "x"), ("a", "y")]),
    ("SELECT element_at(counts, 'j'), counts['k'] FROM reviews WHERE user = 'b'", [(3, 2)]),
    ("SELECT details.pages FROM reviews ORDER BY user", [(7,), (None,), (3,)]),
    ("SELECT Details.Pages FROM Reviews WHERE \"USER\" = 'c'", [(3,)]),
    (
        "SELECT filter(tags, t -> t > 'x'), transform(tags, t -> upper(t)) FROM reviews WHERE user = 'a'",
        [(["y"], ["X", "Y"])],
    ),
    ("SELECT array_join(tags, '|') FROM reviews WHERE user = 'a'", [("x|y",)]),
    (
        "SELECT regexp_like(user, '^[ab]$'), strpos(user, 'b') FROM reviews ORDER BY user",
        [(True, 0), (True, 1), (False, 0)],
    ),
    ("SELECT count_if(rating > 0), approx_distinct(user), arbitrary(user) IS NOT NULL FROM reviews", [(2, 3, True)]),
    ("SELECT if(rating > 2, 'high', 'low') FROM reviews ORDER BY user", [("high",), ("low",), ("low",)]),
    ("WITH r AS (SELECT user, rating FROM reviews) SELECT max(rating) / 2 FROM r", [(2,)]),
    (
        "SELECT date_format(from_iso8601_timestamp('2026-11-27T10:00:00Z'), '%Y-%m') FROM reviews LIMIT 1",
        [("2026-11",)],
    ),
    ("SELECT try_cast('12' AS bigint) + 1, CAST(rating AS varchar) FROM reviews WHERE user = 'a'", [(13, "5")]),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_trino_semantics_on_duckdb(con, sql, expected):
    assert run(con, sql)[1] == expected


def test_unnamed_columns_are_named_like_athena(con):
    columns, _ = run(con, "SELECT user, count(*), max(rating) + 1 AS r1, max(rating) FROM reviews GROUP BY user")
    assert columns == ["user", "_col1", "r1", "_col3"]


def test_table_references_skip_ctes_and_fill_database():
    tree = parse_trino(
        'WITH x AS (SELECT 1) SELECT * FROM x, "Other-DB"."T", awsdatacatalog."dynamodb-exports".reviews, plain'
    )
    assert [(t.db, t.name) for t in table_references(tree, DB)] == [("other-db", "t"), (DB, "reviews"), (DB, "plain")]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT FROM WHERE", "SQL syntax error"),
        ("SELECT 1; SELECT 2", "expected exactly one SQL statement, got 2"),
    ],
)
def test_bad_sql_is_reported(sql, message):
    with pytest.raises(TranslationError, match=message):
        parse_trino(sql)
