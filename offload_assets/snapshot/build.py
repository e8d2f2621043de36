"""Parquet snapshots: build one from an export, publish it to the catalog, remove what it replaces.

Each run writes to its own directory below the partition::

    <parquet_root>/ddb_export_timestamp=<date>/run-<utc time>-<run id>/part-00000.parquet
                                                                   .../_snapshot.json   (written last)

``_snapshot.json`` marks a complete snapshot and carries its schema and counts. Publishing
points the catalog partition at the newest complete run directory, and only then deletes the
older ones, so SQL readers never see half a snapshot and a re-run replaces instead of appending.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.aws.s3_writes import encrypted_output_filesystem, enforce_s3_settings, s3_put_kwargs
from offload_assets.catalog.crawler import CrawlerFailedError, CrawlerTimeoutError, CrawlOutcome, run_crawler
from offload_assets.catalog.glue_tables import (
    CatalogTable,
    SchemaConflictError,
    get_catalog_table,
    list_partitions,
    merge_table_schema,
    register_partition,
    register_table,
    sync_partition_columns,
)
from offload_assets.catalog.latest_view import LatestViewOutcome, latest_view_name, publish_latest_view
from offload_assets.catalog.projection import projection_parameters
from offload_assets.catalog.retention import (
    RetentionOutcome,
    RetentionRefusedError,
    apply_retention,
    check_retention_admits,
)
from offload_assets.export.layout import ExportManifest, latest_completed_export
from offload_assets.table_spec import TableSpec

SNAPSHOT_MANIFEST = "_snapshot.json"
_RUN_DIR_RE = re.compile(r"^run-\d{8}T\d{6}\d*Z-[A-Za-z0-9]+$")


class MissingExportError(RuntimeError):
    """No complete export exists for the partition being converted."""


class MissingSnapshotError(RuntimeError):
    """No complete Parquet snapshot exists for the partition being published."""


@dataclass(frozen=True)
class SnapshotManifest:
    bucket: str
    run_dir: str  # key prefix without trailing '/'
    partition_key: str
    export_id: str
    rows: int
    files: tuple[dict[str, Any], ...]
    schema: pa.Schema
    rescued_counts: dict[str, int]
    created: str
    extra: dict[str, Any]

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.run_dir}/"

    @property
    def total_bytes(self) -> int:
        return sum(int(f.get("bytes", 0)) for f in self.files)


def schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def new_run_dir(spec: TableSpec, partition_key: str, run_id: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    token = re.sub(r"[^A-Za-z0-9]", "", run_id)[:12] or "manual"
    return f"{spec.parquet_partition_prefix(partition_key)}/run-{now.strftime('%Y%m%dT%H%M%S%f')}Z-{token}"


def find_export_for_partition(s3: Any, spec: TableSpec, partition_key: str) -> ExportManifest:
    manifest = latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(partition_key))
    if manifest is None:
        raise MissingExportError(
            f"table {spec.dynamodb_table!r}, partition {partition_key}: no complete export under "
            f"s3://{spec.s3_bucket}/{spec.export_prefix(partition_key)}/AWSDynamoDB/ "
            "(materialize the raw export asset for this partition first)"
        )
    return manifest


def write_snapshot_manifest(
    s3: Any,
    *,
    bucket: str,
    run_dir: str,
    partition_key: str,
    export_id: str,
    rows: int,
    files: list[dict[str, Any]],
    schema: pa.Schema,
    rescued_counts: dict[str, int],
    extra: dict[str, Any] | None = None,
    put_kwargs: dict[str, Any] | None = None,
) -> SnapshotManifest:
    body = {
        "partition_key": partition_key,
        "export_id": export_id,
        "rows": rows,
        "files": files,
        "schema": schema_to_text(schema),
        "rescued_counts": rescued_counts,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "extra": extra or {},
    }
    s3.put_object(
        Bucket=bucket,
        Key=f"{run_dir}/{SNAPSHOT_MANIFEST}",
        Body=json.dumps(body, indent=2).encode(),
        **(put_kwargs or {}),
    )
    return _snapshot_from(bucket, run_dir, body)


def _snapshot_from(bucket: str, run_dir: str, body: dict[str, Any]) -> SnapshotManifest:
    return SnapshotManifest(
        bucket=bucket,
        run_dir=run_dir,
        partition_key=body["partition_key"],
        export_id=body["export_id"],
        rows=int(body["rows"]),
        files=tuple(body["files"]),
        schema=schema_from_text(body["schema"]),
        rescued_counts=dict(body.get("rescued_counts", {})),
        created=body["created"],
        extra=dict(body.get("extra", {})),
    )


def list_run_dirs(s3: Any, *, bucket: str, partition_prefix: str) -> list[str]:
    """Run directories (complete or not) of one partition, oldest first."""
    prefix = partition_prefix.rstrip("/") + "/"
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            name = cp["Prefix"][len(prefix) :].rstrip("/")
            if _RUN_DIR_RE.match(name):
                out.append(prefix + name)
    return sorted(out)


def read_snapshot_manifest(s3: Any, *, bucket: str, run_dir: str) -> SnapshotManifest | None:
    try:
        body = json.loads(s3.get_object(Bucket=bucket, Key=f"{run_dir}/{SNAPSHOT_MANIFEST}")["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
    return _snapshot_from(bucket, run_dir, body)


def latest_complete_snapshot(s3: Any, spec: TableSpec, partition_key: str) -> SnapshotManifest | None:
    for run_dir in reversed(
        list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition_key))
    ):
        manifest = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=run_dir)
        if manifest is not None:
            return manifest
    return None


_PUBLISH_ATTEMPTS = 5
#: Errors that re-running cannot fix (a schema conflict, retention refusing the date, a crawler
#: that did not finish): the Dagster skin fails the run without retries.
PublishRefusedErrors = (SchemaConflictError, RetentionRefusedError, CrawlerTimeoutError, CrawlerFailedError)


@dataclass(frozen=True)
class PublishResult:
    snapshot: SnapshotManifest
    table_change: str
    partition_change: str
    removed_run_dirs: tuple[str, ...]
    location: str
    partitions_resynced: int = 0
    latest_view: LatestViewOutcome | None = None
    retention: RetentionOutcome | None = None
    crawl: CrawlOutcome | None = None


def table_facts(
    spec: TableSpec, snapshot: SnapshotManifest, partition_key: str, current: dict[str, str]
) -> dict[str, str]:
    """Table parameters: what the table is, and the facts of its newest snapshot.

    Publishing an older partition (a backfill) keeps the newest snapshot's facts.
    """
    facts = {
        "offload_assets.source_table": spec.dynamodb_table,
        "offload_assets.export_method": spec.export_method,
        "offload_assets.catalog.latest_view": latest_view_name(spec.catalog_table),
        "offload_assets.retention_snapshots": str(spec.retention_snapshots or "all"),
    }
    newest = current.get("offload_assets.latest_partition", "")
    if newest > partition_key:
        facts.update(
            {
                k: v
                for k, v in current.items()
                if k.startswith("offload_assets.latest_") and k != "offload_assets.catalog.latest_view"
            }
        )
    else:
        facts.update(
            {
                "offload_assets.latest_partition": partition_key,
                "offload_assets.latest_export_id": snapshot.export_id,
                "offload_assets.latest_item_count": str(snapshot.rows),
                "offload_assets.latest_export_time": spec.export_time(partition_key).isoformat(),
            }
        )
    if spec.partition_projection:
        facts.update(projection_parameters(spec))
    return facts


def partition_facts(snapshot: SnapshotManifest) -> dict[str, str]:
    """Partition parameters: the snapshot's own facts (the same snapshot always gives the same facts)."""
    return {
        "offload_assets.export_id": snapshot.export_id,
        "offload_assets.rows": str(snapshot.rows),
        "offload_assets.files": str(len(snapshot.files)),
        "offload_assets.bytes": str(snapshot.total_bytes),
        "offload_assets.run_dir": snapshot.run_dir.rsplit("/", 1)[-1],
        "offload_assets.snapshot_created": snapshot.created,
    }


