"""``offload-assets``: the demo, SQL, exports, conversions, the local emulator and the Dagster UI.

Exit codes (scripts may rely on them):

====  ==========================================================================================
0     success
1     the operation failed: AWS, the query, the export or the conversion said no (reason on stderr)
2     bad usage: unknown command or option, a missing input, an unknown table, an invalid tables file
3     ``local status``: the local emulator is not running
130   interrupted (Ctrl-C)
====  ==========================================================================================

Results go to standard output; progress, notes and errors to standard error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import zoneinfo
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from offload_assets.aws.connection import TARGET_ENV_VAR, current_target, resolve_connection
from offload_assets.cli.demo import BLOG_QUERY
from offload_assets.conversion.options import ORIGINAL_NAME_KEY
from offload_assets.local.emulator import (
    STATE_DIR_ENV_VAR,
    EmulatorError,
    backdate_point_in_time_recovery,
    default_state_dir,
    emulator_status,
    ensure_local_emulator,
    reset_local_state,
    stop_local_emulator,
)
from offload_assets.table_spec import DEFAULT_DATABASE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES_HELP = """exit codes:
  0    success
  1    the operation failed (the reason is printed on stderr)
  2    bad usage: unknown command or option, missing input, unknown table, invalid tables file
  3    local status: the emulator is not running
  130  interrupted"""


class UsageError(Exception):
    """The command line (or the tables file it points to) is wrong; nothing was done."""


def _console(stderr: bool = False):
    from rich.console import Console

    # Piped output gets no colour codes and no wrapping, so columns stay aligned in a file.
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if probe.is_terminal else 10_000)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


DAGSTER_YAML = """# Dagster instance of offload_assets' local mode (runs, materializations, schedules).
# Telemetry is off: the embedded default never talks to anything but loopback.
telemetry:
  enabled: false
# Every raw export asset is in pool "dynamodb_export": at most two exports run at a time,
# so a multi-day backfill queues its exports instead of starting them all at once.
concurrency:
  pools:
    default_limit: 2
    granularity: op
"""


def prepare_dagster_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def _dagster_home() -> Path:
    """The Dagster instance the demo and ``offload-assets dev`` share, so demo runs show in the UI."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_state_dir() / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(home))
    return home


# --- tables file -------------------------------------------------------------------------------


def _load_tables(path: str | None):
    from offload_assets.table_spec import TablesFileError, default_tables_file, load_tables_file

    try:
        return load_tables_file(path or default_tables_file())
    except TablesFileError as err:
        raise UsageError(str(err)) from None


def _select_tables(tables, names: list[str] | None):
    if not names:
        return list(tables.tables)
    try:
        return [tables.table(name) for name in names]
    except KeyError as err:
        raise UsageError(err.args[0]) from None


def current_partition_key(spec, now: dt.datetime | None = None) -> str:
    """Today's partition of ``spec``: the day whose export hour (in the table's timezone) has passed most recently.

    The same key as the last partition of the table's Dagster partitions definition.
    """
    now = now or dt.datetime.now(dt.UTC)
    local = now.astimezone(zoneinfo.ZoneInfo(spec.timezone))
    return (local - dt.timedelta(hours=spec.export_hour)).date().isoformat()


# --- query -------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    from decimal import Decimal

    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def print_result(result, fmt: str) -> None:
    if fmt == "json":
        print(result.to_json())
    elif fmt == "csv":
        sys.stdout.write(result.to_csv())
    else:
        from rich import box
        from rich.table import Table

        from offload_assets.sql.display import trino_text

        table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD)
        for i, col in enumerate(result.columns):
            values = [row[i] for row in result.rows if row[i] is not None]
            numeric = bool(values) and all(_is_number(v) for v in values)
            table.add_column(col, justify="right" if numeric else "left", overflow="fold")
        for row in result.rows:
            table.add_row(*(trino_text(v) for v in row))
        _console().print(table)
        scanned = f", {result.bytes_scanned:,} bytes scanned" if result.bytes_scanned is not None else ""
        _console(stderr=True).print(
            f"[dim]{len(result.rows)} row(s) in {result.elapsed_seconds:.2f} s on {result.engine}{scanned}[/dim]"
        )


