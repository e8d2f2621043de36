"""Sensors on exports started outside Dagster (the skin of :mod:`offload_assets.export.discovery`).

``<table>_export_sensor`` polls the table's export locations in S3; the optional
``<table>_export_notifications`` sensor reads export-finished messages from an SQS queue
(e.g. subscribed to the SNS topic the blog's pipeline announced on). Both end the same way
for a new complete export: the export is adopted as its partition's raw export, a
materialization of the raw export asset is recorded with the export's facts, and a run of
``<table>_offload_job``'s conversion and registration steps (Parquet snapshot + catalog table,
with their checks) is requested for that partition, with the export id as run key. An export Dagster itself wrote, or one already handled by
either sensor, is recognised and left alone; one whose partition is being exported right now
waits for that run to finish.
"""

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from offload_assets.defs.resources import OffloadS3Resource
from offload_assets.export.discovery import (
    ExportCursor,
    FoundExport,
    PendingExport,
    SkippedExport,
    adopt_export,
    discover_exports,
    export_data_bytes,
    export_facts,
    inspect_export,
    summary_object,
    watched_locations,
)
from offload_assets.export.sqs_notifications import (
    MessageAction,
    QueueMessage,
    parse_export_notification,
    receive_messages,
    settle_message,
)
from offload_assets.table_spec import TableSpec

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

EXPORT_ID_TAG = "offload_assets/export_id"
KNOWN, BUSY, NEW = "known", "busy", "new"


def export_state(instance: dg.DagsterInstance, export_key: dg.AssetKey, partition_key: str, export_id: str) -> str:
    """``known`` (already recorded or requested), ``busy`` (a run is producing this partition's export) or ``new``."""
    if instance.get_run_records(filters=dg.RunsFilter(tags={EXPORT_ID_TAG: export_id}), limit=1):
        return KNOWN
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=export_key, asset_partitions=[partition_key]), limit=1
    ).records
    if latest:
        recorded = latest[0].asset_materialization.metadata.get("export_id")
        if recorded is not None and recorded.value == export_id:
            return KNOWN
    planned = instance.get_latest_planned_materialization_info(export_key, partition=partition_key)
    if planned is not None:
        run = instance.get_run_by_id(planned.run_id)
        if run is not None and not run.is_finished:
            return BUSY
    return NEW


def _adopt_if_new(
    context: dg.SensorEvaluationContext,
    spec: TableSpec,
    s3: "S3Client",
    export_key: dg.AssetKey,
    found: FoundExport,
    sensor_name: str,
    asset_selection: list[dg.AssetKey],
) -> tuple[str, dg.AssetMaterialization | None, dg.RunRequest | None]:
    state = export_state(context.instance, export_key, found.partition_key, found.export_id)
    if state != NEW:
        return state, None, None
    manifest = adopt_export(s3, spec, found)
    facts = export_facts(manifest, data_bytes=export_data_bytes(s3, manifest), found=found)
    context.log.info(
        f"{spec.dynamodb_table}: export {found.export_id} ({manifest.item_count:,} items, found at {found.uri}) "
        f"is partition {found.partition_key}'s raw export; requesting its conversion"
    )
    event = dg.AssetMaterialization(
        asset_key=export_key,
        partition=found.partition_key,
        description=f"Export {found.export_id} started outside Dagster, found by {sensor_name}.",
        metadata={**facts, "discovered_by": sensor_name},
    )
    request = dg.RunRequest(
        run_key=found.export_id,
        partition_key=found.partition_key,
        asset_selection=asset_selection,
        tags={EXPORT_ID_TAG: found.export_id, "offload_assets/trigger": sensor_name},
    )
    return NEW, event, request


def _table_sensor(spec: TableSpec, name: str, job: Any, description: str) -> Any:
    """Both sensors tick at the table's ``sensor_interval_seconds`` and start running."""
    return dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=spec.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )


def build_export_sensor(
    spec: TableSpec, *, export_key: dg.AssetKey, job: Any, asset_selection: list[dg.AssetKey]
) -> dg.SensorDefinition:
    name = f"{spec.name}_export_sensor"
    locations = [location.uri for location in watched_locations(spec)]

    @_table_sensor(
        spec,
        name,
        job,
        f"Finds complete DynamoDB exports of `{spec.dynamodb_table}` started outside Dagster (console, CLI, AWS Backup) "
        f"in {', '.join(locations)}, records them as the raw export of their partition and converts and registers them.",
    )
    def export_sensor(context: dg.SensorEvaluationContext, s3: OffloadS3Resource) -> dg.SensorResult:
        client = s3.get_table_client(spec)
        now = dt.datetime.now(dt.UTC)
        cursor = ExportCursor.from_json(context.cursor, now=now)
        discovery = discover_exports(client, spec, cursor, now=now)
        notes = _report(context, spec, discovery.skipped, discovery.pending)
        done, waiting = [s.summary for s in discovery.skipped], list(discovery.later)
        events, requests = [], []
        for found in discovery.found:
            state, event, request = _adopt_if_new(context, spec, client, export_key, found, name, asset_selection)
            if state == BUSY:
                waiting.append(found.summary)
                continue
            done.append(found.summary)
            if event is not None:
                events.append(event)
                requests.append(request)
        new_cursor = cursor.advanced(done, waiting).to_json()
        if not requests:
            reason = f"no new complete export in {', '.join(locations)}"
            if notes:
                reason = f"no export adopted from {', '.join(locations)}; " + "; ".join(notes)
            return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=new_cursor)
        return dg.SensorResult(run_requests=requests, asset_events=events, cursor=new_cursor)

    return export_sensor


