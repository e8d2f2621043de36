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


def test_put_update_delete_reach_the_iceberg_table_exactly_once(aws):
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
    settings = CaptureSettings("Reviews", KEYS, overlap=dt.timedelta(minutes=5))
    # Bootstrap: the table's snapshot at T (here a scan), committed with its start position.
    snapshot_time = dt.datetime.now(dt.UTC)
    initial = convert_images(_scan(ddb), None)
    aws.client("s3").create_bucket(Bucket=TEST_BUCKET)
    catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"})
    where = IcebergLocation("dynamodb-exports", "reviews", f"s3://{TEST_BUCKET}/dynamodb-offload/iceberg/reviews")
    table = create_table(catalog, where, initial.schema, KEYS)
    apply_changes(table, upserts=initial, summary=bootstrap_properties(source, settings, snapshot_time))
    target = IcebergTarget(table)

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