def _delete_older_runs(s3: Any, spec: TableSpec, partition_key: str, keep_run_dir: str) -> list[str]:
    removed = []
    for run_dir in list_run_dirs(
        s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition_key)
    ):
        if run_dir < keep_run_dir:
            delete_prefix(s3, bucket=spec.s3_bucket, prefix=run_dir + "/")
            removed.append(run_dir)
    return removed


def publish_snapshot(
    glue: Any,
    s3: Any,
    spec: TableSpec,
    partition_key: str,
    *,
    table_parameters: dict[str, str] | None = None,
    crawler_poll_seconds: float = 10.0,
) -> PublishResult:
    """Point the catalog at the newest complete snapshot of a partition, then clean up.

    In order: refuse a partition retention would delete at once; merge the snapshot's schema
    into the table's (new columns appended, types never changed: a conflict is refused);
    create/update the table, give older partitions the new column list, create/update the
    partition; delete older runs of that day; apply retention; point ``<table>_latest`` at the
    newest snapshot. Every step writes only what changed, so re-publishing changes nothing.
    """
    s3 = enforce_s3_settings(s3, spec)
    snapshot = latest_complete_snapshot(s3, spec, partition_key)
    if snapshot is None:
        raise MissingSnapshotError(
            f"table {spec.dynamodb_table!r}, partition {partition_key}: no complete Parquet snapshot under "
            f"s3://{spec.s3_bucket}/{spec.parquet_partition_prefix(partition_key)}/ "
            "(materialize the Parquet snapshot asset for this partition first)"
        )
    if spec.catalog_mode == "crawler":
        return _publish_with_crawler(glue, s3, spec, partition_key, snapshot, crawler_poll_seconds)
    db, name = spec.catalog_database, spec.catalog_table
    table_change, current, schema = _register_table_for(glue, spec, partition_key, snapshot, table_parameters)
    resynced = 0
    if current is not None and [(f.name, f.type) for f in current.schema] != [(f.name, f.type) for f in schema]:
        resynced = sync_partition_columns(glue, database=db, table=name, schema=schema)
    location = snapshot.s3_uri
    partition_change = register_partition(
        glue,
        database=db,
        table=name,
        value=partition_key,
        location=location,
        schema=schema,
        parameters=partition_facts(snapshot),
    )
    removed = _delete_older_runs(s3, spec, partition_key, snapshot.run_dir)
    retention = apply_retention(glue, s3, spec) if spec.retention_snapshots else None
    values = list(retention.kept) if retention else [p.value for p in list_partitions(glue, database=db, table=name)]
    view = publish_latest_view(
        glue, database=db, table=name, schema=schema, partition_values=values, source_table=spec.dynamodb_table
    )
    return PublishResult(snapshot, table_change, partition_change, tuple(removed), location, resynced, view, retention)


