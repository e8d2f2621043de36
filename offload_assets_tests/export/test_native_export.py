"""Native point-in-time export on the local emulator: manifests we write, the PITR window, no reads."""

import datetime as dt
import json

import pytest

from offload_assets.export.errors import ExportRefusedError, ExportTimeoutError
from offload_assets.export.layout import (
    MANIFEST_FILES,
    MANIFEST_SUMMARY,
    latest_completed_export,
    list_export_ids,
)
from offload_assets.export.partition_export import export_partition
from offload_assets.local.demo_data import to_low_level
from offload_assets_tests.export.conftest import (
    BUCKET,
    READ_OPERATIONS,
    canonical,
    day_after,
    enable_pitr,
    export_items,
    keys_of,
    list_keys,
    make_spec,
    record_operations,
)


def test_native_full_export_completes_the_layout_without_reading_the_table(reviews):
    ddb, s3, items = reviews
    earliest = enable_pitr(ddb, "Reviews")
    spec = make_spec(export_method="native")
    partition = day_after(earliest)
    now = spec.export_time(partition) + dt.timedelta(hours=2)
    operations = record_operations(ddb)

    out = export_partition(spec, partition, dynamodb=ddb, s3=s3, now=now, poll_seconds=0.1)

    assert not READ_OPERATIONS & set(operations), operations
    assert "ExportTableToPointInTime" in operations and "DescribeExport" in operations
    assert out.method == "native" and out.consumed_capacity == 0.0
    manifest = out.manifest
    assert manifest.item_count == len(items) == out.facts["item_count"]
    assert out.facts["manifests_written_by"] == "offload_assets"  # the emulator writes none
    assert manifest.export_arn == out.facts["export_arn"] and manifest.export_arn
    assert manifest.export_time == f"{partition}T00:00:00.000Z"
    export_dir = f"{spec.export_prefix(partition)}/AWSDynamoDB/{manifest.export_id}"
    keys = list_keys(s3, export_dir + "/")
    assert f"{export_dir}/{MANIFEST_SUMMARY}" in keys and f"{export_dir}/{MANIFEST_FILES}" in keys
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{export_dir}/{MANIFEST_SUMMARY}")["Body"].read())
    assert summary["itemCount"] == len(items) and summary["exportType"] == "FULL_EXPORT"
    assert summary["exportArn"] == manifest.export_arn and summary["exportMethod"] == "native"
    exported = export_items(s3, manifest)  # counts and md5 per file match the manifest
    assert keys_of(exported) == sorted((i["User"], i["Book"]) for i in items)
    assert canonical(exported) == canonical([to_low_level(i) for i in items])


def test_native_rerun_replaces_the_partition_export(reviews):
    ddb, s3, _ = reviews
    earliest = enable_pitr(ddb, "Reviews")
    spec = make_spec(export_method="native")
    partition = day_after(earliest)
    now = spec.export_time(partition) + dt.timedelta(hours=2)
    first = export_partition(spec, partition, dynamodb=ddb, s3=s3, now=now, poll_seconds=0.1)
    ddb.delete_item(
        TableName="Reviews", Key={"User": {"S": "Alice"}, "Book": {"S": "Harry Potter and the Philosopher's Stone"}}
    )

    second = export_partition(spec, partition, dynamodb=ddb, s3=s3, now=now, poll_seconds=0.1)

    assert second.manifest.export_id != first.manifest.export_id
    assert list_export_ids(s3, bucket=BUCKET, export_prefix=spec.export_prefix(partition)) == [
        second.manifest.export_id
    ]
    assert second.manifest.item_count == first.manifest.item_count - 1


def test_table_without_pitr_is_refused_with_the_command_to_enable_it(reviews):
    ddb, s3, _ = reviews
    spec = make_spec(export_method="native")
    partition = dt.date.today().isoformat()
    with pytest.raises(ExportRefusedError) as err:
        export_partition(spec, partition, dynamodb=ddb, s3=s3)
    message = str(err.value)
    assert "'Reviews'" in message and "point-in-time recovery DISABLED" in message
    assert "aws dynamodb update-continuous-backups --table-name Reviews" in message
    assert "PointInTimeRecoveryEnabled=true" in message
    assert list_keys(s3, spec.export_prefix_root + "/") == []


def test_backfill_inside_the_window_works_and_outside_is_refused(reviews):
    ddb, s3, items = reviews
    earliest = enable_pitr(ddb, "Reviews")
    spec = make_spec(export_method="native")
    backfill = day_after(earliest, 2)
    now = spec.export_time(backfill) + dt.timedelta(days=20)  # the clock runs 20 days past that partition

    out = export_partition(spec, backfill, dynamodb=ddb, s3=s3, now=now, poll_seconds=0.1)
    assert out.manifest.item_count == len(items)

    too_old = (now.date() - dt.timedelta(days=36)).isoformat()
    with pytest.raises(ExportRefusedError, match="outside the 35-day point-in-time recovery window"):
        export_partition(spec, too_old, dynamodb=ddb, s3=s3, now=now)
    before_pitr = day_after(earliest, -1)
    with pytest.raises(ExportRefusedError, match="before the table's earliest restorable time"):
        export_partition(spec, before_pitr, dynamodb=ddb, s3=s3, now=now)
    future = (now.date() + dt.timedelta(days=1)).isoformat()
    with pytest.raises(ExportRefusedError, match="is in the future"):
        export_partition(spec, future, dynamodb=ddb, s3=s3, now=now)
    for refused in (too_old, before_pitr, future):
        assert list_keys(s3, spec.export_prefix(refused) + "/") == []


def test_timeout_fails_cleanly_and_keeps_the_previous_export(reviews):
    ddb, s3, items = reviews
    earliest = enable_pitr(ddb, "Reviews")
    partition = day_after(earliest)
    good = make_spec(export_method="native")
    now = good.export_time(partition) + dt.timedelta(hours=2)
    previous = export_partition(good, partition, dynamodb=ddb, s3=s3, now=now, poll_seconds=0.1).manifest

    hasty = make_spec(export_method="native", export_timeout_minutes=1e-6)
    with pytest.raises(ExportTimeoutError, match="exceeded its timeout.*nothing was published"):
        export_partition(hasty, partition, dynamodb=ddb, s3=s3, now=now, poll_seconds=0.1)

    found = latest_completed_export(s3, bucket=BUCKET, export_prefix=good.export_prefix(partition))
    assert found is not None and found.export_id == previous.export_id and found.item_count == len(items)
    summaries = [k for k in list_keys(s3, good.export_prefix(partition) + "/") if k.endswith(MANIFEST_SUMMARY)]
    assert summaries == [f"{good.export_prefix(partition)}/AWSDynamoDB/{previous.export_id}/{MANIFEST_SUMMARY}"]
