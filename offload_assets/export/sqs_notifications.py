"""Export-finished notifications from an SQS queue: what a message says, and reading the queue.

A message only says where to look (the summary keys of completed exports, or that an export
failed, or that it is S3's test event); the export's own manifest, read by
:mod:`offload_assets.export.discovery`, is always what is trusted. The message bodies
understood: an SNS envelope around any of the following, S3 event notifications for
``manifest-summary.json``, DescribeExport's ``ExportDescription`` (also at top level or in an
EventBridge ``detail``), and any text naming ``s3://bucket/.../AWSDynamoDB/<id>/``.

What the sensor does with a message once its exports are looked at is a :class:`MessageAction`:
delete it, make it visible again, or leave it invisible until its visibility timeout ends.

No Dagster here: :mod:`offload_assets.defs.sensors` calls these functions.
"""

from __future__ import annotations

import enum
import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from offload_assets.export.discovery import SUMMARY_KEY_RE
from offload_assets.export.layout import EXPORT_DIR, MANIFEST_SUMMARY, export_dir_key

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

_S3_URI_RE = re.compile(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/([^\s\"'<>]+)")


@dataclass(frozen=True)
class ExportNotification:
    """What one queue message says: where completed exports' summaries are, or that it is not about one."""

    summaries: tuple[tuple[str, str], ...] = ()  # (bucket, summary key)
    status: str | None = None  # an export's status when the message carries one (COMPLETED, FAILED, ...)
    recognised: bool = True
    test_event: bool = False  # S3's "s3:TestEvent", sent when a bucket's notifications are set up: nothing to do


def parse_export_notification(body: str, *, default_bucket: str | None = None) -> ExportNotification:
    """Locate the export(s) a message talks about.

    Understood: an SNS envelope (``{"Type": "Notification", "Message": ...}``) around any of the
    following; S3 event notifications for ``manifest-summary.json``; DescribeExport's
    ``ExportDescription`` (or its fields at top level, or in an EventBridge ``detail``); any
    text naming ``s3://bucket/.../AWSDynamoDB/<id>/`` (e.g. a Data Pipeline completion message).
    """
    document: Any
    try:
        document = json.loads(body)
    except (ValueError, TypeError):
        document = body
    return _parse_notification(document, default_bucket, depth=0)


def _parse_notification(document: Any, default_bucket: str | None, depth: int) -> ExportNotification:
    if depth > 4:
        return ExportNotification(recognised=False)
    if isinstance(document, str):
        try:
            inner = json.loads(document)
        except ValueError:
            inner = None
        if isinstance(inner, (dict, list)):
            return _parse_notification(inner, default_bucket, depth + 1)
        return _from_text(document)
    if not isinstance(document, dict):
        return ExportNotification(recognised=False)
    if document.get("Type") == "Notification" and "Message" in document:
        return _parse_notification(document["Message"], default_bucket, depth + 1)
    if document.get("Event") == "s3:TestEvent":
        return ExportNotification(test_event=True)
    if isinstance(document.get("detail"), dict):
        return _parse_notification(document["detail"], default_bucket, depth + 1)
    if isinstance(document.get("Records"), list):
        summaries = []
        for record in document["Records"]:
            s3_part = (record or {}).get("s3") or {}
            bucket = (s3_part.get("bucket") or {}).get("name")
            key = urllib.parse.unquote_plus((s3_part.get("object") or {}).get("key") or "")
            if bucket and SUMMARY_KEY_RE.match(key):
                summaries.append((bucket, key))
        return ExportNotification(summaries=tuple(summaries), recognised=bool(summaries) or "Event" in document)
    description = document.get("ExportDescription", document)
    if isinstance(description, dict) and ("ExportArn" in description or "ExportManifest" in description):
        status = description.get("ExportStatus")
        bucket = description.get("S3Bucket") or default_bucket
        if status and status != "COMPLETED":
            return ExportNotification(status=status)
        key = description.get("ExportManifest")
        prefix = (description.get("S3Prefix") or "").strip("/")
        if key and prefix and not key.startswith(prefix + "/"):
            key = f"{prefix}/{key.lstrip('/')}"
        if not key and description.get("ExportArn") and "/export/" in description["ExportArn"]:
            export_id = description["ExportArn"].rsplit("/export/", 1)[1]
            key = f"{export_dir_key(description.get('S3Prefix') or '', export_id)}/{MANIFEST_SUMMARY}".lstrip("/")
        if bucket and key and SUMMARY_KEY_RE.match(key):
            return ExportNotification(summaries=((bucket, key),), status=status)
        return ExportNotification(status=status, recognised=False)
    return _from_text(json.dumps(document))


def _from_text(text: str) -> ExportNotification:
    summaries = []
    for bucket, rest in _S3_URI_RE.findall(text):
        rest = rest.rstrip("/.,;)")
        if rest.endswith("/" + MANIFEST_SUMMARY):
            key = rest
        else:
            match = re.match(rf"^(.*?/?{EXPORT_DIR}/[^/]+)", rest)
            if not match:
                continue
            key = f"{match.group(1)}/{MANIFEST_SUMMARY}"
        if SUMMARY_KEY_RE.match(key) and (bucket, key) not in summaries:
            summaries.append((bucket, key))
    return ExportNotification(summaries=tuple(summaries), recognised=bool(summaries))


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


def receive_messages(
    sqs: SQSClient, queue_url: str, *, max_batches: int = 5, visibility_timeout: int = 300
) -> list[QueueMessage]:
    """Up to ``10 * max_batches`` messages, without waiting (a sensor tick must stay short)."""
    messages: list[QueueMessage] = []
    for _ in range(max_batches):
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=visibility_timeout
        )
        batch = reply.get("Messages", [])
        messages.extend(QueueMessage(m["MessageId"], m["ReceiptHandle"], m.get("Body", "")) for m in batch)
        if len(batch) < 10:
            break
    return messages


def acknowledge(sqs: SQSClient, queue_url: str, message: QueueMessage) -> None:
    """Done with it: delete the message."""
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message.receipt_handle)


def release(sqs: SQSClient, queue_url: str, message: QueueMessage, *, delay_seconds: int = 0) -> None:
    """Not ours or not ready: make the message visible again (its redrive policy counts the receives)."""
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=delay_seconds
    )


class MessageAction(enum.Enum):
    """What to do with a queue message after looking at the exports it names."""

    ACK = "ack"  # done (adopted, already known, failed export, test event, not adoptable): delete it
    RELEASE = "release"  # not this table's or not understood: visible again for another reader
    WAIT = "wait"  # an export not complete or not readable yet: invisible until its visibility timeout ends

    @classmethod
    def combined(cls, actions: Iterable[MessageAction]) -> MessageAction:
        """One message naming several exports: wait if any must wait, else release if any is not ours, else ack."""
        seen = set(actions)
        for action in (cls.WAIT, cls.RELEASE):
            if action in seen:
                return action
        return cls.ACK


def settle_message(sqs: SQSClient, queue_url: str, message: QueueMessage, action: MessageAction) -> None:
    """Apply ``action`` to ``message`` (``WAIT`` leaves it as it is: it comes back after its visibility timeout)."""
    if action is MessageAction.ACK:
        acknowledge(sqs, queue_url, message)
    elif action is MessageAction.RELEASE:
        release(sqs, queue_url, message)
