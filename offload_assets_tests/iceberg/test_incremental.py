"""A DynamoDB incremental export applied to the Iceberg table directly: only the changed items converted."""

from __future__ import annotations

import datetime as dt

import pytest

from offload_assets.export.layout import list_completed_exports
from offload_assets.export.partition_export import export_partition, incremental_export_prefix
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.checks import changes_add_up, commit_of
from offload_assets.iceberg.incremental import (
    APPLIED_FROM,
    StaleChangesError,
    apply_incremental_export,
    publish_partition,
    stage_incremental_changes,
)
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.local.demo_data import to_low_level
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.snapshot.publish import UnpublishableSnapshotError
from offload_assets.snapshot.verdict import blocking_checks_verifier
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


def _day1(aws, emulator, spec):
    """Day 1 committed from a full (native) export of 40 items; (dynamodb, s3, day 1, day 2)."""
    ddb = seed(aws, spec, 40)
    backdate_point_in_time_recovery(emulator.endpoint_url, spec.dynamodb_table, days=4)
    now = dt.datetime.now(dt.UTC)
    day1, day2 = ((now - dt.timedelta(days=d)).date().isoformat() for d in (2, 1))
    run_partition(aws, spec, day1)
    return ddb, aws.client("s3"), day1, day2


def _export_day2(spec, ddb, s3, day1, day2, records) -> None:
    """Day 2's merged export, built from an INCREMENTAL_EXPORT of ``records``."""
    write_incremental_export(
        s3,
        prefix=incremental_export_prefix(spec, day2),
        records=records,
        from_time=spec.export_time(day1),
        to_time=spec.export_time(day2),
        table_arn="arn:x",
    )
    export_partition(spec, day2, dynamodb=ddb, s3=s3, now=spec.export_time(day2) + dt.timedelta(minutes=5))


def _update_and_delete(ddb, spec) -> list:
    new = to_low_level(review(1, author="Changed"))
    ddb.put_item(TableName=spec.dynamodb_table, Item=new)
    gone = to_low_level(review(2))
    ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": gone["User"], "Book": gone["Book"]})
    return [_record(new, new=_json_image(new), micros=10), _record(gone, old=_json_image(gone), micros=20)]


def _stage(aws, spec, day):
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    return stage_incremental_changes(
        aws.client("s3"), aws.arrow_filesystem(), table, spec, day, run_id="test", key_names=("User", "Book")
    )


def test_staged_changes_that_fail_their_blocking_checks_are_never_committed(aws, emulator):
    spec = make_spec(s3_bucket=BUCKET, export_method="incremental")
    ddb, s3, day1, day2 = _day1(aws, emulator, spec)
    _export_day2(spec, ddb, s3, day1, day2, _update_and_delete(ddb, spec))
    staged = _stage(aws, spec, day2)
    assert staged.kind == "changes" and staged.rows == 1 and staged.extra["delete_keys"] == 1
    assert (staged.extra["previous_rows"], staged.extra["export_item_count"]) == (40, 39)
    s3.delete_object(Bucket=BUCKET, Key=staged.files[0]["path"].split("/", 1)[1])  # a staged file lost
    verify = blocking_checks_verifier(s3, aws.arrow_filesystem(), ddb, spec)
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    snapshots = len(table.metadata.snapshots)
    with pytest.raises(
        UnpublishableSnapshotError, match="failed row_count_parity: .*0 inserted \\+ 1 updated.*missing Parquet file"
    ):
        publish_partition(connect_catalog(aws), s3, aws.arrow_filesystem(), spec, day2, ("User", "Book"), verify=verify)
    table.refresh()
    assert len(table.metadata.snapshots) == snapshots and table.scan().to_arrow().num_rows == 40  # nothing committed


def test_a_base_export_the_table_did_not_commit_takes_the_full_export_path(aws, emulator):
    spec = make_spec(s3_bucket=BUCKET, export_method="incremental")
    ddb, s3, day1, day2 = _day1(aws, emulator, spec)
    # day 1 exported again after its commit: same state, a new export id the table never committed
    export_partition(spec, day1, dynamodb=ddb, s3=s3, now=spec.export_time(day1) + dt.timedelta(minutes=5))
    _export_day2(spec, ddb, s3, day1, day2, _update_and_delete(ddb, spec))
    assert _stage(aws, spec, day2) is None  # not applicable: the Parquet step converts the merged export
    out = run_partition(aws, spec, day2)
    assert (out.counts["updated"], out.counts["deleted"]) == (1, 1) and APPLIED_FROM not in out.summary
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    rows = table.scan().to_arrow().to_pylist()
    assert {(r["user"], r["book"]): (r["author"], r["rating"]) for r in rows} == dynamodb_state(
        ddb, spec.dynamodb_table
    )


def test_changes_staged_on_a_base_the_table_moved_past_are_refused(aws, emulator):
    spec = make_spec(s3_bucket=BUCKET, export_method="incremental")
    ddb, s3, day1, day2 = _day1(aws, emulator, spec)
    _export_day2(spec, ddb, s3, day1, day2, _update_and_delete(ddb, spec))
    staged = _stage(aws, spec, day2)
    assert staged.kind == "changes"
    # day 1 re-run with a new export after the staging: the table's newest commit is no longer the base
    ddb.put_item(TableName=spec.dynamodb_table, Item=to_low_level(review(5, author="Late")))
    run_partition(aws, spec, day1)
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    snapshots = len(table.metadata.snapshots)
    with pytest.raises(StaleChangesError, match="re-materialize the Parquet snapshot"):
        publish_partition(connect_catalog(aws), s3, aws.arrow_filesystem(), spec, day2, ("User", "Book"))
    table.refresh()
    assert len(table.metadata.snapshots) == snapshots


def test_a_changed_item_that_does_not_fit_its_column_is_rescued_as_in_a_full_conversion(aws, emulator):
    spec = make_spec(s3_bucket=BUCKET, export_method="incremental")
    ddb, s3, day1, day2 = _day1(aws, emulator, spec)
    odd = {**to_low_level(review(4)), "Rating": {"S": "five"}, "Shelf": {"S": "top"}}  # a new attribute too
    ddb.put_item(TableName=spec.dynamodb_table, Item=odd)
    _export_day2(spec, ddb, s3, day1, day2, [_record(odd, new=_json_image(odd), micros=40)])
    staged = _stage(aws, spec, day2)
    assert staged.rescued_counts == {"rating": 1} and "shelf" in staged.schema.names
    publish_partition(connect_catalog(aws), s3, aws.arrow_filesystem(), spec, day2, ("User", "Book"))
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    row = next(r for r in table.scan().to_arrow().to_pylist() if r["user"] == "user-0004")
    assert row["rating"] is None and "five" in row["_rescued_data"] and row["shelf"] == "top"
    assert table.scan().to_arrow().num_rows == 40
