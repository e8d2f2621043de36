"""``offload-assets export run`` (one partition now, with progress) and ``export status`` (what
exists per table: exports, snapshots, catalog partitions)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from offload_assets.aws.connection import resolve_connection
from offload_assets.cli.common import (
    EXIT_OK,
    UsageError,
    add_command,
    current_partition_key,
    load_tables,
    make_console,
    print_error,
    select_tables,
    tables_option,
)


def cmd_export_run(args: argparse.Namespace) -> int:
    from offload_assets.cli.progress import ExportProgressBar, WorkSpinner
    from offload_assets.export.partition_export import export_partition

    (spec,) = select_tables(load_tables(args.tables), [args.table])
    partition = args.partition or current_partition_key(spec)
    try:
        dt.date.fromisoformat(partition)
    except ValueError:
        raise UsageError(f"--partition {partition!r}: expected a date, YYYY-MM-DD") from None
    connection = resolve_connection()
    clients = {"dynamodb": connection.client("dynamodb"), "s3": connection.client("s3")}
    if spec.export_method == "scan":
        with ExportProgressBar(spec.dynamodb_table) as bar:
            out = export_partition(spec, partition, on_progress=bar, **clients)
    else:  # DynamoDB exports on its side and reports no progress: show that it is waiting
        with WorkSpinner(
            f"{spec.export_method} export of {spec.dynamodb_table}: waiting for DynamoDB's export to S3",
            console=make_console(stderr=True),
        ):
            out = export_partition(spec, partition, **clients)
    m = out.manifest
    summary = {
        "table": spec.dynamodb_table,
        "partition": partition,
        "export_id": m.export_id,
        "method": out.method,
        "items": m.item_count,
        "files": len(m.data_files),
        "bytes": out.data_bytes,
        "duration_seconds": round(out.duration_seconds, 3),
        "read_capacity_consumed": out.consumed_capacity,
        "s3_uri": m.s3_uri,
    }
    if args.format == "json":
        print(json.dumps(summary))
        return EXIT_OK
    from offload_assets.cli.progress import format_bytes
    from offload_assets.defs.table_assets import asset_keys

    rcu = f", {out.consumed_capacity:,.0f} RCU" if out.consumed_capacity is not None else ""
    print(
        f"exported {m.item_count:,} items of {spec.dynamodb_table} (partition {partition}, {out.method}) in "
        f"{out.duration_seconds:,.1f} s: {len(m.data_files)} file(s), {format_bytes(out.data_bytes)}{rcu}"
    )
    print(m.s3_uri)
    print_error(
        f"next: materialize {asset_keys(spec)['parquet'].to_user_string()} for partition {partition} in the Dagster UI, "
        f"or: offload-assets convert --input {m.s3_uri} --output DIR"
    )
    return EXIT_OK


@dataclass
class PartitionStatus:
    partition: str
    exports: list[dict[str, Any]] = field(default_factory=list)  # id, complete, items, export_time
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # run_dir, complete, rows, export_id
    catalog_location: str | None = None

    @property
    def published_snapshot(self) -> str | None:
        loc = (self.catalog_location or "").rstrip("/")
        return next((s["run_dir"] for s in self.snapshots if loc.endswith(s["run_dir"])), None)


@dataclass
class TableStatus:
    table: str
    catalog_table: str
    export_method: str
    s3_root: str
    catalog_registered: bool
    partitions: list[PartitionStatus]
    notes: list[str] = field(default_factory=list)


def _partition_values(s3: Any, bucket: str, root: str) -> set[str]:
    from offload_assets.table_spec import PARTITION_COLUMN

    prefix, values = f"{root.rstrip('/')}/", set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            name = cp["Prefix"][len(prefix) :].rstrip("/")
            if name.startswith(f"{PARTITION_COLUMN}="):
                values.add(name.split("=", 1)[1])
    return values


def collect_table_status(spec, *, s3: Any, glue: Any, dynamodb: Any | None = None) -> TableStatus:
    """What exists for one configured table: exports and Parquet snapshots in S3, partitions in Glue."""
    from botocore.exceptions import ClientError

    from offload_assets.catalog.glue_tables import get_catalog_table, list_partitions
    from offload_assets.export.layout import list_export_ids, read_export_manifest
    from offload_assets.snapshot.build import list_run_dirs, read_snapshot_manifest

    notes: list[str] = []
    values: set[str] = set()
    try:
        values |= _partition_values(s3, spec.s3_bucket, spec.export_prefix_root)
        values |= _partition_values(s3, spec.s3_bucket, spec.parquet_root)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        notes.append(f"bucket {spec.s3_bucket} does not exist yet")
    registered = get_catalog_table(glue, spec.catalog_database, spec.catalog_table) is not None
    locations = {}
    if registered and not spec.partition_projection:
        locations = {
            p.value: p.location for p in list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)
        }
    elif spec.partition_projection:
        notes.append("partition projection: Athena computes partitions, none are registered in Glue")
    values |= set(locations)
    if dynamodb is not None and spec.export_method in ("native", "incremental"):
        try:
            backups = dynamodb.describe_continuous_backups(TableName=spec.dynamodb_table)[
                "ContinuousBackupsDescription"
            ]
            pitr = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus", "DISABLED")
            if pitr != "ENABLED":
                notes.append(
                    f"point-in-time recovery is {pitr} on {spec.dynamodb_table}: native and incremental exports need it"
                )
        except ClientError as err:
            notes.append(f"DynamoDB table {spec.dynamodb_table}: {err.response.get('Error', {}).get('Code')}")
    partitions = []
    for value in sorted(values, reverse=True):
        ps = PartitionStatus(partition=value, catalog_location=locations.get(value))
        prefix = spec.export_prefix(value)
        for export_id in list_export_ids(s3, bucket=spec.s3_bucket, export_prefix=prefix):
            m = read_export_manifest(s3, bucket=spec.s3_bucket, export_prefix=prefix, export_id=export_id)
            ps.exports.append(
                {
                    "id": export_id,
                    "complete": m is not None,
                    "items": m.item_count if m else None,
                    "export_time": m.export_time if m else None,
                }
            )
        for run_dir in list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(value)):
            snap = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=run_dir)
            ps.snapshots.append(
                {
                    "run_dir": run_dir,
                    "complete": snap is not None,
                    "rows": snap.rows if snap else None,
                    "export_id": snap.export_id if snap else None,
                }
            )
        partitions.append(ps)
    return TableStatus(
        table=spec.dynamodb_table,
        catalog_table=f'"{spec.catalog_database}"."{spec.catalog_table}"',
        export_method=spec.export_method,
        s3_root=f"s3://{spec.s3_bucket}/{spec.s3_prefix}/",
        catalog_registered=registered,
        partitions=partitions,
        notes=notes,
    )


def _status_json(status: TableStatus) -> dict[str, Any]:
    doc = asdict(status)
    for p, ps in zip(doc["partitions"], status.partitions):
        p["published_snapshot"] = ps.published_snapshot
    return doc


def _print_status(status: TableStatus, console) -> None:
    from rich import box
    from rich.table import Table

    registered = "registered" if status.catalog_registered else "not registered yet"
    console.print(
        f"[bold]{status.table}[/bold] -> {status.catalog_table} ({registered}); "
        f"{status.export_method} exports, data under {status.s3_root}"
    )
    for note in status.notes:
        console.print(f"  [yellow]note:[/yellow] {note}")
    if not status.partitions:
        console.print(
            f"  no partition exported yet (run `offload-assets export run {status.table}`, or materialize it in Dagster)\n"
        )
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for col, justify in (
        ("partition", "left"),
        ("export", "left"),
        ("items", "right"),
        ("snapshot", "left"),
        ("rows", "right"),
        ("in catalog", "left"),
    ):
        table.add_column(col, justify=justify)
    for ps in status.partitions:
        complete_exports = [e for e in ps.exports if e["complete"]]
        export = complete_exports[-1]["id"] if complete_exports else ("incomplete" if ps.exports else "-")
        if len(ps.exports) > len(complete_exports) and complete_exports:
            export += f" (+{len(ps.exports) - len(complete_exports)} incomplete)"
        items = f"{complete_exports[-1]['items']:,}" if complete_exports else "-"
        complete_snaps = [s for s in ps.snapshots if s["complete"]]
        published = ps.published_snapshot
        shown = next(
            (s for s in complete_snaps if s["run_dir"] == published), complete_snaps[-1] if complete_snaps else None
        )
        snapshot = shown["run_dir"].rsplit("/", 1)[-1] if shown else ("incomplete" if ps.snapshots else "-")
        if len(ps.snapshots) > 1:
            snapshot += f" ({len(ps.snapshots)} runs)"
        rows = f"{shown['rows']:,}" if shown else "-"
        if ps.catalog_location is None:
            catalog = "-"
        elif published:
            catalog = "yes"
        else:
            catalog = f"yes: {ps.catalog_location}"
        table.add_row(ps.partition, export, items, snapshot, rows, catalog)
    console.print(table)


def cmd_export_status(args: argparse.Namespace) -> int:
    specs = select_tables(load_tables(args.tables), args.table)
    connection = resolve_connection()
    s3, glue, dynamodb = connection.client("s3"), connection.client("glue"), connection.client("dynamodb")
    statuses = [collect_table_status(spec, s3=s3, glue=glue, dynamodb=dynamodb) for spec in specs]
    if args.format == "json":
        print(json.dumps([_status_json(s) for s in statuses], indent=2))
        return EXIT_OK
    console = make_console()
    for status in statuses:
        _print_status(status, console)
    return EXIT_OK


def add_export_parser(sub) -> None:
    export = add_command(
        sub,
        "export",
        help="run a table's export now (with progress), or show what is exported (export status)",
        description="Exports of the DynamoDB tables in the tables file.",
        examples="  offload-assets export run Reviews\n  offload-assets export status\n  offload-assets export status Reviews --format json",
    )
    export_sub = export.add_subparsers(dest="export_command", required=True, metavar="ACTION")
    run = add_command(
        export_sub,
        "run",
        help="export one partition of a table now, with a progress bar",
        description="Export one partition of a table with its configured method (tables.yaml) into\n"
        "s3://<bucket>/<prefix>/exports/<table>/ddb_export_timestamp=<date>/AWSDynamoDB/<export id>/,\n"
        "replacing any earlier export of that partition. This is the raw export only: convert it with\n"
        "`offload-assets convert`, or materialize the Parquet and catalog assets in Dagster.\n"
        "A scan export reads the table as it is now, so it only produces today's partition.",
        examples="  offload-assets export run Reviews\n  offload-assets export run Reviews --format json | jq .items",
    )
    run.add_argument("table", help="DynamoDB table name (or catalog table name) from the tables file")
    run.add_argument(
        "--partition", metavar="YYYY-MM-DD", default=None, help="partition date (default: today's partition)"
    )
    run.add_argument("--format", choices=["table", "json"], default="table", help="how to print the summary")
    tables_option(run)
    run.set_defaults(func=cmd_export_run)
    status = add_command(
        export_sub,
        "status",
        help="per table: exports, Parquet snapshots and catalog partitions",
        description="For each table in the tables file (or those named): every partition found in S3 or Glue, with\n"
        "its export (complete or not, items), its Parquet snapshot runs (rows), and whether the catalog\n"
        "partition points at a snapshot. Native and incremental tables also get a point-in-time recovery check.",
        examples="  offload-assets export status\n  offload-assets export status Reviews --format json",
    )
    status.add_argument("table", nargs="*", help="tables to show (default: all in the tables file)")
    status.add_argument("--format", choices=["table", "json"], default="table")
    tables_option(status)
    status.set_defaults(func=cmd_export_status)
