"""Sensors on exports made outside Dagster: one run per export, asset events with the export's facts."""

import datetime as dt
import json

import dagster as dg

from offload_assets.defs.sensors import EXPORT_ID_TAG
from offload_assets.export.discovery import ExportCursor
from offload_assets.export.layout import list_export_ids
from offload_assets.sql.query import run_query
from offload_assets_tests.defs.conftest import Project, check_results, drop_export, reviews
from offload_assets_tests.export.dynamodb_layout import write_native_export

COUNT_SQL = 'SELECT count(*) FROM "dynamodb-exports"."reviews" WHERE ddb_export_timestamp = \'{}\''


def test_export_sensor_records_the_export_and_converts_it_once(project: Project, aws):
    items = reviews(150)
    project.seed(items)
    s3 = aws.client("s3")
    export_id = drop_export(
        s3, bucket=project.spec.s3_bucket, prefix=project.spec.export_prefix_root, items=items, files=2
    )

    first = project.tick("export_sensor")
    assert [(r.run_key, r.partition_key, r.tags[EXPORT_ID_TAG]) for r in first.run_requests] == [
        (export_id, project.today, export_id)
    ]
    [event] = first.asset_events
    assert event.asset_key == project.keys["export"] and event.partition == project.today
    facts = {k: v.value for k, v in event.metadata.items()}
    assert facts["dagster/row_count"] == 150 and facts["export_id"] == export_id and facts["files"] == 2
    assert facts["export_method"] == "external" and facts["bytes"] > 0 and facts["billed_size_bytes"] == 1234
    assert (
        facts["s3_uri"]
        == f"s3://{project.spec.s3_bucket}/{project.spec.export_prefix(project.today)}/AWSDynamoDB/{export_id}/"
    )
    assert json.loads(first.cursor)["seen"].keys() == {export_id}

    # A repeated tick (same cursor) finds nothing new and requests nothing.
    again = project.tick("export_sensor", cursor=first.cursor)
    assert not again.run_requests and not again.asset_events and again.skip_reason

    [run] = project.launch(first)
    assert run.success
    assert all(c.passed for c in check_results(run).values()), {k: c.description for k, c in check_results(run).items()}
    assert run_query(COUNT_SQL.format(project.today), connection=aws).scalar() == 150

    # Even with its cursor lost, the sensor recognises the export as handled (run tag, recorded id).
    lost = project.tick("export_sensor", cursor=None)
    assert not lost.run_requests and not lost.asset_events
    assert export_id in json.loads(lost.cursor)["seen"]


def test_half_written_export_waits_and_dagsters_own_exports_are_left_alone(project: Project, aws):
    project.seed(reviews(40))
    s3 = aws.client("s3")
    # Tonight's export made by Dagster itself (the schedule's job).
    assert project.export_only(project.today).success
    own_id = list_export_ids(
        s3, bucket=project.spec.s3_bucket, export_prefix=project.spec.export_prefix(project.today)
    )[0]
    # And an export still being written elsewhere: data files, no summary yet.
    pending = drop_export(
        s3, bucket=project.spec.s3_bucket, prefix=project.spec.export_prefix_root, items=reviews(40), complete=False
    )

    tick = project.tick("export_sensor")
    assert not tick.run_requests and not tick.asset_events
    assert own_id in json.loads(tick.cursor)["seen"] and pending not in json.loads(tick.cursor)["seen"]
    assert list_export_ids(
        s3, bucket=project.spec.s3_bucket, export_prefix=project.spec.export_prefix(project.today)
    ) == [own_id]

    drop_export(
        s3, bucket=project.spec.s3_bucket, prefix=project.spec.export_prefix_root, items=reviews(40), export_id=pending
    )
    later = project.tick("export_sensor", cursor=tick.cursor)
    assert [r.run_key for r in later.run_requests] == [pending]
    # Adopting it replaced the partition's earlier export, as re-running the export would.
    assert list_export_ids(
        s3, bucket=project.spec.s3_bucket, export_prefix=project.spec.export_prefix(project.today)
    ) == [pending]


def test_exports_for_past_days_land_in_their_own_partitions(tmp_path, emulator, aws):
    project = Project(tmp_path, emulator, aws, external_export_prefixes=["s3://backup-bucket/reviews"])
    project.seed(reviews(30))
    s3 = aws.client("s3")
    today = dt.date.fromisoformat(project.today)
    ids = {}
    for days_back in (1, 2):
        day = today - dt.timedelta(days=days_back)
        at = dt.datetime.combine(day, dt.time(0, 12), tzinfo=dt.UTC)
        ids[day.isoformat()] = drop_export(
            s3, bucket="backup-bucket", prefix="reviews", items=reviews(30 + days_back), export_time=at
        )
    tick = project.tick("export_sensor")
    assert {r.partition_key: r.run_key for r in tick.run_requests} == ids
    runs = project.launch(tick)
    assert all(r.success for r in runs)
    for partition, _ in ids.items():
        days_back = (today - dt.date.fromisoformat(partition)).days
        assert run_query(COUNT_SQL.format(partition), connection=aws).scalar() == 30 + days_back
    assert sorted(list_export_ids(s3, bucket="backup-bucket", export_prefix="reviews")) == sorted(
        ids.values()
    )  # originals kept


