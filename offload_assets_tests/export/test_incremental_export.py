"""Incremental chain: day-1 full export + day-2 incremental export == a full export at the end of day 2.

The emulator cannot produce a real incremental export (it dumps the whole table), so the day-2
increment is written here in the documented AWS format: gzip JSON lines of
``{"Metadata": {"WriteTimestampMicros": {"N": ...}}, "Keys": ..., "NewImage": ..., "OldImage": ...}``
under ``AWSDynamoDB/<export id>/data/``, then ``manifest-files.json`` and ``manifest-summary.json``.
"""

import base64
import datetime as dt
import gzip
import json
import uuid

import pytest

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.export.errors import ExportFailedError, ExportTimeoutError
from offload_assets.export.incremental import apply_incremental_export
from offload_assets.export.layout import (
    latest_completed_export,
    list_export_ids,
    md5_base64,
    read_export_manifest,
    utc_iso,
)
from offload_assets.export.partition_export import export_partition, incremental_export_prefix
from offload_assets.local.demo_data import create_reviews_table, generate_reviews, put_items, to_low_level
from offload_assets_tests.export.conftest import (
    BUCKET,
    READ_OPERATIONS,
    canonical,
    day_after,
    enable_pitr,
    export_items,
    make_spec,
    record_operations,
)


def _key(item):
    return (item["User"]["S"], item["Book"]["S"])


def write_incremental_export(s3, *, prefix, records, from_time, to_time, table_arn):
    """An INCREMENTAL_EXPORT as DynamoDB lays it out (two data files, manifests last); returns its id."""
    export_id = f"{int(to_time.timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}"
    base = f"{prefix}/AWSDynamoDB/{export_id}"
    half = len(records) // 2
    manifest_lines = []
    for part in (records[:half], records[half:]):
        body = gzip.compress("".join(json.dumps(r) + "\n" for r in part).encode())
        key = f"{base}/data/{uuid.uuid4().hex[:26]}.json.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        manifest_lines.append(
            json.dumps({"itemCount": len(part), "md5Checksum": md5_base64(body), "etag": None, "dataFileS3Key": key})
        )
    s3.put_object(Bucket=BUCKET, Key=f"{base}/manifest-files.json", Body=("\n".join(manifest_lines) + "\n").encode())
    summary = {
        "version": "2023-08-01",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": utc_iso(to_time + dt.timedelta(minutes=5)),
        "endTime": utc_iso(to_time + dt.timedelta(minutes=9)),
        "tableArn": table_arn,
        "tableId": str(uuid.uuid4()),
        "exportFromTime": utc_iso(from_time),
        "exportToTime": utc_iso(to_time),
        "s3Bucket": BUCKET,
        "s3Prefix": prefix,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{base}/manifest-files.json",
        "billedSizeBytes": 1234,
        "itemCount": len(records),
        "outputFormat": "DYNAMODB_JSON",
        "outputView": "NEW_AND_OLD_IMAGES",
        "exportType": "INCREMENTAL_EXPORT",
    }
    s3.put_object(Bucket=BUCKET, Key=f"{base}/manifest-summary.json", Body=json.dumps(summary).encode())
    return export_id


def _record(key_item, new=None, old=None, micros=0):
    record = {
        "Metadata": {"WriteTimestampMicros": {"N": str(micros)}},
        "Keys": {"User": key_item["User"], "Book": key_item["Book"]},
    }
    if new is not None:
        record["NewImage"] = new
    if old is not None:
        record["OldImage"] = old
    return record


def _json_image(item):
    """A low-level item as an export line carries it (binary values as base64)."""
    return json.loads(json.dumps(item, default=lambda b: base64.b64encode(b).decode()))