def cmd_query(args: argparse.Namespace) -> int:
    from offload_assets.sql.query import QueryError, run_query

    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not sql.strip():
        raise UsageError("no SQL given (pass the statement as an argument, or - to read it from stdin)")
    try:
        result = run_query(
            sql,
            connection=resolve_connection(),
            default_database=args.database,
            athena_workgroup=args.workgroup,
            athena_output_location=args.output_location,
        )
    except QueryError as err:
        _err(f"query failed: {err}")
        return EXIT_FAILED
    print_result(result, args.format)
    return EXIT_OK


# --- demo, local, dev --------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from offload_assets.cli.demo import run_demo

    if current_target() != "local":
        raise UsageError(
            f"the demo creates and fills a DynamoDB table; it only runs on the local emulator ({TARGET_ENV_VAR}=local)"
        )
    tables_file = str(_load_tables(args.tables).path)
    _dagster_home()
    return run_demo(items=args.items, console=_console(), tables_file=tables_file)


def cmd_local(args: argparse.Namespace) -> int:
    console = _console()
    if (args.table is not None) != (args.action == "pitr"):
        raise UsageError("only `local pitr` takes a table: offload-assets local pitr TABLE [--days N]")
    if args.action == "pitr":
        return _local_pitr(args.table, args.days, console)
    if args.action == "start":
        emu = ensure_local_emulator()
        console.print(f"local AWS emulator running at {emu.endpoint_url} (pid {emu.pid}), state in {emu.state_dir}")
    elif args.action == "stop":
        stopped = stop_local_emulator()
        console.print("stopped (state saved)" if stopped else "not running")
    elif args.action == "status":
        emu = emulator_status()
        if emu is None:
            console.print(f"not running (state directory {default_state_dir()})")
            return EXIT_NOT_RUNNING
        console.print(f"running at {emu.endpoint_url} (pid {emu.pid}), state in {emu.state_dir}")
    elif args.action == "reset":
        reset_local_state()
        console.print("emulator stopped and its saved state deleted")
    return EXIT_OK


def _local_pitr(table: str, days: float, console) -> int:
    """Give a table of the local emulator ``days`` of point-in-time recovery history (see README, Backfills)."""
    if current_target() != "local":
        raise UsageError(
            f"`local pitr` changes the local emulator only ({TARGET_ENV_VAR}=local); on AWS enable PITR on the table"
        )
    connection = resolve_connection(target="local")
    try:
        earliest = backdate_point_in_time_recovery(
            connection.endpoint_url, table, days=days, region=connection.region_name
        )
    except EmulatorError as err:
        raise UsageError(str(err)) from None
    console.print(
        f"{table}: point-in-time recovery on since {earliest:%Y-%m-%d %H:%M} UTC (local emulator): native exports of "
        "partitions from then on are accepted. The emulator exports the table as it is now, whatever the day."
    )
    return EXIT_OK


def cmd_dev(args: argparse.Namespace) -> int:
    home = _dagster_home()
    workspace = Path(args.workspace).resolve()
    if not workspace.exists():
        raise UsageError(f"workspace file not found: {workspace} (run from the project directory, or pass --workspace)")
    print(f"DAGSTER_HOME={home}; UI on http://127.0.0.1:{args.port}", flush=True)
    os.execv(
        sys.executable,
        [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)],
    )
    return EXIT_FAILED  # not reached


# --- export run / export status ----------------------------------------------------------------


