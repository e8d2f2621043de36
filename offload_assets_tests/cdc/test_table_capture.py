"""A tables-file table's change capture on the emulator: bootstrap from a native export, racing committers, status."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from offload_assets.aws.s3_writes import s3_put_kwargs
from offload_assets.cdc.catch_up import FullSnapshot
from offload_assets.cdc.changes import convert_images
from offload_assets.cdc.iceberg_target import IcebergTarget
from offload_assets.cdc.table_capture import (
    ChangeCaptureRefused,
    capture_status,
    iceberg_location,
    open_table_capture,
    run_table_capture,
)
from offload_assets.iceberg import apply_changes
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.table_spec import parse_tables
from offload_assets_tests.conftest import TEST_BUCKET

KEYS = ("user_id", "review_id")


def capture_spec(**overrides):
    entry = {
        "dynamodb_table": "Reviews",
        "s3_bucket": TEST_BUCKET,
        "catalog_database": "dynamodb-exports",
        "table_format": "iceberg",
        "change_capture": "streams",
        "export_method": "native",
        **overrides,
    }
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def create_reviews(aws, *, stream: dict | None, items: int = 20) -> object:
    ddb = aws.client("dynamodb")
    extra = {"StreamSpecification": stream} if stream else {}
    ddb.create_table(
        TableName="Reviews",
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}, {"AttributeName": "review_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "review_id", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    for i in range(items):
        ddb.put_item(
            TableName="Reviews", Item={"user_id": {"S": f"u{i}"}, "review_id": {"N": "1"}, "rating": {"N": "3"}}
        )
    aws.client("s3").create_bucket(Bucket=TEST_BUCKET)
    backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=1, region=aws.region_name)
    return ddb


STREAM_ON = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def open_capture(aws, spec):
    return open_table_capture(
        spec,
        dynamodb=aws.client("dynamodb"),
        streams=aws.client("dynamodbstreams"),
        s3=aws.client("s3"),
        catalog=connect_catalog(aws, s3_put_kwargs(spec)),
    )


def scan_rows(ddb, schema) -> list[dict]:
    items, kwargs = [], {"TableName": "Reviews"}
    while True:
        page = ddb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return rows(convert_images(items, schema))


def rows(table: pa.Table) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if v is not None} for r in table.to_pylist()), key=repr)


def test_a_stream_that_is_off_or_keys_only_is_refused_with_the_command_to_fix_it(aws):
    create_reviews(aws, stream=None, items=1)
    with pytest.raises(ChangeCaptureRefused, match="stream is off.*update-table --table-name Reviews"):
        open_capture(aws, capture_spec())
    aws.client("dynamodb").update_table(
        TableName="Reviews", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    )
    with pytest.raises(ChangeCaptureRefused, match="KEYS_ONLY, which lacks the item after the write"):
        open_capture(aws, capture_spec())


def test_the_first_run_creates_the_iceberg_table_from_a_native_export_and_applies_the_stream(aws):
    ddb = create_reviews(aws, stream=STREAM_ON)
    spec = capture_spec()
    capture = open_capture(aws, spec)
    assert capture_status(capture)["state"] == "not bootstrapped"
    run = run_table_capture(capture)
    assert [r.reason for r in run.rebootstraps] == ["bootstrap"] and "native export" in run.rebootstraps[0].origin
    table = capture.target.table
    assert rows(table.scan().to_arrow()) == scan_rows(ddb, capture.target.arrow_schema())
    ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "new"}, "review_id": {"N": "7"}, "rating": {"N": "5"}})
    ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": "u3"}, "review_id": {"N": "1"}})
    status = capture_status(open_capture(aws, spec))
    assert status["state"] == "changes waiting" and status["position"]["stream_arn"].startswith("arn:aws:dynamodb")
    run = run_table_capture(open_capture(aws, spec))
    assert not run.rebootstraps and run.facts()["inserts"] == 1 and run.facts()["deletes"] == 1
    table.refresh()
    assert rows(table.scan().to_arrow()) == scan_rows(ddb, capture.target.arrow_schema())
    assert table.scan().to_arrow().num_rows == 20
    after = capture_status(open_capture(aws, spec))
    assert after["state"] == "caught up" and after["lag_seconds"] == 0.0 and after["last_commit"]["inserts"] == "1"
    # A re-bootstrap diffs the new export against the table: only what differs is written.
    ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": "u0"}, "review_id": {"N": "1"}})
    snapshot = capture.take_snapshot()
    assert isinstance(snapshot, FullSnapshot) and len(snapshot.items) == 19
    counts = capture.target.load_full_export(
        snapshot.items, {"offload.cdc.snapshot_time": snapshot.taken_at.isoformat()}
    )
    assert (counts["deleted"], counts["inserted"], counts["updated"], counts["unchanged"]) == (1, 0, 0, 19)
    table.refresh()
    assert rows(table.scan().to_arrow()) == scan_rows(ddb, capture.target.arrow_schema())


def test_two_committers_racing_on_one_table_lose_nothing(aws):
    """The nightly path commits through a fresh table object while capture holds a stale one.

    moto ignores Glue's VersionId, so the conflict comes from pyiceberg's own commit requirements
    (the branch's snapshot changed): CommitFailedException, retried from the new current snapshot.
    """
    ddb = create_reviews(aws, stream=STREAM_ON)
    spec = capture_spec()
    capture = open_capture(aws, spec)
    run_table_capture(capture)  # bootstrap
    stale = capture.target.table
    catalog = connect_catalog(aws, s3_put_kwargs(spec))
    nightly = load_table(catalog, iceberg_location(spec))
    ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "cdc"}, "review_id": {"N": "1"}, "rating": {"N": "4"}})
    nightly_row = convert_images(
        [{"user_id": {"S": "nightly"}, "review_id": {"N": "1"}, "rating": {"N": "2"}}], capture.target.arrow_schema()
    )
    raced = []

    def nightly_commits_first(_read) -> None:
        """Between capture's read and its commit: the nightly partition commits through another table object."""
        if not raced:
            raced.append(
                apply_changes(nightly, upserts=nightly_row, summary={"offload-assets.partition": "2026-12-03"})
            )

    run = run_table_capture(capture, before_commit=nightly_commits_first)
    assert raced and stale is capture.target.table
    assert run.conflicts_retried >= 1, "the stale table object must have lost the race once"
    nightly.refresh()
    users = set(nightly.scan().to_arrow().column("user_id").to_pylist())
    assert {"cdc", "nightly"} <= users  # both committers' rows are there
    summaries = IcebergTarget(nightly).summaries()
    assert any(s.get("offload-assets.partition") == "2026-12-03" for s in summaries)
    assert summaries[0].get("offload.cdc.records") == "1"