def _queue_with_topic(aws):
    sqs, sns = aws.client("sqs"), aws.client("sns")
    queue_url = sqs.create_queue(QueueName="reviews-exports")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic_arn = sns.create_topic(Name="dynamodb-export-finished")["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return sqs, sns, queue_url, topic_arn


def _queue_depth(sqs, queue_url) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_notification_sensor_converts_what_the_sns_message_names(tmp_path, emulator, aws):
    sqs, sns, queue_url, topic_arn = _queue_with_topic(aws)
    project = Project(tmp_path, emulator, aws, notification_queue_url=queue_url)
    project.seed(reviews(60))
    s3 = aws.client("s3")
    # An export somewhere no sensor watches; the blog's pipeline announces it on SNS.
    export_id = drop_export(s3, bucket="team-exports", prefix="nightly/Reviews", items=reviews(60))
    description = {
        "ExportDescription": {
            "ExportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/Reviews/export/{export_id}",
            "ExportStatus": "COMPLETED",
            "S3Bucket": "team-exports",
            "S3Prefix": "nightly/Reviews",
            "TableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Reviews",
        }
    }
    sns.publish(TopicArn=topic_arn, Message=json.dumps(description), Subject="DynamoDB export finished")
    # A message about an export that is not complete yet stays on the queue.
    pending = drop_export(s3, bucket="team-exports", prefix="nightly/Reviews", items=reviews(5), complete=False)
    sns.publish(
        TopicArn=topic_arn, Message=f"export finished: s3://team-exports/nightly/Reviews/AWSDynamoDB/{pending}/"
    )

    tick = project.tick("export_notifications")
    assert [(r.run_key, r.partition_key) for r in tick.run_requests] == [(export_id, project.today)]
    assert tick.asset_events[0].metadata["found_at"].value.startswith("s3://team-exports/nightly/Reviews/")
    assert _queue_depth(sqs, queue_url) == (0, 1)  # handled message deleted; the pending one is in flight

    [run] = project.launch(tick)
    assert run.success and run.dagster_run.tags[EXPORT_ID_TAG] == export_id
    assert run_query(COUNT_SQL.format(project.today), connection=aws).scalar() == 60
    # The S3 sensor sees the adopted copy in the partition and knows it is handled: no second run.
    polled = project.tick("export_sensor")
    assert (
        not polled.run_requests and export_id in ExportCursor.from_json(polled.cursor, now=dt.datetime.now(dt.UTC)).seen
    )

    # The same notification delivered twice (SNS is at-least-once) starts nothing new.
    sns.publish(TopicArn=topic_arn, Message=json.dumps(description))
    duplicate = project.tick("export_notifications")
    assert not duplicate.run_requests
    assert _queue_depth(sqs, queue_url) == (0, 1)


def test_sensors_are_on_by_default_and_target_the_conversion_steps(project: Project):
    for name in ("export_sensor", "freshness_sensor"):
        sensor = project.defs.resolve_sensor_def(f"reviews_{name}")
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds >= 5
    assert project.defs.resolve_sensor_def("reviews_export_sensor").job_name == "reviews_offload_job"
    names = {s.name for s in project.defs.sensors}
    assert "reviews_export_notifications" not in names  # only with notification_queue_url


# --------------------------------------------------------------------------- exports as DynamoDB writes them


def _root_bucket_queue(aws, bucket: str) -> str:
    """A queue receiving the bucket's S3 event notifications for new export summaries (as set up on AWS)."""
    sqs, s3 = aws.client("sqs"), aws.client("s3")
    queue_url = sqs.create_queue(QueueName=f"{bucket}-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": "manifest-summary.json"}]}},
                }
            ]
        },
    )
    return queue_url