def cmd_export_run(args: argparse.Namespace) -> int:
    from offload_assets.cli.progress import ExportProgressBar, WorkSpinner
    from offload_assets.export.partition_export import export_partition

    (spec,) = _select_tables(_load_tables(args.tables), [args.table])
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
            console=_console(stderr=True),
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

    rcu = f", {out.consumed_capacity:,.0f} RCU" if out.consumed_capacity is not None else ""
    print(
        f"exported {m.item_count:,} items of {spec.dynamodb_table} (partition {partition}, {out.method}) in "
        f"{out.duration_seconds:,.1f} s: {len(m.data_files)} file(s), {format_bytes(out.data_bytes)}{rcu}"
    )
    print(m.s3_uri)
    _err(
        f"next: materialize s3/parquet/{spec.name} for partition {partition} in the Dagster UI, "
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
    specs = _select_tables(_load_tables(args.tables), args.table)
    connection = resolve_connection()
    s3, glue, dynamodb = connection.client("s3"), connection.client("glue"), connection.client("dynamodb")
    statuses = [collect_table_status(spec, s3=s3, glue=glue, dynamodb=dynamodb) for spec in specs]
    if args.format == "json":
        print(json.dumps([_status_json(s) for s in statuses], indent=2))
        return EXIT_OK
    console = _console()
    for status in statuses:
        _print_status(status, console)
    return EXIT_OK


# --- convert -----------------------------------------------------------------------------------


def _filesystem_and_path(location: str, connection_cache: dict[str, Any]) -> tuple[Any, str]:
    """A pyarrow filesystem and the path on it for a local path or an ``s3://bucket/key`` URI."""
    from pyarrow import fs as pafs

    if location.startswith("s3://"):
        if "fs" not in connection_cache:
            connection_cache["fs"] = resolve_connection().arrow_filesystem()
        path = location[len("s3://") :].rstrip("/")
        if not path:
            raise UsageError(f"{location}: expected s3://bucket/prefix")
        return connection_cache["fs"], path
    if "://" in location:
        raise UsageError(f"{location}: expected a local path or an s3:// URI")
    return pafs.LocalFileSystem(), str(Path(location).resolve())


_DATA_SUFFIXES = (".json.gz", ".json", ".jsonl", ".jsonl.gz", ".gz")


def find_export_data_files(filesystem: Any, base: str, shown: str) -> list[str]:
    """The DynamoDB-JSON data files of the one export at or below ``base``.

    ``base`` may be a data file, an export's ``data/`` directory, an export directory
    (``AWSDynamoDB/<id>/``), a partition prefix holding one export, or any directory of
    ``.json``/``.json.gz`` files. Incomplete exports (no ``manifest-summary.json``) are skipped
    when a complete one exists; two complete exports are ambiguous and refused.
    """
    from pyarrow import fs as pafs

    info = filesystem.get_file_info(base)
    if info.type == pafs.FileType.File:
        return [base]
    if info.type == pafs.FileType.NotFound:
        raise UsageError(f"{shown}: no such file or directory")
    files = [
        i.path
        for i in filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
        if i.type == pafs.FileType.File
    ]
    complete = sorted({f.rsplit("/", 1)[0] for f in files if f.endswith("/manifest-summary.json")})
    if len(complete) > 1:
        listed = "\n  ".join(complete)
        raise UsageError(f"{shown} holds {len(complete)} complete exports; point --input at one of them:\n  {listed}")
    if complete:
        files = [f for f in files if f.startswith(complete[0] + "/data/")]
    elif any("/data/" in f[len(base) :] for f in files):
        files = [f for f in files if "/data/" in f[len(base) :]]
    data = sorted(
        f for f in files if f.endswith(_DATA_SUFFIXES) and not f.rsplit("/", 1)[-1].startswith(("manifest-", "_"))
    )
    if not data:
        raise UsageError(f"{shown}: no export data files (*.json.gz, *.json) found")
    return data


def manifest_listed_files(filesystem: Any, files: list[str]) -> tuple[list[str], dict[str, Any]]:
    """When ``files`` are an export's ``data/*`` and the export has ``manifest-files.json``: the
    files it lists (never what else lies in ``data/``) and, per file, its MD5 and item count."""
    from offload_assets.conversion import ExpectedDataFile
    from offload_assets.export.layout import MANIFEST_FILES

    if not files or "/data/" not in files[0]:
        return files, {}
    export_dir = files[0].rsplit("/data/", 1)[0]
    manifest = f"{export_dir}/{MANIFEST_FILES}"
    if filesystem.get_file_info(manifest).type.name != "File":
        return files, {}
    with filesystem.open_input_stream(manifest) as f:
        entries = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    listed, expected = [], {}
    for entry in entries:
        key = entry["dataFileS3Key"]
        path = f"{export_dir}/data/{key.rsplit('/data/', 1)[-1]}"
        listed.append(path)
        count = entry.get("itemCount")
        expected[path] = ExpectedDataFile(entry.get("md5Checksum"), int(count) if count is not None else None)
    return listed, expected


def cmd_iam_policy(args: argparse.Namespace) -> int:
    from offload_assets.aws.iam_policy import build_iam_policy, render_policy

    specs = _select_tables(_load_tables(args.tables), args.table)
    policy = build_iam_policy(
        specs,
        region=args.region,
        account_id=args.account_id,
        athena_workgroup=args.athena_workgroup or None,
        athena_results_uri=args.athena_results,
        kms_key_arn=args.kms_key,
    )
    print(render_policy(policy))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from offload_assets.cli.progress import WorkSpinner, format_bytes
    from offload_assets.conversion import (
        ConversionOptions,
        DataFileMismatch,
        ExportLineError,
        convert_export_to_parquet,
    )

    cache: dict[str, Any] = {}
    in_fs, in_path = _filesystem_and_path(args.input, cache)
    out_fs, out_path = _filesystem_and_path(args.output, cache)
    if args.output.startswith("s3://"):  # pyarrow's S3 writer cannot send SSE headers: upload through boto3 with them
        from types import SimpleNamespace

        from offload_assets.aws.s3_writes import encrypted_output_filesystem, s3_put_kwargs

        settings = SimpleNamespace(sse_kms_key_id=args.sse_kms_key_id, expected_bucket_owner=args.expected_bucket_owner)
        out_fs = encrypted_output_filesystem(resolve_connection().client("s3"), out_fs, s3_put_kwargs(settings))
    elif args.sse_kms_key_id or args.expected_bucket_owner:
        raise UsageError("--sse-kms-key-id and --expected-bucket-owner apply to an s3:// --output only")
    files = find_export_data_files(in_fs, in_path, args.input)
    files, expected = manifest_listed_files(in_fs, files)
    if args.no_verify_manifest:
        expected = {}
    if out_fs.get_file_info(out_path).type.name == "File":
        raise UsageError(f"{args.output}: is a file; --output must be a directory")
    table_name = args.table_name or Path(in_path.rstrip("/")).name
    keys = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    options = ConversionOptions(compression=args.compression, bad_lines=args.bad_lines, key_attributes=keys)
    input_bytes = sum(i.size or 0 for i in in_fs.get_file_info(files))
    with WorkSpinner(
        f"converting {len(files)} file(s), {format_bytes(input_bytes)}, to Parquet", console=_console(stderr=True)
    ) as spinner:
        try:
            result = convert_export_to_parquet(
                files, in_fs, out_path, out_fs, table_name=table_name, options=options, expected_files=expected
            )
        except DataFileMismatch as err:
            _err(f"conversion failed: {err}\n(--no-verify-manifest converts without checking the manifest)")
            return EXIT_FAILED
        except ExportLineError as err:
            _err(f"conversion failed: {err}\n(--bad-lines quarantine sets bad lines aside and converts the rest)")
            return EXIT_FAILED
    elapsed = spinner.elapsed_seconds
    out_uri = args.output.rstrip("/") if args.output.startswith("s3://") else out_path
    doc = {
        "rows": result.rows,
        "columns": [
            {
                "name": f.name,
                "type": _athena_type(f.type),
                "arrow_type": str(f.type),
                "attribute": (f.metadata or {}).get(ORIGINAL_NAME_KEY, b"").decode() or None,
                "dynamodb_type": (f.metadata or {}).get(b"dynamodb_type", b"").decode() or None,
            }
            for f in result.schema
        ],
        "rescued_counts": result.rescued_counts,
        "renamed_columns": result.renamed_columns,
        "quarantined_lines": result.quarantined_lines,
        "files": [
            {"path": _shown_path(f.path, args.output, out_path), "rows": f.rows, "bytes": f.bytes} for f in result.files
        ],
        "quarantine_files": [_shown_path(p, args.output, out_path) for p in result.quarantine_files],
        "input_files": len(files),
        "input_bytes": result.input_bytes or input_bytes,
        "output_bytes": result.output_bytes,
        "duration_seconds": round(elapsed, 3),
        "output": out_uri,
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    _print_conversion(doc)
    return EXIT_OK


def _athena_type(arrow_type: Any) -> str:
    from offload_assets.catalog.glue_types import arrow_to_glue

    try:
        return arrow_to_glue(arrow_type)
    except Exception:  # a type Glue cannot hold: show Arrow's name rather than fail after the work is done
        return str(arrow_type)


def _shown_path(path: str, output: str, out_path: str) -> str:
    return f"s3://{path.lstrip('/')}" if output.startswith("s3://") else path


def _print_conversion(doc: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from offload_assets.cli.progress import format_bytes

    console = _console()
    rate = doc["input_bytes"] / doc["duration_seconds"] if doc["duration_seconds"] else 0
    console.print(
        f"[bold]{doc['rows']:,} rows[/bold], {len(doc['columns'])} columns, {len(doc['files'])} file(s), "
        f"{format_bytes(doc['output_bytes'])} from {doc['input_files']} input file(s), {format_bytes(doc['input_bytes'])} "
        f"in {doc['duration_seconds']:,.1f} s ({format_bytes(rate)}/s)"
    )
    columns = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for col in ("column", "type", "from attribute", "rescued values"):
        columns.add_column(col, justify="right" if col == "rescued values" else "left", overflow="fold")
    for c in doc["columns"]:
        attr = c["attribute"] or ""
        if c["dynamodb_type"]:
            attr = f"{attr} ({c['dynamodb_type']})"
        rescued = doc["rescued_counts"].get(c["name"], 0)
        columns.add_row(c["name"], c["type"], attr, f"{rescued:,}" if rescued else "")
    console.print(columns)
    total_rescued = sum(doc["rescued_counts"].values())
    if total_rescued:
        console.print(
            f"rescued: {total_rescued:,} value(s) that did not fit their column's type are kept as JSON in _rescued_data"
        )
    if doc["quarantined_lines"]:
        console.print(
            f"[yellow]quarantined: {doc['quarantined_lines']:,} bad line(s)[/yellow] in "
            + ", ".join(doc["quarantine_files"])
        )
    console.print("output files:")
    for f in doc["files"]:
        console.print(f"  {f['path']}  ({f['rows']:,} rows, {format_bytes(f['bytes'])})")


# --- the parser --------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _sub(sub, name: str, *, help: str, description: str, examples: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=_HelpFormatter,
        epilog=f"examples:\n{examples.rstrip()}\n\n{EXIT_CODES_HELP}",
        **kwargs,
    )


def _tables_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables",
        metavar="FILE",
        default=None,
        help="tables file (default: $OFFLOAD_ASSETS_TABLES, else the project's tables.yaml: the one Dagster loads)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offload-assets",
        description=(
            "Offload DynamoDB tables to S3 as Parquet, register them in Glue, and query them with SQL.\n\n"
            f"Where: {TARGET_ENV_VAR}=local (default: a local AWS emulator on this machine, DuckDB for SQL)\n"
            f"       or {TARGET_ENV_VAR}=aws (boto3's usual credentials and region; Athena for SQL).\n"
            f"Local state (emulator data, Dagster runs) lives in ${STATE_DIR_ENV_VAR} (default ./.offload_assets).\n"
            "Which tables: tables.yaml (one entry per DynamoDB table; see README)."
        ),
        epilog=(
            "a first session:\n"
            "  offload-assets demo                      # seed Reviews locally, run its Dagster job, answer the blog's query\n"
            "  offload-assets dev                       # the Dagster UI on http://127.0.0.1:3000\n"
            "  offload-assets query 'SELECT author, count(*) FROM reviews GROUP BY 1'\n"
            "  offload-assets export status             # what is exported, converted and registered, per table\n\n"
            "`offload-assets COMMAND --help` explains each command, with examples.\n\n"
            f"{EXIT_CODES_HELP}"
        ),
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _sub(
        sub,
        "demo",
        help="seed the local Reviews table, run its Dagster job for today, answer the blog's query",
        description="The Goodreads walkthrough on the local emulator: create and fill the DynamoDB table Reviews,\n"
        "run reviews_offload_job for today's partition as a real Dagster run (it shows in `offload-assets dev`),\n"
        "then count J.K. Rowling's reviews with SQL over the Parquet snapshot.",
        examples="  offload-assets demo\n  offload-assets demo --items 20000",
    )
    demo.add_argument("--items", type=int, default=3000, help="generated reviews besides the blog's two (default 3000)")
    _tables_option(demo)
    demo.set_defaults(func=cmd_demo)

    query = _sub(
        sub,
        "query",
        help="run SQL (Athena dialect) against the catalog",
        description="Run one SQL statement. Locally it runs on DuckDB over the catalog's Parquet files; on AWS on Athena.\n"
        f'Tables are resolved through the Glue catalog (database "{DEFAULT_DATABASE}" unless --database says otherwise).\n'
        "Each partition (ddb_export_timestamp) is a full snapshot: filter on it to ask about one day.",
        examples=(
            f"  offload-assets query '{BLOG_QUERY}'\n"
            "  offload-assets query --format csv 'SELECT * FROM reviews WHERE ddb_export_timestamp = current_date' > today.csv\n"
            "  echo 'SELECT count(*) FROM reviews' | offload-assets query -\n"
            "  OFFLOAD_ASSETS_TARGET=aws offload-assets query --output-location s3://my-bucket/athena/ 'SELECT 1'"
        ),
    )
    query.add_argument("sql", help="the SQL text, or - to read it from standard input")
    query.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        default="table",
        help="table (aligned, for people; the default), json (a list of objects) or csv (with a header)",
    )
    query.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help=f"database for unqualified table names (default {DEFAULT_DATABASE})",
    )
    query.add_argument("--workgroup", default="primary", help="Athena workgroup (AWS only)")
    query.add_argument("--output-location", default=None, help="Athena result location s3://... (AWS only)")
    query.set_defaults(func=cmd_query)

    export = _sub(
        sub,
        "export",
        help="run a table's export now (with progress), or show what is exported (export status)",
        description="Exports of the DynamoDB tables in the tables file.",
        examples="  offload-assets export run Reviews\n  offload-assets export status\n  offload-assets export status Reviews --format json",
    )
    export_sub = export.add_subparsers(dest="export_command", required=True, metavar="ACTION")
    run = _sub(
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
    _tables_option(run)
    run.set_defaults(func=cmd_export_run)
    status = _sub(
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
    _tables_option(status)
    status.set_defaults(func=cmd_export_status)

    convert = _sub(
        sub,
        "convert",
        help="convert a DynamoDB export (DynamoDB JSON) to Parquet files",
        description="Convert one DynamoDB export to Parquet with the project's converter: type descriptors stripped,\n"
        "one schema decided from every value, values that do not fit kept in _rescued_data.\n"
        "--input: an export directory (AWSDynamoDB/<id>/), its data/ directory, a partition prefix holding\n"
        "one export, a single .json.gz file, or any directory of .json/.json.gz files; local or s3://.\n"
        "--output: a directory (local or s3://) that receives part-NNNNN.parquet; earlier part files in it\n"
        "are replaced.",
        examples="  offload-assets convert --input ./my-export/ --output ./parquet/\n"
        "  offload-assets convert --input s3://offload-assets-local/dynamodb-offload/exports/reviews/ddb_export_timestamp=2026-11-27/ \\\n"
        "                         --output ./reviews-parquet/\n"
        "  offload-assets convert --input data.json.gz --output out/ --bad-lines quarantine --format json",
    )
    convert.add_argument("--input", required=True, metavar="PATH|S3_URI", help="the export to convert")
    convert.add_argument("--output", required=True, metavar="DIR|S3_URI", help="directory for the Parquet files")
    convert.add_argument(
        "--table-name", default=None, help="name used in error messages (default: the input's last path part)"
    )
    convert.add_argument(
        "--compression", choices=["zstd", "snappy"], default="zstd", help="Parquet compression (default zstd)"
    )
    convert.add_argument(
        "--sse-kms-key-id",
        default=None,
        metavar="KEY",
        help="s3:// output: encrypt with this KMS key (SSE-KMS); default SSE-S3 (AES256), as the assets write",
    )
    convert.add_argument(
        "--expected-bucket-owner",
        default=None,
        metavar="ACCOUNT_ID",
        help="s3:// output: refuse to write unless the bucket belongs to this account",
    )
    convert.add_argument(
        "--bad-lines",
        choices=["fail", "quarantine"],
        default="fail",
        help="a line that is not a DynamoDB item: fail (default) or set it aside in _quarantine/",
    )
    convert.add_argument(
        "--keys",
        default="",
        metavar="HASH[,RANGE]",
        help="the table's key attributes: their columns come first (hash key, then range key)",
    )
    convert.add_argument(
        "--no-verify-manifest",
        action="store_true",
        help="an export's manifest-files.json is read for its file list but MD5s and item counts are not checked",
    )
    convert.add_argument("--format", choices=["table", "json"], default="table", help="how to print the result")
    convert.set_defaults(func=cmd_convert)

    iam = _sub(
        sub,
        "iam-policy",
        help="print the least-privilege IAM policy the configured tables need (JSON)",
        description="The IAM policy document (JSON) for offloading the tables in the tables file: Scan or\n"
        "ExportTableToPointInTime on those DynamoDB tables only, S3 on their export and Parquet prefixes\n"
        "only, Glue on their database and tables, Athena on one workgroup, KMS on the tables' keys.",
        examples="  offload-assets iam-policy --region eu-west-1 --account-id 123456789012 > policy.json\n"
        "  offload-assets iam-policy Reviews --athena-results s3://my-results/athena/ --kms-key arn:aws:kms:...",
    )
    iam.add_argument("table", nargs="*", help="tables to cover (default: all in the tables file)")
    iam.add_argument("--region", default="*", help="AWS region in the ARNs (default: any)")
    iam.add_argument("--account-id", default="*", help="AWS account id in the ARNs (default: any)")
    iam.add_argument(
        "--athena-workgroup", default="primary", help="Athena workgroup for queries ('' for none; default primary)"
    )
    iam.add_argument(
        "--athena-results", default=None, metavar="S3_URI", help="Athena result location to allow (s3://bucket/prefix/)"
    )
    iam.add_argument(
        "--kms-key", default=None, metavar="ARN", help="extra KMS key ARN to allow (tables' sse_kms_key_id are added)"
    )
    _tables_option(iam)
    iam.set_defaults(func=cmd_iam_policy)

    local = _sub(
        sub,
        "local",
        help="manage the local AWS emulator (start, stop, status, reset, pitr)",
        description="The local AWS emulator (moto) serving DynamoDB, S3, Glue and Athena on a loopback port. It starts\n"
        "by itself when anything needs it; its state is saved in $OFFLOAD_ASSETS_HOME/emulator/ and restored.\n"
        "  start   start it now (prints its endpoint)\n"
        "  stop    stop it; its state is saved and comes back at the next start\n"
        "  status  exit 0 if it is running, 3 if not\n"
        "  reset   stop it and delete everything it held\n"
        "  pitr    give TABLE point-in-time recovery since --days ago, so native exports (backfills)\n"
        "          of past days work locally; the emulator still exports the table as it is now",
        examples="  offload-assets local status || offload-assets local start\n  offload-assets local reset\n"
        "  offload-assets local pitr Reviews --days 8   # then backfill the last 7 days (export_method: native)",
    )
    local.add_argument("action", choices=["start", "stop", "status", "reset", "pitr"])
    local.add_argument("table", nargs="?", default=None, help="pitr: the DynamoDB table (in the local emulator)")
    local.add_argument("--days", type=float, default=8, help="pitr: days of recovery history, at most 35 (default 8)")
    local.set_defaults(func=cmd_local)

    dev = _sub(
        sub,
        "dev",
        help="start the Dagster UI (dagster dev) on the project's local instance",
        description="Run `dagster dev -w workspace.yaml` on 127.0.0.1 with DAGSTER_HOME=$OFFLOAD_ASSETS_HOME/dagster_home,\n"
        "the instance `offload-assets demo` records its runs in. Stop it with Ctrl-C.",
        examples="  offload-assets dev\n  offload-assets dev --port 3001",
    )
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--workspace", default="workspace.yaml", help="workspace file (default: ./workspace.yaml)")
    dev.set_defaults(func=cmd_dev)

    from offload_assets.cli.deploy import add_deploy_parser

    add_deploy_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        _err(f"offload-assets {args.command}: error: {err}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # the reason, not a traceback, for operational failures
        if os.environ.get("OFFLOAD_ASSETS_DEBUG"):
            raise
        _err(f"error: {type(err).__name__}: {err}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