def _register_table_for(
    glue: Any, spec: TableSpec, partition_key: str, snapshot: SnapshotManifest, table_parameters: dict[str, str] | None
) -> tuple[str, CatalogTable | None, pa.Schema]:
    """Merge the snapshot into the table schema and write it, safe against concurrent publishers.

    Two partitions published at once (a backfill) may each add columns. Each update names the
    table version it merged from (AWS refuses a stale one), and afterwards the table is read back:
    if another publisher's write dropped this snapshot's columns, the merge is redone.
    """
    db, name = spec.catalog_database, spec.catalog_table
    for _ in range(_PUBLISH_ATTEMPTS):
        current = get_catalog_table(glue, db, name)
        registered = [p.value for p in list_partitions(glue, database=db, table=name)] if current else []
        check_retention_admits(spec, partition_key, registered)
        schema = merge_table_schema(
            current.schema if current else None, snapshot.schema, where=f"table {db}.{name}, partition {partition_key}"
        )
        try:
            change = register_table(
                glue,
                database=db,
                table=name,
                location=f"s3://{spec.s3_bucket}/{spec.parquet_root}/",
                schema=schema,
                parameters={
                    **table_facts(spec, snapshot, partition_key, current.parameters if current else {}),
                    **(table_parameters or {}),
                },
                description=f"Daily snapshots of DynamoDB table {spec.dynamodb_table}, offloaded by offload_assets",
                expected_version=current.version_id if current else None,
            )
        except (glue.exceptions.ConcurrentModificationException, glue.exceptions.AlreadyExistsException):
            continue
        written = get_catalog_table(glue, db, name)
        if (
            written is not None
            and merge_table_schema(written.schema, snapshot.schema, where=name).names == written.schema.names
        ):
            return change, current, written.schema
    raise RuntimeError(
        f"table {db}.{name}, partition {partition_key}: the Glue table kept changing while publishing "
        f"({_PUBLISH_ATTEMPTS} attempts); re-run the catalog step"
    )