def test_day1_full_plus_day2_incremental_equals_full_export_of_day2(aws):
    ddb = aws.client("dynamodb")
    s3 = aws.client("s3")
    exporter = aws.client("dynamodb")  # the client the export engine gets: every call it makes is recorded
    operations = record_operations(exporter)

    create_reviews_table(ddb, "Reviews")
    day1_items = generate_reviews(300, seed=21)
    put_items(ddb, "Reviews", day1_items)
    earliest = enable_pitr(ddb, "Reviews")
    spec = make_spec(export_method="incremental")
    p1, p2 = day_after(earliest, 1), day_after(earliest, 2)
    t1, t2 = spec.export_time(p1), spec.export_time(p2)

    day1 = export_partition(spec, p1, dynamodb=exporter, s3=s3, now=t1 + dt.timedelta(hours=1), poll_seconds=0.1)
    assert (
        day1.method == "incremental"
        and "no complete full export of the previous partition" in day1.facts["full_export_reason"]
    )
    assert day1.manifest.item_count == len(day1_items)

    # Day 2 in the table: updates, deletes, inserts, an item inserted and deleted within the day.
    before = {_key(i): i for i in (to_low_level(x) for x in day1_items)}
    keys = sorted(before)
    micros = int(t1.timestamp() * 1_000_000)
    records = []
    for n, key in enumerate(keys[:20]):  # updated: rating changed, an attribute added, one removed
        new = dict(before[key], Rating={"N": str(10 + n)}, Edited={"BOOL": True})
        new.pop("ReviewText", None)
        ddb.put_item(TableName="Reviews", Item=new)
        records.append(_record(new, new=_json_image(new), old=_json_image(before[key]), micros=micros + n))
    for n, key in enumerate(keys[20:35]):  # deleted
        ddb.delete_item(TableName="Reviews", Key={"User": before[key]["User"], "Book": before[key]["Book"]})
        records.append(_record(before[key], old=_json_image(before[key]), micros=micros + 100 + n))
    inserted = [to_low_level(i) for i in generate_reviews(25, seed=99)[2:]]
    for n, item in enumerate(inserted):
        item["User"] = {"S": f"new-{n:03d}"}
        ddb.put_item(TableName="Reviews", Item=item)
        records.append(_record(item, new=_json_image(item), micros=micros + 200 + n))
    twice = keys[40]  # updated twice: the records arrive out of order, the later write wins
    first = dict(before[twice], Rating={"N": "1"})
    last = dict(before[twice], Rating={"N": "2"}, Note={"S": "second edit"})
    ddb.put_item(TableName="Reviews", Item=last)
    records.append(_record(last, new=_json_image(last), old=_json_image(first), micros=micros + 301))
    records.append(_record(first, new=_json_image(first), old=_json_image(before[twice]), micros=micros + 300))
    ddb.update_item(  # an UpdateItem, not a put: the image is what DynamoDB holds afterwards
        TableName="Reviews",
        Key={"User": before[keys[41]]["User"], "Book": before[keys[41]]["Book"]},
        UpdateExpression="SET Shelf = :s REMOVE Author",
        ExpressionAttributeValues={":s": {"S": "top"}},
    )
    updated = {k: v for k, v in before[keys[41]].items() if k != "Author"} | {"Shelf": {"S": "top"}}
    records.append(_record(updated, new=_json_image(updated), old=_json_image(before[keys[41]]), micros=micros + 400))
    table_arn = ddb.describe_table(TableName="Reviews")["Table"]["TableArn"]
    write_incremental_export(
        s3, prefix=incremental_export_prefix(spec, p2), records=records, from_time=t1, to_time=t2, table_arn=table_arn
    )

    day2 = export_partition(spec, p2, dynamodb=exporter, s3=s3, now=t2 + dt.timedelta(hours=1), poll_seconds=0.1)

    reference_spec = make_spec(export_method="native", catalog_table="reviews_reference")
    reference = export_partition(
        reference_spec, p2, dynamodb=exporter, s3=s3, now=t2 + dt.timedelta(hours=1), poll_seconds=0.1
    )
    built, truth = export_items(s3, day2.manifest), export_items(s3, reference.manifest)
    assert len(built) == len(truth) == 302 - 15 + 25  # generate_reviews adds the blog's two items
    assert canonical(built) == canonical(truth)  # same rows, same values
    assert day2.method == "incremental" and day2.facts["incremental_export_reused"] is True
    assert day2.facts["base_export_id"] == day1.manifest.export_id
    assert (day2.facts["items_updated"], day2.facts["items_deleted"], day2.facts["items_inserted"]) == (22, 15, 25)
    assert day2.facts["items_unchanged"] == 302 - 22 - 15 and day2.facts["deletes_of_absent_items"] == 0
    assert day2.manifest.export_type == "FULL_EXPORT" and day2.manifest.export_time == utc_iso(t2)
    assert day2.manifest.summary["baseExportId"] == day1.manifest.export_id
    assert list_export_ids(s3, bucket=BUCKET, export_prefix=spec.export_prefix(p2)) == [day2.manifest.export_id]
    assert not READ_OPERATIONS & set(operations), operations  # no Scan, Query, GetItem...


def test_incremental_request_on_the_emulator_uses_its_full_dump(aws):
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    operations = record_operations(ddb)

    create_reviews_table(ddb, "Reviews")
    put_items(ddb, "Reviews", generate_reviews(120, seed=4))
    earliest = enable_pitr(ddb, "Reviews")
    spec = make_spec(export_method="incremental")
    p1, p2 = day_after(earliest, 1), day_after(earliest, 2)
    export_partition(spec, p1, dynamodb=ddb, s3=s3, now=spec.export_time(p1) + dt.timedelta(hours=1), poll_seconds=0.1)
    ddb.delete_item(TableName="Reviews", Key={"User": {"S": "Bob"}, "Book": {"S": "The Hobbit"}})

    day2 = export_partition(
        spec, p2, dynamodb=ddb, s3=s3, now=spec.export_time(p2) + dt.timedelta(hours=1), poll_seconds=0.1
    )

    assert day2.facts["incremental_export_reused"] is False and "ExportTableToPointInTime" in operations
    assert day2.manifest.summary["incrementalWasFullDump"] is True
    assert day2.manifest.item_count == 121 and ("Bob", "The Hobbit") not in {
        _key(i) for i in export_items(s3, day2.manifest)
    }
    increment_prefix = incremental_export_prefix(spec, p2)
    [increment_id] = list_export_ids(s3, bucket=BUCKET, export_prefix=increment_prefix)
    increment = read_export_manifest(s3, bucket=BUCKET, export_prefix=increment_prefix, export_id=increment_id)
    assert increment.export_type == "INCREMENTAL_EXPORT" and increment.summary["exportToTime"] == utc_iso(
        spec.export_time(p2)
    )
    assert not READ_OPERATIONS & set(operations), operations


