"""Change capture as a user runs it: with ``offload-assets dev`` running, the change-capture sensor
(on by default) launches a run on its own when records wait, and a put, an update and a delete are
then visible in ``offload-assets query``; the SQL state equals a full scan of the table."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg

from offload_assets.aws.s3_writes import s3_put_kwargs
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.cdc.test_table_capture import STREAM_ON, create_reviews, scan_rows
from offload_assets_tests.cli.test_cli import run_cli
from offload_assets_tests.conftest import TEST_BUCKET, write_tables_file
from offload_assets_tests.ui.dagster_ui import DagsterDev, tail

ROOT = Path(__file__).resolve().parents[2]
CHANGED = """SELECT user_id, rating FROM "dynamodb-exports"."reviews" WHERE user_id IN ('new', 'u1', 'u2') ORDER BY 1"""


def _query(capsys, sql: str) -> list[dict]:
    code, out, err = run_cli(capsys, "query", "--format", "json", sql)
    assert code == 0, err
    return json.loads(out)


def test_with_dev_running_the_sensor_applies_put_update_delete(tmp_path, aws, emulator, monkeypatch, capsys):
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "local")
    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {
            "dynamodb_table": "Reviews",
            "catalog_database": "dynamodb-exports",
            "table_format": "iceberg",
            "change_capture": "streams",
            "change_capture_interval_seconds": 5,
            "export_method": "native",
        },
        defaults={"s3_bucket": TEST_BUCKET},
    )
    ddb = create_reviews(aws, stream=STREAM_ON, items=10)
    code, _, err = run_cli(capsys, "cdc", "run", "Reviews", "--tables", str(tables))  # the bootstrap
    assert code == 0, err

    log_path = tmp_path / "dev.log"
    env = {**os.environ, "OFFLOAD_ASSETS_TABLES": str(tables), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    dev = DagsterDev.start_offload_assets_dev(cwd=ROOT, env=env, log_path=log_path)
    try:
        ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "new"}, "review_id": {"N": "1"}, "rating": {"N": "5"}})
        ddb.update_item(
            TableName="Reviews",
            Key={"user_id": {"S": "u1"}, "review_id": {"N": "1"}},
            UpdateExpression="SET rating = :r",
            ExpressionAttributeValues={":r": {"N": "1"}},
        )
        ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": "u2"}, "review_id": {"N": "1"}})
        expected = [{"user_id": "new", "rating": 5}, {"user_id": "u1", "rating": 1}]
        deadline, answer = time.monotonic() + 300, None
        while time.monotonic() < deadline:
            assert dev.process.poll() is None, f"offload-assets dev exited:\n{tail(log_path)}"
            answer = [{"user_id": r["user_id"], "rating": int(r["rating"])} for r in _query(capsys, CHANGED)]
            if answer == expected:
                break
            time.sleep(3)
        assert answer == expected, f"not applied by the sensor's run within 300 s:\n{tail(log_path)}"
    finally:
        dev.stop()

    spec = load_tables_file(tables).table("Reviews")
    table = load_table(connect_catalog(aws, s3_put_kwargs(spec)), iceberg_location(spec))
    full_scan = scan_rows(ddb, table.schema().as_arrow())
    assert _query(capsys, 'SELECT count(*) AS n FROM "dynamodb-exports"."reviews"') == [{"n": len(full_scan)}]

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name=f"{spec.name}_change_capture_job"))
        assert runs and all(r.tags.get("dagster/sensor_name", "").endswith("change_capture_sensor") for r in runs)
        assert any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
