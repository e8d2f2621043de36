"""Glue registration and local SQL resolved through the catalog, against the emulator."""

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.catalog.glue_tables import (
    ORIGINAL_NAME_KEY,
    get_catalog_table,
    list_partitions,
    register_partition,
    register_table,
)
from offload_assets.sql.query import QueryError, run_query

BUCKET = "catalog-sql-test"
DB = "dynamodb-exports"

SCHEMA = pa.schema(
    [
        pa.field("user", pa.string(), metadata={ORIGINAL_NAME_KEY: b"User"}),
        pa.field("author", pa.string(), metadata={ORIGINAL_NAME_KEY: b"Author"}),
        pa.field("rating", pa.int64(), metadata={ORIGINAL_NAME_KEY: b"Rating"}),
        pa.field("price", pa.decimal128(38, 2), metadata={ORIGINAL_NAME_KEY: b"Price"}),
        pa.field("details", pa.struct([("pages", pa.int64())]), metadata={ORIGINAL_NAME_KEY: b"Details"}),
        pa.field("tags", pa.list_(pa.string()), metadata={ORIGINAL_NAME_KEY: b"Tags"}),
    ]
)


def _write(fs, path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), f"{BUCKET}/{path}", filesystem=fs)


@pytest.fixture()
def published(aws):
    s3, glue, fs = aws.client("s3"), aws.client("glue"), aws.arrow_filesystem()
    ensure_bucket(s3, BUCKET)
    day1 = [
        {
            "user": "a",
            "author": "J.K. Rowling",
            "rating": 5,
            "price": Decimal("12345678901234567890123456789012345.67"),
            "details": {"pages": 300},
            "tags": ["fantasy"],
        },
        {
            "user": "b",
            "author": "Jane Austen",
            "rating": 4,
            "price": None,
            "details": None,
            "tags": ["classic", "romance"],
        },
    ]
    day2 = day1 + [
        {
            "user": "c",
            "author": "J.K. Rowling",
            "rating": 3,
            "price": Decimal("1.50"),
            "details": {"pages": 120},
            "tags": [],
        }
    ]
    _write(fs, "t/reviews/ddb_export_timestamp=2026-11-26/run-1/part-00000.parquet", day1)
    _write(fs, "t/reviews/ddb_export_timestamp=2026-11-27/run-2/part-00000.parquet", day2)
    # A half-written snapshot of another run that was never registered must stay invisible.
    _write(fs, "t/reviews/ddb_export_timestamp=2026-11-27/run-3/part-00000.parquet", day2)
    assert (
        register_table(glue, database=DB, table="reviews", location=f"s3://{BUCKET}/t/reviews/", schema=SCHEMA)
        == "created"
    )
    for day, run in (("2026-11-26", "run-1"), ("2026-11-27", "run-2")):
        loc = f"s3://{BUCKET}/t/reviews/ddb_export_timestamp={day}/{run}/"
        assert (
            register_partition(glue, database=DB, table="reviews", value=day, location=loc, schema=SCHEMA) == "created"
        )
    return aws


def test_registration_is_idempotent_and_keeps_original_names(published):
    glue = published.client("glue")
    versions_before = len(glue.get_table_versions(DatabaseName=DB, TableName="reviews")["TableVersions"])
    assert (
        register_table(glue, database=DB, table="reviews", location=f"s3://{BUCKET}/t/reviews/", schema=SCHEMA)
        == "unchanged"
    )
    loc = f"s3://{BUCKET}/t/reviews/ddb_export_timestamp=2026-11-27/run-2/"
    assert (
        register_partition(glue, database=DB, table="reviews", value="2026-11-27", location=loc, schema=SCHEMA)
        == "unchanged"
    )
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


def test_case_insensitive_names_catalog_prefix_and_athena_column_names(published):
    q = run_query(
        'SELECT "USER", Rating, count(*), rating / 2 AS half FROM awsdatacatalog."DynamoDB-Exports"."Reviews" '
        "WHERE ddb_export_timestamp = '2026-11-26' GROUP BY 1, 2 ORDER BY 1",
        connection=published,
    )
    assert q.columns == ("user", "rating", "_col2", "half")
    # Trino divides integers as integers (5 / 2 = 2): the same answer locally.
    assert q.rows == (("a", 5, 1, 2), ("b", 4, 1, 2))


def test_partition_filter_prunes_files(published):
    """Corrupt the 2026-11-26 file: queries filtered to 2026-11-27 never open it, others fail on it."""
    fs = published.arrow_filesystem()
    with fs.open_output_stream(f"{BUCKET}/t/reviews/ddb_export_timestamp=2026-11-26/run-1/part-00000.parquet") as out:
        out.write(b"this is not parquet")
    pruned = 'SELECT count(*) FROM "dynamodb-exports"."reviews" WHERE ddb_export_timestamp = \'2026-11-27\''
    assert run_query(pruned, connection=published).scalar() == 3
    ranged = 'SELECT count(*) FROM "dynamodb-exports"."reviews" WHERE ddb_export_timestamp > \'2026-11-26\''
    assert run_query(ranged, connection=published).scalar() == 3
    with pytest.raises(QueryError, match="Parquet|parquet|magic"):
        run_query('SELECT count(*) FROM "dynamodb-exports"."reviews"', connection=published)