def _publish_with_crawler(
    glue: Any, s3: Any, spec: TableSpec, partition_key: str, snapshot: SnapshotManifest, poll_seconds: float
) -> PublishResult:
    """Crawler mode: leave one complete run per day on S3, apply retention to files, let the crawler register."""
    removed = _delete_older_runs(s3, spec, partition_key, snapshot.run_dir)
    crawl = run_crawler(glue, spec, poll_seconds=poll_seconds)
    table = get_catalog_table(glue, spec.catalog_database, spec.catalog_table)
    if table is None:
        raise MissingSnapshotError(
            f"table {spec.dynamodb_table!r}: crawler {crawl.crawler!r} succeeded but created no table "
            f"{spec.catalog_database}.{spec.catalog_table}"
        )
    values = sorted({p.value for p in list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)})
    view = publish_latest_view(
        glue,
        database=spec.catalog_database,
        table=spec.catalog_table,
        schema=table.schema,
        partition_values=values,
        source_table=spec.dynamodb_table,
    )
    return PublishResult(snapshot, "crawled", "crawled", tuple(removed), snapshot.s3_uri, 0, view, None, crawl)


def build_snapshot(
    s3: Any,
    filesystem: Any,
    glue: Any,
    spec: TableSpec,
    partition_key: str,
    *,
    run_id: str,
    put_kwargs: dict[str, Any] | None = None,
) -> SnapshotManifest:
    """Convert the partition's newest complete export into a new, unpublished run directory.

    The catalog table's current schema goes into the converter, so existing columns keep
    their types and the new snapshot never disagrees with the table. Parquet files are uploaded
    through boto3 with the table's encryption settings (pyarrow's S3 writer cannot send them).
    """
    from offload_assets.conversion import ConversionOptions, convert_export_to_parquet

    s3 = enforce_s3_settings(s3, spec)
    put_kwargs = {**s3_put_kwargs(spec), **(put_kwargs or {})}
    output_filesystem = encrypted_output_filesystem(s3, filesystem, put_kwargs)

    export = find_export_for_partition(s3, spec, partition_key)
    current = get_catalog_table(glue, spec.catalog_database, spec.catalog_table)
    run_dir = new_run_dir(spec, partition_key, run_id)
    result = convert_export_to_parquet(
        [f"{spec.s3_bucket}/{f.key}" for f in export.data_files],
        filesystem,
        f"{spec.s3_bucket}/{run_dir}",
        output_filesystem,
        table_name=spec.dynamodb_table,
        existing_schema=current.schema if current else None,
        options=ConversionOptions(compression=spec.compression),
    )
    return write_snapshot_manifest(
        s3,
        bucket=spec.s3_bucket,
        run_dir=run_dir,
        partition_key=partition_key,
        export_id=export.export_id,
        rows=result.rows,
        files=[{"path": f.path, "rows": f.rows, "bytes": f.bytes} for f in result.files],
        schema=result.schema,
        rescued_counts=dict(result.rescued_counts),
        extra={
            "export_item_count": export.item_count,
            "export_time": export.export_time,  # what the freshness check measures the age from
            "input_bytes": result.input_bytes,
            "renamed_columns": dict(result.renamed_columns),
            "quarantined_lines": result.quarantined_lines,
        },
        put_kwargs=put_kwargs,
    )