def _report(
    context: dg.SensorEvaluationContext,
    spec: TableSpec,
    skipped: list[SkippedExport],
    pending: list[PendingExport],
) -> list[str]:
    """Log every export seen but not adopted with its reason; return the reasons for the tick's status."""
    notes = []
    for item in skipped:
        if item.unusable:
            context.log.warning(f"{spec.dynamodb_table}: cannot use {item.describe()}")
            notes.append(f"cannot use {item.describe()}")
        else:
            context.log.info(f"{spec.dynamodb_table}: ignoring {item.describe()}")
            notes.append(f"ignored {item.describe()}")
    for item in pending:
        context.log.info(f"{spec.dynamodb_table}: waiting for {item.describe()}")
        notes.append(f"waiting for {item.describe()}")
    return notes


def build_notification_sensor(
    spec: TableSpec, *, export_key: dg.AssetKey, job: Any, asset_selection: list[dg.AssetKey]
) -> dg.SensorDefinition:
    """Reads ``spec.notification_queue_url``; a message is deleted once its export is handled (or failed)."""
    name = f"{spec.name}_export_notifications"
    queue_url = spec.notification_queue_url

    @_table_sensor(
        spec,
        name,
        job,
        f"Export-finished notifications for `{spec.dynamodb_table}` from SQS queue {queue_url} (SNS envelope, S3 event "
        "or DescribeExport document): the export they name is recorded and converted like the export sensor does.",
    )
    def notification_sensor(context: dg.SensorEvaluationContext, s3: OffloadS3Resource) -> dg.SensorResult:
        # SQS through the S3 resource's connection: same target, endpoint and credentials.
        s3_client, sqs_client = s3.get_table_client(spec), s3.connection().client("sqs")
        now = dt.datetime.now(dt.UTC)
        events, requests, notes = [], [], []
        deleted = 0
        for message in receive_messages(sqs_client, queue_url):
            verdict = _message_verdict(
                context,
                spec,
                s3_client,
                message,
                now=now,
                export_key=export_key,
                sensor_name=name,
                asset_selection=asset_selection,
            )
            settle_message(sqs_client, queue_url, message, verdict.action)
            if verdict.action is MessageAction.ACK:
                deleted += 1
            events.extend(verdict.events)
            requests.extend(verdict.requests)
            notes.extend(verdict.notes)
        if not requests:
            reason = f"no new export in {deleted} handled message(s)"
            return dg.SensorResult(skip_reason=dg.SkipReason("; ".join([reason, *notes])))
        return dg.SensorResult(run_requests=requests, asset_events=events)

    return notification_sensor


@dataclass(frozen=True)
class MessageVerdict:
    """What one queue message comes to: what to do with it, and the adoptions and notes it produced."""

    action: MessageAction
    events: tuple[dg.AssetMaterialization, ...] = ()
    requests: tuple[dg.RunRequest, ...] = ()
    notes: tuple[str, ...] = ()


def _message_verdict(
    context: dg.SensorEvaluationContext,
    spec: TableSpec,
    s3: "S3Client",
    message: QueueMessage,
    *,
    now: dt.datetime,
    export_key: dg.AssetKey,
    sensor_name: str,
    asset_selection: list[dg.AssetKey],
) -> MessageVerdict:
    """Look at every export ``message`` names: adopt the new complete ones, and decide the message's fate."""
    notification = parse_export_notification(message.body, default_bucket=spec.s3_bucket)
    if notification.test_event:
        context.log.info(f"{spec.dynamodb_table}: message {message.message_id}: S3's test event, deleted")
        return MessageVerdict(MessageAction.ACK)
    if notification.status and notification.status != "COMPLETED":
        context.log.info(
            f"{spec.dynamodb_table}: message {message.message_id}: export status {notification.status}, nothing to convert"
        )
        return MessageVerdict(MessageAction.ACK)
    if not notification.recognised or not notification.summaries:
        context.log.warning(
            f"{spec.dynamodb_table}: message {message.message_id} does not name an export; left on the queue"
        )
        return MessageVerdict(MessageAction.RELEASE)
    actions: list[MessageAction] = []
    events: list[dg.AssetMaterialization] = []
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    for bucket, key in notification.summaries:
        summary = summary_object(s3, bucket, key)
        if summary is None:  # the summary is written last: the export is not complete yet
            notes.append(f"waiting for s3://{bucket}/{key}: not written yet (the export is not complete)")
            actions.append(MessageAction.WAIT)
            continue
        outcome = inspect_export(s3, spec, summary, now=now)
        if isinstance(outcome, PendingExport):
            notes.extend(_report(context, spec, [], [outcome]))
            actions.append(MessageAction.WAIT)
        elif isinstance(outcome, SkippedExport):
            notes.extend(_report(context, spec, [outcome], []))
            actions.append(MessageAction.RELEASE if outcome.other_table else MessageAction.ACK)
        else:
            state, event, request = _adopt_if_new(context, spec, s3, export_key, outcome, sensor_name, asset_selection)
            if state == BUSY:
                actions.append(MessageAction.WAIT)
                continue
            if event is not None and request is not None:
                events.append(event)
                requests.append(request)
            actions.append(MessageAction.ACK)
    return MessageVerdict(MessageAction.combined(actions), tuple(events), tuple(requests), tuple(notes))
