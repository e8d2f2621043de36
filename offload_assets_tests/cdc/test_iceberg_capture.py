"""Change capture end to end on the emulator: moto's DynamoDB Streams -> the Iceberg table (issue 17's API)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from offload_assets.cdc.capture import CaptureSettings, bootstrap_properties, capture_step
from offload_assets.cdc.changes import convert_images
from offload_assets.cdc.iceberg_target import IcebergTarget
from offload_assets.cdc.source import Boto3StreamSource
from offload_assets.iceberg import apply_changes, current_summary
from offload_assets.iceberg.catalog import IcebergLocation, connect_catalog, create_table
from offload_assets_tests.conftest import TEST_BUCKET

KEYS = ("user_id", "review_id")


def _scan(ddb) -> list[dict]:
    items, kwargs = [], {"TableName": "Reviews"}
    while True:
        page = ddb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _rows(table: pa.Table) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if v is not None} for r in table.to_pylist()), key=repr)


def _reviews_with_stream_and_iceberg(aws, settings):
    """Reviews (30 items, stream on) and its Iceberg table bootstrapped from a scan at T."""
    ddb = aws.client("dynamodb")
    ddb.create_table(
        TableName="Reviews",
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}, {"AttributeName": "review_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "review_id", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for i in range(30):
        ddb.put_item(
            TableName="Reviews", Item={"user_id": {"S": f"u{i}"}, "review_id": {"N": "1"}, "rating": {"N": "3"}}
        )
    source = Boto3StreamSource(aws.client("dynamodbstreams"))
    # Bootstrap: the table's snapshot at T (here a scan), committed with its start position.
    snapshot_time = dt.datetime.now(dt.UTC)
    initial = convert_images(_scan(ddb), None)
    aws.client("s3").create_bucket(Bucket=TEST_BUCKET)
    catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"})
    where = IcebergLocation("dynamodb-exports", "reviews", f"s3://{TEST_BUCKET}/dynamodb-offload/iceberg/reviews")
    table = create_table(catalog, where, initial.schema, KEYS)
    apply_changes(table, upserts=initial, summary=bootstrap_properties(source, settings, snapshot_time))
    return ddb, source, table, IcebergTarget(table)


def test_put_update_delete_reach_the_iceberg_table_exactly_once(aws):
    settings = CaptureSettings("Reviews", KEYS, overlap=dt.timedelta(minutes=5))
    ddb, source, table, target = _reviews_with_stream_and_iceberg(aws, settings)
    ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "new"}, "review_id": {"N": "1"}, "rating": {"N": "5"}})
    ddb.update_item(
        TableName="Reviews",
        Key={"user_id": {"S": "u1"}, "review_id": {"N": "1"}},
        UpdateExpression="SET rating = :r",
        ExpressionAttributeValues={":r": {"N": "1"}},
    )
    ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": "u2"}, "review_id": {"N": "1"}})
    step = capture_step(source, target, settings)
    assert step.read.caught_up and step.facts()["deletes"] == 1
    assert _rows(table.scan().to_arrow()) == _rows(convert_images(_scan(ddb), target.arrow_schema()))
    assert table.scan().to_arrow().num_rows == 30
    assert '"shards"' in current_summary(table)["offload.cdc.position"]
    # Nothing new: no second snapshot, nothing applied twice.
    snapshots = len(table.snapshots())
    assert not capture_step(source, target, settings).committed
    assert len(table.snapshots()) == snapshots


_KILLED_RUN = """
import os, signal, sys
from offload_assets.aws.connection import resolve_connection
from offload_assets.cdc.capture import CaptureSettings, capture_step
from offload_assets.cdc.iceberg_target import IcebergTarget
from offload_assets.cdc.source import Boto3StreamSource
from offload_assets.iceberg.catalog import IcebergLocation, connect_catalog, load_table
aws = resolve_connection(target="local", endpoint_url=sys.argv[1])
where = IcebergLocation("dynamodb-exports", "reviews", "unused")
table = load_table(connect_catalog(aws, {"ServerSideEncryption": "AES256"}), where)
settings = CaptureSettings("Reviews", ("user_id", "review_id"), max_records=int(sys.argv[2]), page_limit=int(sys.argv[2]))
capture_step(Boto3StreamSource(aws.client("dynamodbstreams")), IcebergTarget(table), settings,
             before_commit=lambda read: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_sigkill_between_read_and_commit_then_rerun_applies_every_change_once(aws, emulator):
    import signal
    import subprocess
    import sys

    settings = CaptureSettings("Reviews", KEYS, max_records=20, page_limit=20)
    ddb, source, table, target = _reviews_with_stream_and_iceberg(aws, settings)
    for rating in range(1, 6):  # the same key again and again: it spans consecutive batches
        ddb.put_item(
            TableName="Reviews", Item={"user_id": {"S": "u1"}, "review_id": {"N": "1"}, "rating": {"N": str(rating)}}
        )
        ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": f"u{rating + 10}"}, "review_id": {"N": "1"}})
    capture_step(source, target, settings)  # first batch of 20 committed
    before = len(table.snapshots())
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, emulator.endpoint_url, "20"], check=False)
    assert killed.returncode == -signal.SIGKILL
    table.refresh()
    assert len(table.snapshots()) == before  # nothing committed by the killed run
    while not capture_step(source, target, settings).read.caught_up:
        pass
    assert _rows(table.scan().to_arrow()) == _rows(convert_images(_scan(ddb), target.arrow_schema()))
    committed = sum(int(s.get("offload.cdc.records", 0)) for s in target.summaries())
    assert committed == 40  # 30 overlap puts + 10 changes, each in exactly one committed snapshot