def test_athena_views_are_resolved_and_checked(published):
    glue = published.client("glue")
    from offload_assets.catalog.glue_tables import register_view

    by_author = pa.schema([("author", pa.string()), ("reviews", pa.int64()), ("tags", pa.int64())])
    sql = (
        "SELECT author, count(*) AS reviews, sum(cardinality(tags)) AS tags FROM reviews "
        "WHERE ddb_export_timestamp = '2026-11-27' GROUP BY author"
    )
    assert register_view(glue, database=DB, name="by_author", sql=sql, schema=by_author) == "created"
    assert register_view(glue, database=DB, name="by_author", sql=sql, schema=by_author) == "unchanged"
    q = run_query('SELECT * FROM "dynamodb-exports"."by_author" ORDER BY reviews DESC', connection=published)
    assert q.rows == (("J.K. Rowling", 2, 1), ("Jane Austen", 1, 2))
    # A view over a view, joined back to its table.
    register_view(
        glue,
        database=DB,
        name="top_author",
        sql="SELECT author FROM by_author WHERE reviews > 1",
        schema=pa.schema([("author", pa.string())]),
    )
    q = run_query(
        'SELECT t.author, count(*) FROM "dynamodb-exports".top_author t JOIN "dynamodb-exports".reviews r ON r.author = t.author GROUP BY 1',
        connection=published,
    )
    assert q.rows == (("J.K. Rowling", 3),)
    # Athena refuses a view whose stored columns disagree with its query; so does the local engine.
    register_view(
        glue,
        database=DB,
        name="stale",
        sql="SELECT user, rating FROM reviews",
        schema=pa.schema([("user", pa.string())]),
    )
    with pytest.raises(QueryError, match=r"View 'dynamodb-exports.stale' is stale"):
        run_query('SELECT * FROM "dynamodb-exports"."stale"', connection=published)
    register_view(glue, database=DB, name="loop_a", sql="SELECT * FROM loop_b", schema=pa.schema([("x", pa.string())]))
    register_view(glue, database=DB, name="loop_b", sql="SELECT * FROM loop_a", schema=pa.schema([("x", pa.string())]))
    with pytest.raises(
        QueryError,
        match="View is recursive: dynamodb-exports.loop_a -> dynamodb-exports.loop_b -> dynamodb-exports.loop_a",
    ):
        run_query('SELECT * FROM "dynamodb-exports"."loop_a"', connection=published)
    register_view(glue, database=DB, name="dangling", sql="SELECT * FROM gone", schema=pa.schema([("x", pa.string())]))
    with pytest.raises(QueryError, match="Table not found: dynamodb-exports.gone"):
        run_query('SELECT * FROM "dynamodb-exports"."dangling"', connection=published)


def test_other_catalogs_are_refused(published):
    with pytest.raises(QueryError, match="catalog 'hive' is not available locally"):
        run_query('SELECT * FROM hive."dynamodb-exports".reviews', connection=published)


def test_local_sql_is_confined_to_the_catalog(published, tmp_path, monkeypatch):
    """Like Athena: no file reads, no file writes, only queries (issue 14, point 7)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(QueryError, match="refused: local SQL reads only the catalog's tables.*/etc/passwd"):
        run_query("SELECT * FROM read_csv('/etc/passwd')", connection=published)
    with pytest.raises(QueryError, match="refused: COPY statement; local SQL runs only SELECT"):
        run_query("COPY (SELECT 1) TO 'out.csv'", connection=published)
    with pytest.raises(QueryError, match="refused|Table not found"):
        run_query("CREATE TABLE t AS SELECT 1", connection=published)
    assert list(tmp_path.iterdir()) == []  # nothing written
    # What Athena allows still runs, over the catalog's tables.
    assert run_query('SELECT count(*) FROM "dynamodb-exports"."reviews"', connection=published).scalar() == 5
    assert run_query("VALUES (1), (2)", connection=published).rows == ((1,), (2,))
    q = run_query(
        'WITH r AS (SELECT user FROM "dynamodb-exports"."reviews") SELECT count(*) FROM r', connection=published
    )
    assert q.scalar() == 5


def test_cli_query_refuses_reading_a_file(published, emulator, monkeypatch, capsys):
    from offload_assets.cli.main import main

    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "local")
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    assert main(["query", "SELECT * FROM read_csv('/etc/passwd')"]) == 1
    out, err = capsys.readouterr()
    assert "root:" not in out and "refused" in err
