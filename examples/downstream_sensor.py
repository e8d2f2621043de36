"""A downstream Dagster code location that starts work when offload_assets publishes a snapshot.

Another team's project, not part of offload_assets: it needs only dagster, boto3 and pyarrow. Its
sensor reads the stack's ``SnapshotPublishedQueueUrl`` (an SQS queue subscribed to the notification
topic with raw delivery and a filter on ``event = snapshot_published``), and for each message asks
for one run of ``reviews_rollup`` for the message's partition, with the snapshot's location as run
config. The run key is the message's ``event_id``: a message delivered twice (SQS is at least once,
and so is the topic) never starts a second run. The asset reads the published Parquet snapshot and
checks it holds the ``row_count`` the message announced, then does its own work (here: reviews per book).

Load it as its own code location, beside offload_assets in the workspace:

    load_from:
      - python_file: {relative_path: examples/downstream_sensor.py, location_name: downstream}

Configuration comes from the environment: ``SNAPSHOT_QUEUE_URL`` (the stack output), and the usual
AWS chain for credentials and region (``AWS_ENDPOINT_URL`` points it at the local emulator).
"""

import json
from typing import Any

import boto3
import dagster as dg
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs as pafs

SCHEMA_VERSION = 1  # offload_assets' notification schema this consumer understands (docs/notifications.md)


class SnapshotEvents(dg.ConfigurableResource):
    """The SQS queue of snapshot_published messages, and S3 to read the snapshots from."""

    queue_url: str
    region_name: str | None = None
    endpoint_url: str | None = None  # the local emulator; leave unset on AWS

    def sqs(self) -> Any:
        return boto3.client("sqs", region_name=self.region_name, endpoint_url=self.endpoint_url)

    def filesystem(self) -> pafs.S3FileSystem:
        if not self.endpoint_url:
            return pafs.S3FileSystem(region=self.region_name)
        scheme, _, host = self.endpoint_url.partition("://")
        credentials = boto3.session.Session().get_credentials().get_frozen_credentials()
        return pafs.S3FileSystem(
            region=self.region_name or "us-east-1",
            endpoint_override=host.rstrip("/"),
            scheme=scheme,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
        )


class PublishedSnapshot(dg.Config):
    """What the snapshot_published message said, passed to the run."""

    table: str
    snapshot_location: str
    row_count: int
    event_id: str


days = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_offset=1)


@dg.asset(partitions_def=days, kinds={"parquet"})
def reviews_rollup(
    context: dg.AssetExecutionContext, config: PublishedSnapshot, events: SnapshotEvents
) -> dg.MaterializeResult:
    """Reviews per book, from the DynamoDB snapshot offload_assets published for this day."""
    snapshot = ds.dataset(
        config.snapshot_location.removeprefix("s3://"),
        filesystem=events.filesystem(),
        format="parquet",
        exclude_invalid_files=True,  # the snapshot's directory also holds its _snapshot.json
    )
    table = snapshot.to_table()
    if table.num_rows != config.row_count:
        raise dg.Failure(
            f"{config.snapshot_location} holds {table.num_rows} rows, the message announced {config.row_count}"
        )
    book = next(name for name in table.column_names if name.lower() == "book")
    per_book = table.group_by(book).aggregate([(book, "count")]).sort_by([(f"{book}_count", "descending")])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "books": per_book.num_rows,
            "most_reviewed": str(per_book[book][0]) if per_book.num_rows else "",
            "most_reviews": int(pc.max(per_book[f"{book}_count"]).as_py() or 0),
            "source_event_id": config.event_id,
            "source_snapshot": config.snapshot_location,
        }
    )


rollup_job = dg.define_asset_job("reviews_rollup_job", selection=[reviews_rollup])


def run_requests_for(messages: list[dict[str, Any]]) -> list[dg.RunRequest]:
    """One run request per snapshot_published message this consumer understands; the run key is the event id."""
    requests = []
    for message in messages:
        body = json.loads(message["Body"])
        if body.get("schema_version") != SCHEMA_VERSION or body.get("event") != "snapshot_published":
            continue
        config = PublishedSnapshot(
            table=body["table"],
            snapshot_location=body["snapshot_location"],
            row_count=body["row_count"],
            event_id=body["event_id"],
        )
        requests.append(
            dg.RunRequest(
                run_key=body["event_id"],
                partition_key=body["partition"],
                run_config=dg.RunConfig(ops={"reviews_rollup": config}),
                tags={"offload_assets/event_id": body["event_id"], "offload_assets/table": body["table"]},
            )
        )
    return requests


@dg.sensor(job=rollup_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def snapshot_published_sensor(context: dg.SensorEvaluationContext, events: SnapshotEvents) -> dg.SensorResult:
    """Starts reviews_rollup for each snapshot offload_assets publishes (its SQS queue)."""
    sqs = events.sqs()
    messages: list[dict[str, Any]] = []
    for _ in range(10):  # at most 100 messages per tick
        got = sqs.receive_message(QueueUrl=events.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not got.get("Messages"):
            break
        messages += got["Messages"]
    requests = run_requests_for(messages)
    # Deleted once the requests exist: Dagster keeps them by run key, so a redelivered copy starts nothing.
    for message in messages:
        sqs.delete_message(QueueUrl=events.queue_url, ReceiptHandle=message["ReceiptHandle"])
    context.log.info(f"{len(messages)} message(s), {len(requests)} run request(s)")
    return dg.SensorResult(run_requests=requests)


defs = dg.Definitions(
    assets=[reviews_rollup],
    jobs=[rollup_job],
    sensors=[snapshot_published_sensor],
    resources={"events": SnapshotEvents(queue_url=dg.EnvVar("SNAPSHOT_QUEUE_URL"))},
)
