"""The asset bodies' side of notifications: build the event from what a step returned, send it, show the outcome.

Called after the data step returns (or raised), never from inside it: a notification that cannot be
sent is logged as a warning and recorded in the step's metadata (``notification``), and the data
path goes on. The SNS client comes from the same connection as the S3 resource (one place decides
local vs AWS), so no extra resource has to be configured.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from offload_assets.deploy.notifications import (
    EXPORT_FINISHED,
    SNAPSHOT_FAILED,
    SNAPSHOT_PUBLISHED,
    Notification,
    send_notification,
)
from offload_assets.table_spec import TableSpec


def _send(context: dg.AssetExecutionContext, spec: TableSpec, s3: Any, notification: Notification) -> dict[str, str]:
    if not spec.notification_topic_arn:
        return {}
    outcome = send_notification(s3.connection().client("sns"), s3.get_table_client(spec), notification)
    if outcome.status == "failed":
        context.log.warning(
            f"{notification.event} notification for {spec.dynamodb_table} {notification.partition} was not sent "
            f"(the data step succeeded regardless): {outcome.error}"
        )
    else:
        context.log.info(f"{notification.event} notification {outcome.event_id}: {outcome.describe()}")
    return {"notification": outcome.describe(), "notification_event_id": outcome.event_id}


def notify_export_finished(context: dg.AssetExecutionContext, spec: TableSpec, s3: Any, export: Any) -> dict[str, str]:
    manifest = export.manifest
    return _send(
        context,
        spec,
        s3,
        Notification(
            event=EXPORT_FINISHED,
            status="succeeded",
            spec=spec,
            partition=context.partition_key,
            identity=manifest.export_id,
            export_id=manifest.export_id,
            export_time=manifest.export_time,
            snapshot_location=manifest.s3_uri,
            row_count=manifest.item_count,
            dagster_run_id=context.run.run_id,
        ),
    )


def notify_snapshot_published(
    context: dg.AssetExecutionContext, spec: TableSpec, s3: Any, published: Any
) -> dict[str, str]:
    snapshot = published.snapshot
    return _send(
        context,
        spec,
        s3,
        Notification(
            event=SNAPSHOT_PUBLISHED,
            status="succeeded",
            spec=spec,
            partition=context.partition_key,
            identity=published.location,  # a re-publish of the same snapshot is not a new event; a re-run is
            export_id=snapshot.export_id,
            export_time=spec.export_time(context.partition_key).isoformat(),
            snapshot_location=published.location,
            iceberg_snapshot_id=getattr(published, "iceberg_snapshot_id", None),
            row_count=snapshot.rows,
            rescued_counts=dict(snapshot.rescued_counts),
            dagster_run_id=context.run.run_id,
        ),
    )


def notify_iceberg_committed(
    context: dg.AssetExecutionContext, spec: TableSpec, s3: Any, published: Any, metadata_location: str
) -> dict[str, str]:
    """``snapshot_published`` for an Iceberg table: one event per Iceberg snapshot (a re-run that commits nothing
    names the same snapshot, so it is a duplicate and is not sent again)."""
    return _send(
        context,
        spec,
        s3,
        Notification(
            event=SNAPSHOT_PUBLISHED,
            status="succeeded",
            spec=spec,
            partition=context.partition_key,
            identity=f"iceberg-snapshot:{published.snapshot_id}",
            export_id=published.export_id,
            export_time=spec.export_time(context.partition_key).isoformat(),
            snapshot_location=metadata_location,
            iceberg_snapshot_id=str(published.snapshot_id),
            row_count=published.rows,
            dagster_run_id=context.run.run_id,
        ),
    )


def notify_snapshot_failed(
    context: dg.AssetExecutionContext, spec: TableSpec, s3: Any, error: BaseException
) -> dict[str, str]:
    return _send(
        context,
        spec,
        s3,
        Notification(
            event=SNAPSHOT_FAILED,
            status="failed",
            spec=spec,
            partition=context.partition_key,
            identity=context.run.run_id,
            export_time=spec.export_time(context.partition_key).isoformat(),
            dagster_run_id=context.run.run_id,
            error=f"{type(error).__name__}: {error}",
        ),
    )
