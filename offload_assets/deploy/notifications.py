"""Notifications for downstream work: one SNS message per export finished and per snapshot published or failed.

The message body is JSON with a versioned schema (``schema_version``; documented in
docs/notifications.md); the message attributes ``table``, ``event`` and ``status`` are there for
SNS subscription filter policies. Each event has an id derived from what it is about (the table,
the partition and the export id, the snapshot location or the run id), and a marker object
``<s3_prefix>/notifications/<catalog table>/<event id>.json`` records that it was sent: a retried
step or a re-published snapshot finds the marker and sends nothing, a re-run that writes a new
snapshot is a new event. Sending goes through boto3's retries; a publish that still fails is
returned as an outcome (the Dagster skin shows it on the run) and never raises into the data path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from offload_assets.table_spec import TableSpec

SCHEMA_VERSION = 1
EXPORT_FINISHED = "export_finished"
SNAPSHOT_PUBLISHED = "snapshot_published"
SNAPSHOT_FAILED = "snapshot_failed"
EVENTS = (EXPORT_FINISHED, SNAPSHOT_PUBLISHED, SNAPSHOT_FAILED)

# Every field of a message, in order; absent facts are null (never missing), so consumers can rely on the keys.
MESSAGE_FIELDS = (
    "schema_version",
    "event_id",
    "event",
    "status",
    "table",
    "catalog_database",
    "catalog_table",
    "partition",
    "export_id",
    "export_time",
    "snapshot_location",
    "iceberg_snapshot_id",
    "row_count",
    "rescued_counts",
    "dagster_run_id",
    "error",
    "sent_at",
)


def marker_prefix(spec: TableSpec) -> str:
    """Key prefix of the table's sent-notification markers (beside, not inside, its exports and Parquet)."""
    return f"{spec.s3_prefix}/notifications/{spec.catalog_table}"


@dataclass(frozen=True)
class Notification:
    """One event about one partition of one table."""

    event: str
    status: str
    spec: TableSpec
    partition: str
    identity: str  # what makes the event unique within (table, event, partition): export id, snapshot location, run id
    export_id: str | None = None
    export_time: str | None = None
    snapshot_location: str | None = None
    iceberg_snapshot_id: str | None = None
    row_count: int | None = None
    rescued_counts: dict[str, int] = field(default_factory=dict)
    dagster_run_id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown event {self.event!r} (expected one of {', '.join(EVENTS)})")

    @property
    def event_id(self) -> str:
        raw = "\x1f".join((self.spec.dynamodb_table, self.event, self.partition, self.identity))
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def body(self, sent_at: dt.datetime | None = None) -> dict[str, Any]:
        sent_at = sent_at or dt.datetime.now(dt.UTC)
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "event": self.event,
            "status": self.status,
            "table": self.spec.dynamodb_table,
            "catalog_database": self.spec.catalog_database,
            "catalog_table": self.spec.catalog_table,
            "partition": self.partition,
            "export_id": self.export_id,
            "export_time": self.export_time,
            "snapshot_location": self.snapshot_location,
            "iceberg_snapshot_id": self.iceberg_snapshot_id,
            "row_count": self.row_count,
            "rescued_counts": dict(self.rescued_counts),
            "dagster_run_id": self.dagster_run_id,
            "error": self.error,
            "sent_at": sent_at.isoformat().replace("+00:00", "Z"),
        }

    def attributes(self) -> dict[str, dict[str, str]]:
        """SNS message attributes a subscription filter policy can match on."""
        return {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (("table", self.spec.dynamodb_table), ("event", self.event), ("status", self.status))
        }


@dataclass(frozen=True)
class NotificationOutcome:
    """What happened to one notification: ``sent``, ``duplicate`` (already sent), ``disabled`` or ``failed``."""

    status: str
    event_id: str
    message_id: str | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.status == "failed":
            return f"failed: {self.error}"
        return self.status if self.message_id is None else f"{self.status} ({self.message_id})"


def _marker_key(spec: TableSpec, event_id: str) -> str:
    return f"{marker_prefix(spec)}/{event_id}.json"


def _already_sent(s3: Any, spec: TableSpec, event_id: str) -> bool:
    try:
        s3.head_object(Bucket=spec.s3_bucket, Key=_marker_key(spec, event_id))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def send_notification(
    sns: Any, s3: Any, notification: Notification, *, topic_arn: str | None = None
) -> NotificationOutcome:
    """Publish ``notification`` to the table's topic once; never raises for AWS errors.

    ``s3`` should apply the table's S3 settings (``OffloadS3Resource.get_table_client``): the
    marker is written with the table's encryption and bucket-owner check like every other object.
    """
    spec = notification.spec
    topic_arn = topic_arn or spec.notification_topic_arn
    event_id = notification.event_id
    if not topic_arn:
        return NotificationOutcome("disabled", event_id)
    try:
        if _already_sent(s3, spec, event_id):
            return NotificationOutcome("duplicate", event_id)
        body = notification.body()
        request: dict[str, Any] = {
            "TopicArn": topic_arn,
            "Message": json.dumps(body, sort_keys=False),
            "MessageAttributes": notification.attributes(),
        }
        if topic_arn.endswith(".fifo"):  # FIFO topics de-duplicate by this id themselves
            request |= {"MessageDeduplicationId": event_id, "MessageGroupId": spec.dynamodb_table}
        message_id = sns.publish(**request)["MessageId"]
        # The marker is written after the publish: a crash between the two can send a second copy
        # (at least once), never none; consumers that must not repeat work can key on event_id.
        s3.put_object(
            Bucket=spec.s3_bucket,
            Key=_marker_key(spec, event_id),
            Body=json.dumps({"message_id": message_id, "topic_arn": topic_arn, **body}).encode(),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError) as err:
        return NotificationOutcome("failed", event_id, error=f"{type(err).__name__}: {err}")
    return NotificationOutcome("sent", event_id, message_id=message_id)
