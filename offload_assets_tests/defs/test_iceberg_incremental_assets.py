"""An Iceberg table fed by incremental exports, through Dagster: day 2 is applied from its changes only.

Day 1 is a full (native) export, converted and committed by diff. Between the days items are updated,
inserted and deleted in DynamoDB; the day-2 INCREMENTAL_EXPORT is written in AWS's layout (the
emulator cannot produce one, see ``offload_assets_tests/export/test_incremental_export.py``) where
the export asset finds and reuses it. Materializing day 2 then stages ONLY the changed items and
commits them in one snapshot: SQL shows exactly DynamoDB's new state.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.iceberg_assets import CHANGES_CHECK
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.export.partition_export import incremental_export_prefix
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.checks import commit_of
from offload_assets.iceberg.incremental import APPLIED_FROM, INCREMENTAL_EXPORT_ID
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.local.demo_data import create_reviews_table, put_items, to_low_level
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.snapshot.build import latest_complete_snapshot
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.export.conftest import BUCKET
from offload_assets_tests.export.test_incremental_export import _json_image, _record, write_incremental_export
from offload_assets_tests.iceberg.pipeline import dynamodb_state, review

TABLE = '"dynamodb-exports"."reviews"'


def _node(key: dg.AssetKey) -> str:
    return "__".join(key.path)


def _sql_state(aws, suffix: str = "") -> dict[tuple[str, str], tuple[str, int]]:
    rows = run_query(f'SELECT "user", book, author, rating FROM {TABLE}{suffix}', connection=aws).rows
    assert len(rows) == len({(r[0], r[1]) for r in rows}), "a key twice"
    return {(r[0], r[1]): (r[2], int(r[3])) for r in rows}


def test_incremental_day_is_applied_from_its_changes_only(aws, emulator, tmp_path):
    entry = {
        "dynamodb_table": "reviews",
        "s3_bucket": BUCKET,  # where write_incremental_export writes
        "table_format": "iceberg",
        "export_method": "incremental",
        "partitions_start": "2026-11-01",
    }
    spec = load_tables_file(write_tables_file(tmp_path / "tables.yaml", entry)).table("reviews")
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    create_reviews_table(ddb, spec.dynamodb_table)
    put_items(ddb, spec.dynamodb_table, [review(n) for n in range(80)])  # 27 by J.K. Rowling (n % 3 == 0)
    s3.create_bucket(Bucket=BUCKET)
    backdate_point_in_time_recovery(emulator.endpoint_url, spec.dynamodb_table, days=3)
    day2 = partitions_for(spec).get_last_partition_key()
    day1 = (dt.date.fromisoformat(day2) - dt.timedelta(days=1)).isoformat()

    defs = build_definitions(tmp_path / "tables.yaml", target="local", endpoint_url=emulator.endpoint_url)
    keys = asset_keys(spec)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def(f"{spec.name}_offload_job")
    first = job.execute_in_process(partition_key=day1, instance=instance)
    assert first.success
    day1_meta = first.asset_materializations_for_node(_node(keys["parquet"]))[0].metadata
    assert "conversion" not in day1_meta and day1_meta["dagster/row_count"].value == 80  # the full export
    assert run_query(f"SELECT count(*) FROM {TABLE}", connection=aws).scalar() == 80

    # The day's changes in DynamoDB, and DynamoDB's INCREMENTAL_EXPORT of them.
    t1, t2 = spec.export_time(day1), spec.export_time(day2)
    micros = int(t1.timestamp() * 1_000_000)
    records = []
    for n in (3, 4, 5):  # updated (3 was Rowling's, 4 and 5 become hers)
        new = to_low_level(review(n, author="J.K. Rowling" if n != 3 else "Tolkien"))
        ddb.put_item(TableName=spec.dynamodb_table, Item=new)
        records.append(_record(new, new=_json_image(new), old=_json_image(to_low_level(review(n))), micros=micros + n))
    for n in (6, 7):  # deleted (6 was Rowling's)
        gone = to_low_level(review(n))
        ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": gone["User"], "Book": gone["Book"]})
        records.append(_record(gone, old=_json_image(gone), micros=micros + 100 + n))
    for n in (900, 901, 902, 903):  # inserted (900 and 903 by Rowling)
        added = to_low_level(review(n))
        ddb.put_item(TableName=spec.dynamodb_table, Item=added)
        records.append(_record(added, new=_json_image(added), micros=micros + 200 + n))
    table_arn = ddb.describe_table(TableName=spec.dynamodb_table)["Table"]["TableArn"]
    write_incremental_export(
        s3, prefix=incremental_export_prefix(spec, day2), records=records, from_time=t1, to_time=t2, table_arn=table_arn
    )

    second = job.execute_in_process(partition_key=day2, instance=instance)
    assert second.success
    export_meta = second.asset_materializations_for_node(_node(keys["export"]))[0].metadata
    assert export_meta["incremental_export_reused"].value is True
    staged = second.asset_materializations_for_node(_node(keys["parquet"]))[0].metadata
    # the Parquet step converted the 7 upserted items and staged 2 delete keys, not the 82-item table
    assert staged["conversion"].value == "changes only (incremental export)"
    assert staged["dagster/row_count"].value == staged["staged_upserts"].value == 3 + 4
    assert staged["staged_delete_keys"].value == 2
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    assert {"row_count_parity", "unique_primary_keys", "sql_row_count_parity", CHANGES_CHECK} <= set(checks)
    assert all(e.passed for e in checks.values()), {n: e.description for n, e in checks.items() if not e.passed}
    assert "80 previous rows + 4 inserted - 2 deleted = 82" in checks["row_count_parity"].description

    truth = dynamodb_state(ddb, spec.dynamodb_table)
    assert len(truth) == 82 and _sql_state(aws) == truth  # exactly the new state: no duplicate, no resurrected delete
    assert run_query(f"SELECT count(*) FROM {TABLE} WHERE author = 'J.K. Rowling'", connection=aws).scalar() == (
        27 - 1 + 2 - 1 + 2
    )
    catalog_meta = second.asset_materializations_for_node(_node(keys["catalog"]))[0].metadata
    assert catalog_meta["applied_from"].value == "incremental-export" and catalog_meta["dagster/row_count"].value == 82
    # merge-on-read: the 3 replaced and 2 deleted rows are named by one position delete file, no data file rewritten
    assert catalog_meta["position_deletes_added"].value == 3 + 2 and catalog_meta["delete_files"].value == 1
    assert catalog_meta["files_removed"].value == 0
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    commit = commit_of(table, day2)
    summary = commit.summary
    counts = {k: int(summary[f"offload-assets.{k}"]) for k in ("inserted", "updated", "deleted", "unchanged")}
    assert counts == {"inserted": 4, "updated": 3, "deleted": 2, "unchanged": 75}
    assert summary["offload-assets.previous-rows"] == "80" and summary["offload-assets.export-items"] == "82"
    assert summary[APPLIED_FROM] == "incremental-export" and summary[INCREMENTAL_EXPORT_ID]
    assert summary["offload-assets.export-time"] == t2.isoformat()
    assert latest_complete_snapshot(s3, spec, day2) is None  # the staged changes were removed after the commit

    # Time travel: day 1's snapshot answers day 1's count.
    day1_snapshot = commit_of(table, day1).snapshot_id
    assert run_query(f"SELECT count(*) FROM {TABLE} FOR VERSION AS OF {day1_snapshot}", connection=aws).scalar() == 80

    # Re-running day 2 changes nothing (the same incremental export is never applied twice).
    snapshots = len(table.metadata.snapshots)
    again = job.execute_in_process(partition_key=day2, instance=instance)
    assert again.success
    restaged = again.asset_materializations_for_node(_node(keys["parquet"]))[0].metadata
    assert restaged["already_applied"].value is True and restaged["dagster/row_count"].value == 0
    assert again.asset_materializations_for_node(_node(keys["catalog"]))[0].metadata["table_change"].value == (
        "already committed"
    )
    assert all(e.passed for e in again.get_asset_check_evaluations())
    table.refresh()
    assert len(table.metadata.snapshots) == snapshots
    assert _sql_state(aws) == truth
