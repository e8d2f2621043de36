"""A publish that fails is retried (boto3's retries), and if it still fails it shows on the run while the data
path succeeds; nothing is marked as sent, so a later publish of the same event still goes out, once.

SNS errors are injected with a botocore ``before-send`` hook on a real client of the emulator (the
same technique as offload_assets_tests/reliability/test_fault_injection.py): the request is answered
with a 503 instead of being sent, and boto3's standard retry mode does the rest.
"""

from __future__ import annotations

import dataclasses
import json

import dagster as dg

from offload_assets.catalog.glue_tables import list_partitions
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.deploy.notifications import SNAPSHOT_PUBLISHED, Notification, marker_prefix, send_notification
from offload_assets.local.demo_data import seed_reviews
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.reliability.test_fault_injection import Storm

ATTEMPTS = 3  # botocore reads retries["max_attempts"] as retries: the first try plus three


def _unavailable(count: int) -> Storm:
    body = b"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>injected</Message></Error></ErrorResponse>"
    return Storm(count, 503, body, {"Content-Type": "text/xml"})


def _queue_on_topic(aws, topic_arn: str) -> str:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="downstream")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


def _received(aws, url: str) -> list[dict]:
    sqs, out = aws.client("sqs"), []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
        out += [json.loads(m["Body"]) for m in got]
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def _markers(aws, spec) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=spec.s3_bucket, Prefix=marker_prefix(spec) + "/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_failed_publish_is_retried_then_reported_and_sent_once_later(tmp_path, aws):
    topic = aws.client("sns").create_topic(Name="exports")["TopicArn"]
    url = _queue_on_topic(aws, topic)
    spec = load_tables_file(
        write_tables_file(tmp_path / "t.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "notify-lake"})
    ).tables[0]
    aws.client("s3").create_bucket(Bucket=spec.s3_bucket)
    s3 = aws.client("s3")
    retrying = dataclasses.replace(aws, max_attempts=ATTEMPTS)
    event = Notification(
        event=SNAPSHOT_PUBLISHED,
        status="succeeded",
        spec=spec,
        partition="2026-12-01",
        identity="s3://notify-lake/run-1/",
        snapshot_location="s3://notify-lake/run-1/",
        row_count=5,
    )

    # Two 503s, then SNS answers: retried, sent once.
    sns, storm = retrying.client("sns"), _unavailable(2)
    sns.meta.events.register_first("before-send.sns.Publish", storm)
    sent = send_notification(sns, s3, event, topic_arn=topic)
    assert (sent.status, storm.injected) == ("sent", 2)
    assert [b["event_id"] for b in _received(aws, url)] == [event.event_id]

    # SNS keeps failing: every attempt is made, the outcome says why, nothing is marked as sent.
    later = dataclasses.replace(event, partition="2026-12-02")
    sns, storm = retrying.client("sns"), _unavailable(100)
    sns.meta.events.register_first("before-send.sns.Publish", storm)
    failed = send_notification(sns, s3, later, topic_arn=topic)
    assert failed.status == "failed" and "ServiceUnavailable" in failed.error and storm.injected == 1 + ATTEMPTS
    assert _received(aws, url) == []
    assert len(_markers(aws, spec)) == 1  # only the first event's
    # Once SNS is back, the same event goes out, exactly once, however often it is sent again.
    outcomes = [send_notification(retrying.client("sns"), s3, later, topic_arn=topic).status for _ in range(2)]
    assert outcomes == ["sent", "duplicate"]
    assert [b["partition"] for b in _received(aws, url)] == ["2026-12-02"]


def test_a_run_whose_notifications_fail_still_publishes_the_snapshot(tmp_path, emulator, aws):
    missing_topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Reviews", "s3_bucket": "notify-run-lake", "notification_topic_arn": missing_topic},
    )
    spec = load_tables_file(tables).tables[0]
    items = len(seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=30))
    defs = build_definitions(tables, target="local", endpoint_url=emulator.endpoint_url)
    today = partitions_for(spec).get_last_partition_key()
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("reviews_offload_job").execute_in_process(partition_key=today, instance=instance)
    assert result.success
    metadata = {
        m.step_materialization_data.materialization.asset_key: m.step_materialization_data.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    keys = asset_keys(spec)
    for key in (keys["export"], keys["catalog"]):
        assert metadata[key]["notification"].value.startswith("failed: "), metadata[key]["notification"]
        assert "NotFound" in metadata[key]["notification"].value
    # The warning is on the run, in its log.
    records = instance.all_logs(result.run_id)
    assert any(r.level >= 30 and "notification" in r.user_message and "was not sent" in r.user_message for r in records)
    # The data path went on: the partition is registered and holds every item.
    [partition] = list_partitions(aws.client("glue"), database=spec.catalog_database, table=spec.catalog_table)
    assert partition.value == today and metadata[keys["catalog"]]["dagster/row_count"].value == items
    assert _markers(aws, spec) == []
