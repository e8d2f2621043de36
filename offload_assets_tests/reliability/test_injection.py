"""Names from users and from data never reach SQL unquoted, and S3 keys never leave the table's prefix."""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.catalog.latest_view import latest_view_sql
from offload_assets.conversion import assign_column_names, safe_column_name
from offload_assets.snapshot.build import _RUN_DIR_RE, new_run_dir
from offload_assets.table_spec import TablesFileError, load_tables_file
from offload_assets_tests.conftest import write_tables_file

HOSTILE = [
    'a"; DROP TABLE x; --',
    "b'; DELETE FROM x; --",
    "c /* comment */ d",
    'e""f',
    "g`h",
    "i\nj",
    "semi;colon",
    "--dash",
]
SAFE_COLUMN = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_attribute_name_becomes_a_safe_column_name(attribute):
    assert SAFE_COLUMN.match(safe_column_name(attribute))


@given(st.lists(st.text(max_size=40), max_size=30))
@settings(max_examples=100, deadline=None)
def test_assigned_column_names_are_safe_and_unique(attributes):
    names = assign_column_names(attributes)
    assert set(names) == set(attributes)
    assert len(set(names.values())) == len(names)
    assert all(SAFE_COLUMN.match(n) for n in names.values())


def test_hostile_attribute_names_become_plain_identifiers():
    names = assign_column_names(HOSTILE)
    assert names['a"; DROP TABLE x; --'] == "a___drop_table_x____"
    for column in names.values():
        assert SAFE_COLUMN.match(column)


def test_latest_view_quotes_every_identifier_and_runs_as_one_select():
    """Even if a hostile name reached the schema, the view selects it as a column and drops nothing."""
    con = duckdb.connect()
    con.execute('CREATE SCHEMA "db"')
    con.execute("CREATE TABLE x (v INTEGER)")
    con.execute("INSERT INTO x VALUES (1)")
    columns = ", ".join('"' + n.replace('"', '""') + '" VARCHAR' for n in HOSTILE)
    con.execute(f'CREATE TABLE "db"."t; DROP TABLE x" ({columns}, ddb_export_timestamp VARCHAR)')
    con.execute(
        f'INSERT INTO "db"."t; DROP TABLE x" VALUES ({", ".join("?" for _ in HOSTILE)}, ?)', [*HOSTILE, "2026-01-02"]
    )
    con.execute(
        f'INSERT INTO "db"."t; DROP TABLE x" VALUES ({", ".join("?" for _ in HOSTILE)}, ?)', [*HOSTILE, "2026-01-01"]
    )
    schema = pa.schema([(n, pa.string()) for n in HOSTILE])

    sql = latest_view_sql("db", "t; DROP TABLE x", schema, "2026-01-02")
    rows = con.execute(sql).fetchall()
    assert rows == [(*HOSTILE, "2026-01-02")]
    assert [d[0] for d in con.execute(sql).description] == [*HOSTILE, "ddb_export_timestamp"]
    assert con.execute("SELECT v FROM x").fetchall() == [(1,)]  # nothing was dropped


@pytest.mark.parametrize("value", ["2026-01-01' OR '1'='1", "2026-01-01; DROP TABLE x", "2026-1-1", ""])
def test_latest_view_refuses_a_partition_value_that_is_not_a_date(value):
    with pytest.raises(ValueError, match="is not a YYYY-MM-DD date"):
        latest_view_sql("db", "t", pa.schema([("a", pa.string())]), value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("dynamodb_table", 'Reviews"; DROP TABLE x; --'),
        ("dynamodb_table", "Rev iews"),
        ("catalog_database", 'db"; DROP DATABASE y; --'),
        ("catalog_database", "db/*c*/"),
        ("catalog_table", "reviews; drop table x"),
        ("catalog_table", "reviews--"),  # allowed characters, but checked below to be harmless
        ("catalog_table", "Reviews"),
        ("catalog_table", "re.views"),
        ("s3_prefix", "../other-table"),
        ("s3_prefix", "data/../../escape"),
        ("s3_prefix", "data/./x"),
        ("s3_prefix", "data//x"),
        ("s3_prefix", "data/x y"),
        ("s3_bucket", "bucket/../x"),
        ("external_export_prefixes", ["s3://other-bucket/../secret"]),
        ("external_export_prefixes", ["exports/../../x"]),
    ],
)
def test_tables_file_refuses_names_and_prefixes_that_could_escape(tmp_path, field, value):
    entry = {"dynamodb_table": "Reviews", "s3_bucket": "bucket-a", field: value}
    path = write_tables_file(tmp_path / "t.yaml", entry)
    if (field, value) == ("catalog_table", "reviews--"):
        # '-' is a valid Glue name character; it is always double-quoted in SQL, so '--' is no comment.
        spec = load_tables_file(path).tables[0]
        sql = latest_view_sql(spec.catalog_database, spec.catalog_table, pa.schema([("a", pa.string())]), "2026-01-01")
        assert '"reviews--"' in sql
        return
    with pytest.raises(TablesFileError) as err:
        load_tables_file(path)
    assert field in str(err.value) and repr(entry["dynamodb_table"]) in str(err.value)  # names table and field


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_run_dir_stays_below_the_partition_whatever_the_run_id(run_id):
    from offload_assets.table_spec import parse_tables

    spec = parse_tables({"tables": [{"dynamodb_table": "Reviews", "s3_bucket": "bucket-a"}]}, path="t.yaml").tables[0]
    run_dir = new_run_dir(spec, "2026-01-01", run_id)
    parent, _, name = run_dir.rpartition("/")
    assert parent == spec.parquet_partition_prefix("2026-01-01")
    assert _RUN_DIR_RE.match(name) and ".." not in run_dir


@pytest.mark.parametrize("prefix", ["", "/", "//", "dynamodb-offload", "dynamodb-offload/parquet/reviews"])
def test_delete_prefix_refuses_prefixes_that_could_delete_too_much(prefix):
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"S3 was called ({name}) for a refused prefix")

    with pytest.raises(ValueError, match="refusing to delete"):
        delete_prefix(NoCalls(), bucket="bucket-a", prefix=prefix)
