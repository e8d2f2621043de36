"""``offload-assets cdc run / status`` against the test emulator: put, update and delete reach the Iceberg table."""

from __future__ import annotations

import json

import duckdb
import pytest

from offload_assets.aws.s3_writes import s3_put_kwargs
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.cdc.test_table_capture import STREAM_ON, create_reviews, rows, scan_rows
from offload_assets_tests.conftest import TEST_BUCKET, write_tables_file

from .test_cli import run_cli


@pytest.fixture()
def capture_tables(tmp_path, aws, emulator, monkeypatch):
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "local")
    return write_tables_file(
        tmp_path / "tables.yaml",
        {
            "dynamodb_table": "Reviews",
            "catalog_database": "dynamodb-exports",
            "table_format": "iceberg",
            "change_capture": "streams",
            "export_method": "native",
        },
        {"dynamodb_table": "Other"},
        defaults={"s3_bucket": TEST_BUCKET},
    )


def sql_rows(aws, spec, sql: str):
    """SQL on the Iceberg table's current snapshot as pyiceberg reads it (position deletes applied) in DuckDB."""
    table = load_table(connect_catalog(aws, s3_put_kwargs(spec)), iceberg_location(spec))
    with duckdb.connect() as con:
        con.register("reviews", table.scan().to_arrow())
        return con.sql(sql).fetchall(), table


def test_cdc_run_applies_put_update_delete_and_status_reports_the_position(capture_tables, aws, capsys):
    ddb = create_reviews(aws, stream=STREAM_ON, items=10)
    spec = load_tables_file(capture_tables).table("Reviews")
    code, out, _ = run_cli(capsys, "cdc", "status", "--tables", str(capture_tables))
    assert code == 0 and "Reviews -> dynamodb-exports.reviews: not bootstrapped" in out

    code, out, err = run_cli(capsys, "cdc", "run", "Reviews", "--tables", str(capture_tables))
    assert code == 0, err
    assert "bootstrap" in err and "native export" in err and "records applied in" in err
    assert "caught up" in out

    ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "new"}, "review_id": {"N": "1"}, "rating": {"N": "5"}})
    ddb.update_item(
        TableName="Reviews",
        Key={"user_id": {"S": "u1"}, "review_id": {"N": "1"}},
        UpdateExpression="SET rating = :r",
        ExpressionAttributeValues={":r": {"N": "1"}},
    )
    ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": "u2"}, "review_id": {"N": "1"}})
    code, out, err = run_cli(capsys, "cdc", "run", "Reviews", "--tables", str(capture_tables), "--format", "json")
    assert code == 0, err
    facts = json.loads(out)
    assert (facts["inserts"], facts["updates"], facts["deletes"], facts["rebootstraps"]) == (1, 1, 1, 0)
    assert "3 records applied in 1 commit(s)" in err

    answer, table = sql_rows(
        aws, spec, "SELECT user_id, rating FROM reviews WHERE user_id IN ('new', 'u1', 'u2') ORDER BY 1"
    )
    assert [(u, int(r)) for u, r in answer] == [("new", 5), ("u1", 1)]
    assert rows(table.scan().to_arrow()) == scan_rows(ddb, table.schema().as_arrow())
    # and as a user asks: `offload-assets query`, the table resolved from Glue (table_type=ICEBERG)
    code, out, err = run_cli(
        capsys,
        "query",
        "--format",
        "json",
        """SELECT user_id, rating FROM "dynamodb-exports"."reviews" WHERE user_id IN ('new', 'u1', 'u2') ORDER BY 1""",
    )
    assert code == 0, err
    assert [(r["user_id"], int(r["rating"])) for r in json.loads(out)] == [("new", 5), ("u1", 1)]
    code, out, err = run_cli(
        capsys, "query", "--format", "json", 'SELECT count(*) AS n FROM "dynamodb-exports"."reviews"'
    )
    assert code == 0 and json.loads(out) == [{"n": len(scan_rows(ddb, table.schema().as_arrow()))}], out + err

    code, out, _ = run_cli(capsys, "cdc", "status", "Reviews", "--tables", str(capture_tables), "--format", "json")
    [status] = json.loads(out)
    assert status["state"] == "caught up" and status["lag_seconds"] == 0.0
    assert status["position"]["stream_arn"].startswith("arn:aws:dynamodb:") and status["position"]["shards"]
    assert status["last_commit"]["deletes"] == "1"


def test_cdc_on_a_table_without_change_capture_is_a_usage_error(capture_tables, capsys):
    code, _, err = run_cli(capsys, "cdc", "run", "Other", "--tables", str(capture_tables))
    assert code == 2 and "change_capture is 'off'" in err and "change_capture: streams" in err
