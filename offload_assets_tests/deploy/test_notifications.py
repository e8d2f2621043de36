"""The stack's SQS queue, subscribed to its topic, receives exactly one snapshot_published per published partition.

Real parts: the template deployed on the emulator's CloudFormation, SNS -> SQS (raw delivery, the
template's filter policy), the Dagster job run in process. A re-run of a partition writes a new
snapshot and announces it once more; re-publishing the same snapshot (a retried catalog step)
announces nothing.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import asset_keys
from offload_assets.deploy.notifications import MESSAGE_FIELDS, SCHEMA_VERSION
from offload_assets.local.demo_data import seed_reviews
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.deploy.conftest import bucket_output, database_output, deploy_stack


def _drain(sqs, url: str) -> list[dict]:
    out, empty = [], 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
            "Messages", []
        )
        empty = 0 if got else empty + 1
        for m in got:
            out.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def test_one_snapshot_published_per_partition_and_one_more_per_rerun(tmp_path, emulator, aws):
    stack = deploy_stack(
        aws, write_tables_file(tmp_path / "b.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "stack-lake"})
    )
    entry = {
        "dynamodb_table": "Reviews",
        "s3_bucket": bucket_output(stack),
        "catalog_database": database_output(stack),
        "notification_topic_arn": stack.outputs["NotificationTopicArn"],
        "export_method": "native",
    }
    tables = write_tables_file(tmp_path / "tables.yaml", entry)
    spec = load_tables_file(tables).tables[0]
    items = len(seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=120))
    backdate_point_in_time_recovery(emulator.endpoint_url, "Reviews", days=3)
    defs = build_definitions(tables, target="local", endpoint_url=emulator.endpoint_url)
    job, instance = defs.resolve_job_def("reviews_offload_job"), dg.DagsterInstance.ephemeral()
    today = dt.datetime.now(dt.UTC).date()
    partitions = [(today - dt.timedelta(days=1)).isoformat(), today.isoformat()]
    runs = {p: job.execute_in_process(partition_key=p, instance=instance) for p in partitions}
    assert all(r.success for r in runs.values())

    sqs, url = aws.client("sqs"), stack.outputs["SnapshotPublishedQueueUrl"]
    messages = _drain(sqs, url)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert sorted(b["partition"] for b in bodies) == partitions  # one each; export_finished is filtered out
    for m, body in zip(messages, bodies):
        assert list(body) == list(MESSAGE_FIELDS)
        assert body["schema_version"] == SCHEMA_VERSION and body["event"] == "snapshot_published"
        assert body["status"] == "succeeded" and body["table"] == "Reviews" and body["row_count"] == items
        assert body["snapshot_location"].startswith(
            f"s3://stack-lake/{spec.parquet_root}/ddb_export_timestamp={body['partition']}/"
        )
        assert body["export_id"] and body["dagster_run_id"] == runs[body["partition"]].run_id
        assert isinstance(body["rescued_counts"], dict) and body["error"] is None
        attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        assert attrs == {"table": "Reviews", "event": "snapshot_published", "status": "succeeded"}

    # Re-running a partition writes a new snapshot: exactly one more message.
    rerun = job.execute_in_process(partition_key=partitions[1], instance=instance)
    [again] = [json.loads(m["Body"]) for m in _drain(sqs, url)]
    assert again["partition"] == partitions[1] and again["dagster_run_id"] == rerun.run_id
    # Re-publishing the same snapshot (the catalog step alone, as a retry does): nothing more.
    catalog_only = job.execute_in_process(
        partition_key=partitions[1], instance=instance, asset_selection=[asset_keys(spec)["catalog"]]
    )
    assert catalog_only.success and _drain(sqs, url) == []
    [mat] = [e.step_materialization_data.materialization for e in catalog_only.get_asset_materialization_events()]
    assert mat.metadata["notification"].value == "duplicate"


def test_an_iceberg_table_announces_each_committed_snapshot_once(tmp_path, emulator, aws):
    stack = deploy_stack(
        aws, write_tables_file(tmp_path / "b.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "stack-lake"})
    )
    entry = {
        "dynamodb_table": "Reviews",
        "s3_bucket": bucket_output(stack),
        "catalog_database": database_output(stack),
        "notification_topic_arn": stack.outputs["NotificationTopicArn"],
        "export_method": "native",
        "table_format": "iceberg",
    }
    tables = write_tables_file(tmp_path / "tables.yaml", entry)
    items = len(seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=60))
    backdate_point_in_time_recovery(emulator.endpoint_url, "Reviews", days=3)
    defs = build_definitions(tables, target="local", endpoint_url=emulator.endpoint_url)
    job, instance = defs.resolve_job_def("reviews_offload_job"), dg.DagsterInstance.ephemeral()
    today = dt.datetime.now(dt.UTC).date()
    partitions = [(today - dt.timedelta(days=1)).isoformat(), today.isoformat()]
    runs = {p: job.execute_in_process(partition_key=p, instance=instance) for p in partitions}
    assert all(r.success for r in runs.values())

    sqs, url = aws.client("sqs"), stack.outputs["SnapshotPublishedQueueUrl"]
    bodies = sorted((json.loads(m["Body"]) for m in _drain(sqs, url)), key=lambda b: b["partition"])
    assert [b["partition"] for b in bodies] == partitions
    snapshot_ids = [b["iceberg_snapshot_id"] for b in bodies]
    assert all(s and s.isdigit() for s in snapshot_ids) and len(set(snapshot_ids)) == 2
    for body in bodies:
        assert body["event"] == "snapshot_published" and body["status"] == "succeeded" and body["row_count"] == items
        assert body["snapshot_location"].endswith(".metadata.json") and "/iceberg/" in body["snapshot_location"]
        assert body["dagster_run_id"] == runs[body["partition"]].run_id and body["export_id"]

    # Re-running the newest partition commits nothing new: the same Iceberg snapshot, not announced again.
    rerun = job.execute_in_process(partition_key=partitions[1], instance=instance)
    assert rerun.success and _drain(sqs, url) == []
    catalog = [
        e.step_materialization_data.materialization
        for e in rerun.get_asset_materialization_events()
        if e.step_materialization_data.materialization.metadata.get("table_format")
    ]
    assert [m.metadata["notification"].value for m in catalog] == ["duplicate"]
