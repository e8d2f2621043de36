"""Throttling and S3 5xx storms, injected with botocore event hooks, are retried with bounded backoff."""

import time

import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse

from offload_assets.export.layout import latest_completed_export, list_export_ids
from offload_assets.export.scan import export_table_scan
from offload_assets_tests.conftest import seed_reviews_table

BUCKET = "fault-bucket"


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


class Storm:
    """Answers the first ``count`` matching requests with an error instead of sending them."""

    def __init__(self, count: int, status: int, body: bytes, headers: dict) -> None:
        self.remaining, self.status, self.body, self.headers = count, status, body, headers
        self.injected = 0

    def __call__(self, request, **_):
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        self.injected += 1
        return AWSResponse(request.url, self.status, self.headers, _Body(self.body))


def throttling(count):
    body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate exceeded"}'
    return Storm(
        count,
        400,
        body,
        {"x-amzn-ErrorType": "ProvisionedThroughputExceededException", "Content-Type": "application/x-amz-json-1.0"},
    )


def slow_down(count, status=503, code="SlowDown"):
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
    return Storm(count, status, body, {"Content-Type": "application/xml"})


@pytest.fixture()
def table(aws):
    _, _, items = seed_reviews_table(aws, "Faulty", 300, seed=3, bucket=BUCKET)
    return {(i["User"], i["Book"]) for i in items}


def _keys_in(aws, manifest):
    import gzip
    import json

    s3 = aws.client("s3")
    keys = []
    for f in manifest.data_files:
        for line in gzip.decompress(s3.get_object(Bucket=BUCKET, Key=f.key)["Body"].read()).splitlines():
            item = json.loads(line)["Item"]
            keys.append((item["User"]["S"], item["Book"]["S"]))
    return keys


def test_throttling_and_s3_slowdowns_are_retried(aws, table):
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    throttle, slowdown = throttling(3), slow_down(3)
    ddb.meta.events.register_first("before-send.dynamodb.Scan", throttle)
    s3.meta.events.register_first("before-send.s3.PutObject", slowdown)
    started = time.monotonic()
    result = export_table_scan(
        ddb, s3, table_name="Faulty", bucket=BUCKET, export_prefix="storm", total_segments=2, page_limit=100
    )
    assert throttle.injected == 3 and slowdown.injected == 3
    assert time.monotonic() - started < 60  # bounded backoff
    keys = _keys_in(aws, result.manifest)
    assert sorted(keys) == sorted(table)  # every item exactly once


def test_a_storm_longer_than_the_retry_budget_fails_and_publishes_nothing(aws, table):
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    s3.meta.events.register_first("before-send.s3.PutObject", slow_down(10_000, status=500, code="InternalError"))
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ClientError, match="InternalError|max retries"):
        export_table_scan(
            ddb, s3, table_name="Faulty", bucket=BUCKET, export_prefix="outage", total_segments=1, resume=False
        )
    assert time.monotonic() - started < 180
    assert latest_completed_export(aws.client("s3"), bucket=BUCKET, export_prefix="outage") is None
    assert all(
        "manifest-summary.json" not in o["Key"]
        for o in aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="outage/").get("Contents", [])
    )
    # The retry after the outage produces the complete export, exactly once.
    result = export_table_scan(
        aws.client("dynamodb"),
        aws.client("s3"),
        table_name="Faulty",
        bucket=BUCKET,
        export_prefix="outage",
        total_segments=1,
    )
    assert sorted(_keys_in(aws, result.manifest)) == sorted(table)
    assert len(list_export_ids(aws.client("s3"), bucket=BUCKET, export_prefix="outage")) >= 1
