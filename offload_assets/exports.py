"""Produce a partition's raw export with the table's configured method.

Every method ends with the same thing: a complete export in the native layout under
``spec.export_prefix(partition)`` (see :mod:`offload_assets.export_layout`), and no other
export left for that partition, so re-running a partition replaces its export.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offload_assets.export_layout import ExportManifest, delete_other_exports
from offload_assets.s3_storage import ensure_bucket
from offload_assets.scan_export import ScanProgress, export_table_scan
from offload_assets.table_spec import TableSpec


class ExportRefusedError(ValueError):
    """The partition cannot be produced with the table's export method (the message says why and what to do)."""


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
    now = now or dt.datetime.now(dt.timezone.utc)
    export_time = spec.export_time(partition_key)
    if not export_time - dt.timedelta(hours=1) <= now < export_time + dt.timedelta(days=1, hours=1):
        raise ExportRefusedError(
            f"table {spec.dynamodb_table!r}: partition {partition_key} is not the current day. The 'scan' export "
            "method reads the table as it is now and cannot produce a past (or future) snapshot. Use "
            "export_method: native (DynamoDB point-in-time export, within the 35-day recovery window) to backfill."
        )


def export_partition(
    spec: TableSpec,
    partition_key: str,
    *,
    dynamodb: Any,
    s3: Any,
    on_progress: Callable[[ScanProgress], None] | None = None,
    now: dt.datetime | None = None,
) -> ExportOutcome:
    """Export one partition of ``spec`` and remove any earlier export of the same partition."""
    ensure_bucket(s3, spec.s3_bucket)
    export_prefix = spec.export_prefix(partition_key)
    if spec.export_method != "scan":
        raise ExportRefusedError(
            f"table {spec.dynamodb_table!r}: export_method {spec.export_method!r} is not available yet; use 'scan'"
        )
    check_scan_partition(spec, partition_key, now)
    result = export_table_scan(
        dynamodb,
        s3,
        table_name=spec.dynamodb_table,
        bucket=spec.s3_bucket,
        export_prefix=export_prefix,
        export_time=spec.export_time(partition_key).isoformat(),
        total_segments=spec.scan_segments,
        read_capacity_fraction=spec.read_capacity_fraction,
        on_demand_rcu_budget=spec.on_demand_rcu_budget,
        timeout_seconds=spec.export_timeout_minutes * 60,
        on_progress=on_progress,
    )
    delete_other_exports(s3, bucket=spec.s3_bucket, export_prefix=export_prefix, keep_export_id=result.manifest.export_id)
    return ExportOutcome(
        manifest=result.manifest,
        method="scan",
        duration_seconds=result.duration_seconds,
        data_bytes=result.data_bytes,
        consumed_capacity=result.consumed_capacity,
        facts={"scan_segments": result.segments},
    )
