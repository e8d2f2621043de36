"""The Dagster path of an Iceberg table: the catalog asset commits changes, checks hold, maintenance runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from offload_assets.cli.demo import BLOG_QUERY
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.iceberg_assets import CHANGES_CHECK, maintenance_key
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.iceberg.pipeline import review, run_partition, seed


def _item(n, author=None):
    return {k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in review(n, author=author).items()}


def test_catalog_asset_commits_the_days_changes_and_checks_add_up(aws, emulator, tmp_path):
    entry = {
        "dynamodb_table": "reviews",
        "s3_bucket": "iceberg-test",
        "table_format": "iceberg",
        "partitions_start": "2026-11-01",
        "retention_snapshots": 1,
        "compaction_target_mb": 1,
    }
    tables_file = write_tables_file(tmp_path / "tables.yaml", entry)
    spec = load_tables_file(tables_file).table("reviews")
    today = partitions_for(spec).get_last_partition_key()
    yesterday = (dt.date.fromisoformat(today) - dt.timedelta(days=1)).isoformat()
    ddb = seed(aws, spec, 60)  # 20 by J.K. Rowling
    run_partition(aws, spec, yesterday)  # day 1 through the core (a scan cannot export a past day now)
    ddb.put_item(TableName=spec.dynamodb_table, Item=_item(1, author="J.K. Rowling"))
    ddb.put_item(TableName=spec.dynamodb_table, Item=_item(700))
    ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": {"S": "user-0003"}, "Book": {"S": "book-3"}})

    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    keys = asset_keys(spec)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def(f"{spec.name}_offload_job")
    result = job.execute_in_process(partition_key=today, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("__".join(keys["catalog"].path))[0].metadata
    assert meta["table_format"].value == "iceberg" and meta["table_change"].value == "committed"
    counts = {k: meta[k].value for k in ("inserted", "updated", "deleted", "unchanged", "previous_rows")}
    assert counts == {"inserted": 1, "updated": 1, "deleted": 1, "unchanged": 58, "previous_rows": 60}
    assert meta["dagster/row_count"].value == 60 and meta["data_files"].value >= 1 and meta["data_bytes"].value > 0
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {"row_count_parity", "unique_primary_keys", "sql_row_count_parity", CHANGES_CHECK} <= set(checks)
    assert all(e.passed for e in checks.values()), {n: e.description for n, e in checks.items() if not e.passed}
    assert "= the export's items" in checks["sql_row_count_parity"].description
    assert run_query(BLOG_QUERY, connection=aws).scalar() == 20 + 1 - 1 + 0  # user-0003 was Rowling's

    again = job.execute_in_process(partition_key=today, instance=instance)
    assert again.success
    meta = again.asset_materializations_for_node("__".join(keys["catalog"].path))[0].metadata
    assert meta["table_change"].value == "already committed"

    table = load_table(connect_catalog(aws), iceberg_location(spec))
    assert len(table.metadata.snapshots) == 2
    maintenance = defs.resolve_job_def(f"{spec.name}_iceberg_maintenance_job").execute_in_process(instance=instance)
    assert maintenance.success
    mmeta = maintenance.asset_materializations_for_node("__".join(maintenance_key(keys["catalog"]).path))[0].metadata
    # day 2 added a data file and a position delete file (merge-on-read); compaction folds both into one
    assert mmeta["files_compacted"].value == 2 and mmeta["data_files"].value == 1
    # retention_snapshots: 1 keeps the compaction snapshot only (day 1 and day 2 expire)
    assert mmeta["expired_snapshots"].value == 2 and mmeta["snapshots"].value == 1
    assert mmeta["orphan_files_removed"].value == 0  # day 1's files are younger than the grace period
    assert run_query(BLOG_QUERY, connection=aws).scalar() == 20
    assert run_query('SELECT count(*) FROM "dynamodb-exports"."reviews"', connection=aws).scalar() == 60
    schedule = defs.resolve_schedule_def(f"{spec.name}_iceberg_maintenance")
    assert schedule.cron_schedule == spec.maintenance_cron