def test_bucket_root_exports_are_adopted_by_both_sensors_and_published(tmp_path, emulator, aws):
    bucket = "team-root-exports"
    queue_url = _root_bucket_queue(aws, bucket)
    project = Project(
        tmp_path, emulator, aws, external_export_prefixes=[f"s3://{bucket}/"], notification_queue_url=queue_url
    )
    project.seed(reviews(70))
    s3 = aws.client("s3")
    today = dt.date.fromisoformat(project.today)
    at = dt.datetime.combine(today, dt.time(0, 20), tzinfo=dt.UTC)
    yesterday = (today - dt.timedelta(days=1)).isoformat()

    # Tonight's export, requested without S3Prefix: found by polling the bucket root.
    polled = write_native_export(s3, bucket=bucket, items=reviews(70), export_time=at, seed=1)
    tick = project.tick("export_sensor")
    assert [(r.run_key, r.partition_key) for r in tick.run_requests] == [(polled.export_id, project.today)]
    runs = project.launch(tick)
    # Yesterday's, announced by S3's own event notification on the queue: found by the notification sensor
    # (which also hears about tonight's, already handled, and S3's test event: both deleted, nothing started).
    announced = write_native_export(s3, bucket=bucket, items=reviews(33), export_time=at - dt.timedelta(days=1), seed=2)
    heard = project.tick("export_notifications")
    assert [(r.run_key, r.partition_key) for r in heard.run_requests] == [(announced.export_id, yesterday)]
    assert heard.asset_events[0].metadata["found_at"].value == f"s3://{bucket}/AWSDynamoDB/{announced.export_id}/"
    assert _queue_depth(aws.client("sqs"), queue_url) == (0, 0)

    for run in runs + project.launch(heard):
        assert run.success
        assert all(c.passed for c in check_results(run).values()), {
            k: c.description for k, c in check_results(run).items()
        }
    assert run_query(COUNT_SQL.format(project.today), connection=aws).scalar() == 70
    assert run_query(COUNT_SQL.format(yesterday), connection=aws).scalar() == 33
    for partition, export in ((project.today, polled), (yesterday, announced)):
        kept = list_export_ids(s3, bucket=project.spec.s3_bucket, export_prefix=project.spec.export_prefix(partition))
        assert kept == [export.export_id]
        adopted_dir = f"{project.spec.export_prefix(partition)}/AWSDynamoDB/{export.export_id}"
        for name in ("_started", "manifest-files.md5", "manifest-summary.md5"):
            project.aws.client("s3").head_object(Bucket=project.spec.s3_bucket, Key=f"{adopted_dir}/{name}")
    # Freshness is aged from tonight's export (taken at 00:20), not from the partition window's start (00:00).
    [fresh] = project.tick("freshness_sensor").asset_events
    assert fresh.passed and fresh.metadata["snapshot_time"].value == at.isoformat()
    assert abs(fresh.metadata["age_hours"].value - (dt.datetime.now(dt.UTC) - at).total_seconds() / 3600) < 0.05


def test_sensors_say_why_a_complete_export_cannot_be_used(tmp_path, emulator, aws):
    bucket = "team-root-exports"
    queue_url = _root_bucket_queue(aws, bucket)
    project = Project(
        tmp_path, emulator, aws, external_export_prefixes=[f"s3://{bucket}/"], notification_queue_url=queue_url
    )
    s3 = aws.client("s3")
    export = write_native_export(s3, bucket=bucket, items=reviews(12))
    s3.delete_object(Bucket=bucket, Key=export.data_keys[1])

    tick = project.tick("export_sensor")
    assert not tick.run_requests
    reason = tick.skip_reason.skip_message
    assert "no new complete export" not in reason
    assert f"cannot use s3://{bucket}/{export.summary_key}" in reason and export.data_keys[1] in reason, reason
    heard = project.tick("export_notifications")
    assert not heard.run_requests and export.data_keys[1] in heard.skip_reason.skip_message


def test_an_adopted_export_whose_data_file_changed_fails_naming_file_and_checksums(tmp_path, emulator, aws):
    """A data file altered after the export (same line count): the run the sensor starts fails naming the
    table, the file, the manifest's md5Checksum and the file's own, and nothing reaches the catalog."""
    import gzip

    from offload_assets.catalog.glue_tables import get_catalog_table
    from offload_assets.export.layout import md5_base64

    bucket = "team-root-exports"
    project = Project(tmp_path, emulator, aws, external_export_prefixes=[f"s3://{bucket}/"])
    project.seed(reviews(40))
    s3 = aws.client("s3")
    at = dt.datetime.combine(dt.date.fromisoformat(project.today), dt.time(0, 20), tzinfo=dt.UTC)
    export = write_native_export(s3, bucket=bucket, items=reviews(40), export_time=at, seed=3)
    changed = export.data_keys[0]
    original = s3.get_object(Bucket=bucket, Key=changed)["Body"].read()
    altered = gzip.compress(gzip.decompress(original).replace(b"Tolkien", b"Tolkiem", 1), mtime=0)
    s3.put_object(Bucket=bucket, Key=changed, Body=altered)

    tick = project.tick("export_sensor")
    assert [r.run_key for r in tick.run_requests] == [export.export_id]
    [run] = project.launch(tick)

    assert not run.success
    [failure] = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    file_name = changed.rsplit("/", 1)[-1]
    assert "table 'Reviews'" in message and file_name in message and "md5Checksum" in message, message
    assert md5_base64(original) in message and md5_base64(altered) in message, message
    assert get_catalog_table(aws.client("glue"), project.spec.catalog_database, project.spec.catalog_table) is None
    assert run.asset_materializations_for_node(project.keys["catalog"].to_python_identifier()) == []
