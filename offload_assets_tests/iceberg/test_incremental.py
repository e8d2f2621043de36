"""A DynamoDB incremental export applied to the Iceberg table directly: only the changed items converted."""

from __future__ import annotations

from offload_assets.export.layout import list_completed_exports
from offload_assets.export.partition_export import incremental_export_prefix
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.checks import changes_add_up, commit_of
from offload_assets.iceberg.incremental import apply_incremental_export
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.local.demo_data import to_low_level
from offload_assets_tests.export.conftest import BUCKET
from offload_assets_tests.export.test_incremental_export import _json_image, _record, write_incremental_export
from offload_assets_tests.iceberg.pipeline import dynamodb_state, make_spec, review, run_partition, seed


def test_incremental_export_is_applied_as_one_snapshot_of_its_changes(aws):
    spec = make_spec(s3_bucket=BUCKET)
    ddb = seed(aws, spec, 50)
    run_partition(aws, spec, "2026-11-20")
    records = []
    for n in (1, 2):  # updated
        new = to_low_level(review(n, author="Changed"))
        ddb.put_item(TableName=spec.dynamodb_table, Item=new)
        records.append(_record(new, new=_json_image(new), micros=10 + n))
    gone = to_low_level(review(7))
    ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": gone["User"], "Book": gone["Book"]})
    records.append(_record(gone, old=_json_image(gone), micros=20))
    added = to_low_level(review(900))
    ddb.put_item(TableName=spec.dynamodb_table, Item=added)
    records.append(_record(added, new=_json_image(added), micros=30))
    s3 = aws.client("s3")
    prefix = incremental_export_prefix(spec, "2026-11-21")
    t1, t2 = spec.export_time("2026-11-20"), spec.export_time("2026-11-21")
    write_incremental_export(s3, prefix=prefix, records=records, from_time=t1, to_time=t2, table_arn="arn:x")
    (incremental,) = list_completed_exports(s3, bucket=BUCKET, export_prefix=prefix)

    table = load_table(connect_catalog(aws), iceberg_location(spec))
    counts = apply_incremental_export(table, s3, spec, "2026-11-21", incremental, ("User", "Book"))
    assert counts == {"inserted": 1, "updated": 2, "deleted": 1, "unchanged": 47, "previous-rows": 50}
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    rows = table.scan().to_arrow().to_pylist()
    assert {(r["user"], r["book"]): (r["author"], r["rating"]) for r in rows} == dynamodb_state(
        ddb, spec.dynamodb_table
    )
    assert len(rows) == 50  # no duplicates, no resurrected delete
    assert changes_add_up(spec, "2026-11-21", commit_of(table, "2026-11-21")).passed
    snapshots = len(table.metadata.snapshots)
    assert apply_incremental_export(table, s3, spec, "2026-11-21", incremental, ("User", "Book")) is None
    table.refresh()
    assert len(table.metadata.snapshots) == snapshots  # applied once
