"""Produce a partition's raw export with the table's configured method.

Every method ends with the same thing: a complete export in the native layout under
``spec.export_prefix(partition)`` (see :mod:`offload_assets.export.layout`), and no other
export left for that partition, so re-running a partition replaces its export. A run that
fails or times out writes no manifest, so it publishes nothing and leaves any earlier export
of the partition in place.

* ``scan``: a throttled, resumable parallel Scan of the table as it is now (current day only).
* ``native``: DynamoDB's ExportTableToPointInTime at the partition's export time; reads no table
  capacity; any partition inside the point-in-time recovery window (at most 35 days back).
* ``incremental``: DynamoDB's INCREMENTAL_EXPORT of the day since the previous partition's
  export, applied to that export; a full native export when there is no previous one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from offload_assets.aws.s3_objects import delete_prefix, ensure_bucket
from offload_assets.aws.s3_writes import enforce_s3_settings, s3_put_kwargs
from offload_assets.export.errors import ExportDeadline, ExportFailedError, ExportRefusedError, ExportTimeoutError
from offload_assets.export.export_lease import export_finished, read_lease
from offload_assets.export.incremental import apply_incremental_export, find_incremental_export, key_names_of
from offload_assets.export.layout import (
    ExportManifest,
    delete_other_exports,
    export_dir_key,
    latest_completed_export,
    list_export_ids,
    parse_export_time,
)
from offload_assets.export.native import (
    MAX_INCREMENTAL_WINDOW,
    MIN_INCREMENTAL_WINDOW,
    PointInTimeExport,
    check_point_in_time_window,
    run_point_in_time_export,
)
from offload_assets.export.scan import ScanProgress, export_table_scan
from offload_assets.table_spec import PARTITION_COLUMN, TableSpec

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_s3 import S3Client

__all__ = [
    "ExportFailedError",
    "ExportOutcome",
    "ExportRefusedError",
    "ExportTimeoutError",
    "check_scan_partition",
    "export_partition",
    "incremental_export_prefix",
]


@dataclass(frozen=True)
class ExportOutcome:
    manifest: ExportManifest
    method: str
    duration_seconds: float
    data_bytes: int
    consumed_capacity: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def check_scan_partition(spec: TableSpec, partition_key: str, now: dt.datetime | None = None) -> None:
    """A scan reads the table as it is now, so it may only produce the current partition."""
    now = now or dt.datetime.now(dt.UTC)
    export_time = spec.export_time(partition_key)
    if not export_time - dt.timedelta(hours=1) <= now < export_time + dt.timedelta(days=1, hours=1):
        raise ExportRefusedError(
            f"table {spec.dynamodb_table!r}: partition {partition_key} is not the current day. The 'scan' export "
            "method reads the table as it is now and cannot produce a past (or future) snapshot. Use "
            "export_method: native (DynamoDB point-in-time export, within the 35-day recovery window) to backfill."
        )


def incremental_export_prefix(spec: TableSpec, partition_key: str) -> str:
    """Where DynamoDB's incremental export of the day leading to ``partition_key`` is written (kept for audit).

    Inside the table's export root (so the export permissions cover it) but not a partition directory:
    export discovery skips it, as it skips every non-FULL_EXPORT.
    """
    return f"{spec.export_prefix_root}/_incremental/{PARTITION_COLUMN}={partition_key}"


def previous_partition_key(partition_key: str) -> str:
    return (dt.date.fromisoformat(partition_key) - dt.timedelta(days=1)).isoformat()


def _scan(
    spec: TableSpec, partition_key: str, dynamodb: DynamoDBClient, s3: S3Client, on_progress, now, scan_options
) -> ExportOutcome:
    check_scan_partition(spec, partition_key, now)
    result = export_table_scan(
        dynamodb,
        s3,
        table_name=spec.dynamodb_table,
        bucket=spec.s3_bucket,
        export_prefix=spec.export_prefix(partition_key),
        export_time=spec.export_time(partition_key),
        total_segments=spec.scan_segments,
        read_capacity_fraction=spec.read_capacity_fraction,
        on_demand_rcu_budget=spec.on_demand_rcu_budget,
        timeout_seconds=spec.export_timeout_minutes * 60,
        on_progress=on_progress,
        partition_key=partition_key,
        **{"put_kwargs": s3_put_kwargs(spec), **(scan_options or {})},
    )
    return ExportOutcome(
        manifest=result.manifest,
        method="scan",
        duration_seconds=result.duration_seconds,
        data_bytes=result.data_bytes,
        consumed_capacity=result.consumed_capacity,
        facts={
            "scan_segments": result.segments,
            "read_capacity_budget": result.rate_limit,
            "read_capacity_per_second": round(result.consumed_capacity / max(result.duration_seconds, 1e-9), 3),
            "capacity_source": result.capacity_source,
            "items_scanned": result.items_scanned,
            "resumed": result.resumed,
            "throttled_requests": result.throttled_requests,
            "owner": result.owner,
        },
    )


def _native_outcome(export: PointInTimeExport, method: str, facts: dict[str, Any]) -> ExportOutcome:
    return ExportOutcome(
        manifest=export.manifest,
        method=method,
        duration_seconds=export.duration_seconds,
        data_bytes=export.data_bytes,
        consumed_capacity=0.0,  # a point-in-time export reads no table capacity
        facts={
            "export_arn": export.export_arn,
            "item_count": export.item_count,
            "billed_size_bytes": export.billed_size_bytes,
            "manifests_written_by": export.manifests_written_by,
            **facts,
        },
    )


def _native(spec, partition_key, dynamodb, s3, deadline, now, poll_seconds, facts=None) -> ExportOutcome:
    export = run_point_in_time_export(
        dynamodb,
        s3,
        table_name=spec.dynamodb_table,
        bucket=spec.s3_bucket,
        export_prefix=spec.export_prefix(partition_key),
        deadline=deadline,
        export_time=spec.export_time(partition_key),
        now=now,
        poll_seconds=poll_seconds,
        put_kwargs=s3_put_kwargs(spec),
    )
    return _native_outcome(export, "native", facts or {})


def _incremental(spec, partition_key, dynamodb, s3, deadline, now, poll_seconds) -> ExportOutcome:
    to_time = spec.export_time(partition_key)
    previous_key = previous_partition_key(partition_key)
    base = latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(previous_key))
    from_time = parse_export_time(base.export_time) if base else None

    def full(reason: str) -> ExportOutcome:
        outcome = _native(
            spec, partition_key, dynamodb, s3, deadline, now, poll_seconds, {"full_export_reason": reason}
        )
        return dataclasses.replace(outcome, method="incremental")

    if base is None or base.export_type != "FULL_EXPORT" or from_time is None:
        return full(f"no complete full export of the previous partition {previous_key}")
    if not MIN_INCREMENTAL_WINDOW <= to_time - from_time <= MAX_INCREMENTAL_WINDOW:
        return full(
            f"the previous export ({base.export_time}) is not 15 minutes to 24 hours before {to_time.isoformat()}"
        )
    check_point_in_time_window(
        dynamodb, spec.dynamodb_table, [to_time], now=now, method="incremental"
    )  # refusals stand
    try:
        check_point_in_time_window(dynamodb, spec.dynamodb_table, [from_time], now=now, method="incremental")
    except ExportRefusedError as err:
        return full(f"the previous export's time is not exportable any more ({err})")
    increment_prefix = incremental_export_prefix(spec, partition_key)
    increment = find_incremental_export(
        s3, bucket=spec.s3_bucket, export_prefix=increment_prefix, from_time=from_time, to_time=to_time
    )
    export_arn, reused = (increment.export_arn if increment else None), increment is not None
    if increment is None:
        export = run_point_in_time_export(
            dynamodb,
            s3,
            table_name=spec.dynamodb_table,
            bucket=spec.s3_bucket,
            export_prefix=increment_prefix,
            deadline=deadline,
            incremental_window=(from_time, to_time),
            now=now,
            poll_seconds=poll_seconds,
            put_kwargs=s3_put_kwargs(spec),
        )
        increment, export_arn = export.manifest, export.export_arn
    table = dynamodb.describe_table(TableName=spec.dynamodb_table)["Table"]
    manifest, counts = apply_incremental_export(
        s3,
        base=base,
        incremental=increment,
        key_names=key_names_of(table),
        bucket=spec.s3_bucket,
        export_prefix=spec.export_prefix(partition_key),
        export_time=increment.summary.get("exportToTime") or to_time.isoformat(),
        table_arn=table.get("TableArn"),
        deadline=deadline,
        put_kwargs=s3_put_kwargs(spec),
    )
    delete_other_exports(s3, bucket=spec.s3_bucket, export_prefix=increment_prefix, keep_export_id=increment.export_id)
    return ExportOutcome(
        manifest=manifest,
        method="incremental",
        duration_seconds=deadline.elapsed,
        data_bytes=sum(f.size_bytes or 0 for f in manifest.data_files),
        consumed_capacity=0.0,
        facts={
            "base_partition": previous_key,
            "base_export_id": base.export_id,
            "incremental_export_arn": export_arn,
            "incremental_export_reused": reused,
            "incremental_export_uri": increment.s3_uri,
            **counts.as_facts(),
        },
    )


def export_partition(
    spec: TableSpec,
    partition_key: str,
    *,
    dynamodb: DynamoDBClient,
    s3: S3Client,
    on_progress: Callable[[ScanProgress], None] | None = None,
    now: dt.datetime | None = None,
    scan_options: dict[str, Any] | None = None,
    poll_seconds: float = 2.0,
) -> ExportOutcome:
    """Export one partition of ``spec`` and remove any earlier export of the same partition.

    ``now`` replaces the clock for the partition checks (tests, simulated days); ``scan_options``
    go to :func:`offload_assets.export.scan.export_table_scan` (checkpoint interval, page size...).
    """
    s3 = enforce_s3_settings(s3, spec)  # encryption and bucket owner on every request, whatever the path
    ensure_bucket(s3, spec.s3_bucket, prefix=spec.export_prefix_root + "/")
    deadline = ExportDeadline(
        spec.export_timeout_minutes * 60,
        what=f"{spec.export_method} export of DynamoDB table {spec.dynamodb_table!r}, partition {partition_key}",
    )
    if spec.export_method == "scan":
        outcome = _scan(spec, partition_key, dynamodb, s3, on_progress, now, scan_options)
    elif spec.export_method == "native":
        outcome = _native(spec, partition_key, dynamodb, s3, deadline, now, poll_seconds)
    elif spec.export_method == "incremental":
        outcome = _incremental(spec, partition_key, dynamodb, s3, deadline, now, poll_seconds)
    else:
        raise ExportRefusedError(f"table {spec.dynamodb_table!r}: unknown export_method {spec.export_method!r}")
    delete_superseded_exports(s3, spec, partition_key, keep_export_id=outcome.manifest.export_id)
    return outcome


def delete_superseded_exports(s3: Any, spec: TableSpec, partition_key: str, *, keep_export_id: str) -> list[str]:
    """Remove the partition's other exports, so re-running a partition replaces it.

    An unfinished scan whose owner is still alive (its lease, :mod:`offload_assets.export.export_lease`)
    stays: it belongs to a run that has not finished yet.
    """
    prefix = spec.export_prefix(partition_key)
    removed = []
    for export_id in list_export_ids(s3, bucket=spec.s3_bucket, export_prefix=prefix):
        if export_id == keep_export_id:
            continue
        if not export_finished(s3, bucket=spec.s3_bucket, export_prefix=prefix, export_id=export_id):
            lease = read_lease(s3, bucket=spec.s3_bucket, export_prefix=prefix, export_id=export_id)
            if lease is not None and not lease.released and lease.age() < 3 * lease.heartbeat_seconds:
                continue
        delete_prefix(s3, bucket=spec.s3_bucket, prefix=export_dir_key(prefix, export_id) + "/")
        removed.append(export_id)
    return removed
