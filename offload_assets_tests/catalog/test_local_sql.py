"""Glue registration and local SQL resolved through the catalog, against the emulator."""

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offload_assets.catalog import ORIGINAL_NAME_KEY, get_catalog_table, list_partitions, register_partition, register_table
from offload_assets.s3_storage import ensure_bucket
from offload_assets.sql_query import QueryError, run_query

BUCKET = "catalog-sql-test"
DB = "dynamodb-exports"

SCHEMA = pa.schema([
    pa.field("user", pa.string(), metadata={ORIGINAL_NAME_KEY: b"User"}),
    pa.field("author", pa.string(), metadata={ORIGINAL_NAME_KEY: b"Author"}),
    pa.field("rating", pa.int64(), metadata={ORIGINAL_NAME_KEY: b"Rating"}),
    pa.field("price", pa.decimal128(38, 2), metadata={ORIGINAL_NAME_KEY: b"Price"}),
    pa.field("details", pa.struct([("pages", pa.int64())]), metadata={ORIGINAL_NAME_KEY: b"Details"}),
    pa.field("tags", pa.list_(pa.string()), metadata={ORIGINAL_NAME_KEY: b"Tags"}),
])


def _write(fs, path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), f"{BUCKET}/{path}", filesystem=fs)


@pytest.fixture()
def published(aws):
    s3, glue, fs = aws.client("s3"), aws.client("glue"), aws.arrow_filesystem()
    ensure_bucket(s3, BUCKET)
    day1 = [
        {"user": "a", "author": "J.K. Rowling", "rating": 5, "price": Decimal("12345678901234567890123456789012345.67"), "details": {"pages": 300}, "tags": ["fantasy"]},
        {"user": "b", "author": "Jane Austen", "rating": 4, "price": None, "details": None, "tags": ["classic", "romance"]},
    ]
    day2 = day1 + [{"user": "c", "author": "J.K. Rowling", "rating": 3, "price": Decimal("1.50"), "details": {"pages": 120}, "tags": []}]
    _write(fs, "t/reviews/ddb_export_timestamp=2026-11-26/run-1/part-00000.parquet", day1)
    _write(fs, "t/reviews/ddb_export_timestamp=2026-11-27/run-2/part-00000.parquet", day2)
    # A half-written snapshot of another run that was never registered must stay invisible.
    _write(fs, "t/reviews/ddb_export_timestamp=2026-11-27/run-3/part-00000.parquet", day2)
    assert register_table(glue, database=DB, table="reviews", location=f"s3://{BUCKET}/t/reviews/", schema=SCHEMA) == "created"
    for day, run in (("2026-11-26", "run-1"), ("2026-11-27", "run-2")):
        loc = f"s3://{BUCKET}/t/reviews/ddb_export_timestamp={day}/{run}/"
        assert register_partition(glue, database=DB, table="reviews", value=day, location=loc, schema=SCHEMA) == "created"
    return aws


def test_registration_is_idempotent_and_keeps_original_names(published):
    glue = published.client("glue")
    versions_before = len(glue.get_table_versions(DatabaseName=DB, TableName="reviews")["TableVersions"])
    assert register_table(glue, database=DB, table="reviews", location=f"s3://{BUCKET}/t/reviews/", schema=SCHEMA) == "unchanged"
    loc = f"s3://{BUCKET}/t/reviews/ddb_export_timestamp=2026-11-27/run-2/"
    assert register_partition(glue, database=DB, table="reviews", value="2026-11-27", location=loc, schema=SCHEMA) == "unchanged"
    assert len(glue.get_table_versions(DatabaseName=DB, TableName="reviews")["TableVersions"]) == versions_before
    table = get_catalog_table(glue, DB, "reviews")
    assert table.schema.equals(SCHEMA, check_metadata=True)
    assert table.partition_keys == ("ddb_export_timestamp",)
    assert [p.value for p in list_partitions(glue, database=DB, table="reviews")] == ["2026-11-26", "2026-11-27"]


def test_blog_query_runs_on_local_engine(published):
    blog = """SELECT COUNT(author) as num_reviews FROM "dynamodb-exports"."reviews" WHERE author = 'J.K. Rowling';"""
    result = run_query(blog, connection=published)
    assert result.engine == "duckdb" and result.columns == ("num_reviews",)
    assert result.scalar() == 3  # 1 on day 1 + 2 on day 2: every registered snapshot, nothing from run-3


def test_partition_filter_nested_fields_arrays_and_exact_decimals(published):
    q = run_query(
        """SELECT user, details.pages, cardinality(tags) AS n_tags, price FROM "dynamodb-exports"."reviews"
           WHERE ddb_export_timestamp = '2026-11-27' ORDER BY user""",
        connection=published,
    )
    assert q.rows == (
        ("a", 300, 1, Decimal("12345678901234567890123456789012345.67")),
        ("b", None, 2, None),
        ("c", 120, 0, Decimal("1.50")),
    )
    unqualified = run_query("SELECT count(*) FROM reviews WHERE contains(tags, 'classic')", connection=published)
    assert unqualified.scalar() == 2


def test_missing_table_and_bad_sql_give_clear_errors(published):
    with pytest.raises(QueryError, match="Table not found: dynamodb-exports.nope"):
        run_query('SELECT * FROM "dynamodb-exports"."nope"', connection=published)
    with pytest.raises(QueryError, match="Binder Error|not found"):
        run_query('SELECT no_such_column FROM "dynamodb-exports"."reviews"', connection=published)