def test_bad_lines_are_reported_with_file_and_line(aws):
    s3 = aws.client("s3")
    ensure_bucket(s3, BUCKET)
    t1 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(days=1)
    item = {"User": {"S": "u"}, "Book": {"S": "b"}}
    base_id = write_incremental_export(
        s3, prefix="bad/base", records=[{"Item": item}, {"Item": item}], from_time=t1, to_time=t1, table_arn="arn"
    )
    base = read_export_manifest(s3, bucket=BUCKET, export_prefix="bad/base", export_id=base_id)
    mixed_id = write_incremental_export(
        s3,
        prefix="bad/mixed",
        records=[_record(item, new=item), {"Item": item}],
        from_time=t1,
        to_time=t2,
        table_arn="arn",
    )
    mixed = read_export_manifest(s3, bucket=BUCKET, export_prefix="bad/mixed", export_id=mixed_id)
    with pytest.raises(ExportFailedError, match="mixes full-export lines"):
        apply_incremental_export(
            s3,
            base=base,
            incremental=mixed,
            key_names=("User", "Book"),
            bucket=BUCKET,
            export_prefix="bad/out",
            export_time=utc_iso(t2),
            table_arn=None,
        )
    keyless_id = write_incremental_export(
        s3,
        prefix="bad/keyless",
        records=[_record(item, new=item), {"Keys": {"User": {"S": "u"}}, "NewImage": {"User": {"S": "u"}}}],
        from_time=t1,
        to_time=t2,
        table_arn="arn",
    )
    keyless = read_export_manifest(s3, bucket=BUCKET, export_prefix="bad/keyless", export_id=keyless_id)
    with pytest.raises(ExportFailedError, match=r"\.json\.gz line 1: item has no key attribute 'Book'"):
        apply_incremental_export(
            s3,
            base=base,
            incremental=keyless,
            key_names=("User", "Book"),
            bucket=BUCKET,
            export_prefix="bad/out",
            export_time=utc_iso(t2),
            table_arn=None,
        )
    # A key twice in one object (DynamoDB never writes it; a JSON parser would keep the last silently).
    dup_id = write_incremental_export(
        s3, prefix="bad/dup", records=[_record(item, new=item)] * 2, from_time=t1, to_time=t2, table_arn="arn"
    )
    dup = read_export_manifest(s3, bucket=BUCKET, export_prefix="bad/dup", export_id=dup_id)
    line = '{"Keys": {"User": {"S": "u"}, "Book": {"S": "b"}}, "NewImage": {"User": {"S": "u"}, "Book": {"S": "b"}, "Book": {"S": "c"}}}'
    s3.put_object(Bucket=BUCKET, Key=dup.data_files[0].key, Body=gzip.compress((line + "\n").encode()))
    with pytest.raises(ExportFailedError, match=r"\.json\.gz line 1: .*'Book'"):
        apply_incremental_export(
            s3,
            base=base,
            incremental=dup,
            key_names=("User", "Book"),
            bucket=BUCKET,
            export_prefix="bad/out",
            export_time=utc_iso(t2),
            table_arn=None,
        )
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="bad/out/").get("Contents")  # nothing written


def test_incremental_past_its_timeout_publishes_nothing(aws):
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    create_reviews_table(ddb, "Reviews")
    put_items(ddb, "Reviews", generate_reviews(50, seed=2))
    earliest = enable_pitr(ddb, "Reviews")
    spec = make_spec(export_method="incremental")
    p1, p2 = day_after(earliest, 1), day_after(earliest, 2)
    export_partition(spec, p1, dynamodb=ddb, s3=s3, now=spec.export_time(p1) + dt.timedelta(hours=1), poll_seconds=0.1)

    hasty = make_spec(export_method="incremental", export_timeout_minutes=1e-6)
    with pytest.raises(
        ExportTimeoutError, match="incremental export of DynamoDB table 'Reviews', partition .* nothing was published"
    ):
        export_partition(
            hasty, p2, dynamodb=ddb, s3=s3, now=spec.export_time(p2) + dt.timedelta(hours=1), poll_seconds=0.1
        )

    assert latest_completed_export(s3, bucket=BUCKET, export_prefix=spec.export_prefix(p2)) is None
    assert latest_completed_export(s3, bucket=BUCKET, export_prefix=spec.export_prefix(p1)).item_count == 52
