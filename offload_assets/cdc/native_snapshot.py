"""A full snapshot for a (re-)bootstrap: DynamoDB's native export (ExportTableToPointInTime), read back.

It reads no table capacity. The export is asked for at the latest instant DynamoDB can export
(about 5 minutes ago), written under the table's export root in ``cdc_bootstrap/`` (not a
partition directory: the nightly path never sees it), and its items are read back from S3.

The snapshot's time is the export's ``ExportTime``: stream records from that time minus the
overlap are re-applied. On the local emulator, whose exports read the table as it is when asked
(whatever the export time), the time is when the export was requested: still a safe lower bound.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from offload_assets.aws.s3_writes import s3_put_kwargs
from offload_assets.cdc.catch_up import FullSnapshot
from offload_assets.conversion.export_lines import item_from_line
from offload_assets.export.errors import ExportDeadline
from offload_assets.export.layout import iter_export_lines, parse_export_time
from offload_assets.export.native import LATEST_RESTORABLE_LAG, run_point_in_time_export
from offload_assets.table_spec import TableSpec


def bootstrap_export_prefix(spec: TableSpec) -> str:
    return f"{spec.export_prefix_root}/cdc_bootstrap"


def native_export_snapshot(dynamodb: Any, s3: Any, spec: TableSpec, now: dt.datetime | None = None) -> FullSnapshot:
    """A new native export of ``spec``'s table, read back as a :class:`FullSnapshot` (needs PITR on)."""
    now = now or dt.datetime.now(dt.UTC)
    export = run_point_in_time_export(
        dynamodb,
        s3,
        table_name=spec.dynamodb_table,
        bucket=spec.s3_bucket,
        export_prefix=bootstrap_export_prefix(spec),
        deadline=ExportDeadline(spec.export_timeout_minutes * 60, what=f"bootstrap export of {spec.dynamodb_table}"),
        export_time=now - LATEST_RESTORABLE_LAG,
        now=now,
        put_kwargs=s3_put_kwargs(spec),
    )
    manifest = export.manifest
    items = [item_from_line(orjson.loads(line), "native") for _, line in iter_export_lines(s3, manifest)]
    if export.manifests_written_by == "dynamodb":
        taken_at = parse_export_time(manifest.export_time)
    else:  # the emulator: its export is the table when asked
        taken_at = parse_export_time(manifest.start_time)
    return FullSnapshot(
        items=items, taken_at=taken_at, origin=f"native export {manifest.export_id} ({manifest.s3_uri})"
    )
