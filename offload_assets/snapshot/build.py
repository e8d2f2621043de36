"""Parquet snapshots: build one from an export into its own run directory.

Each run writes to its own directory below the partition::

    <parquet_root>/ddb_export_timestamp=<date>/run-<utc time>-<run id>/part-00000.parquet
                                                                   .../_snapshot.json   (written last)

``_snapshot.json`` marks a complete snapshot and carries its schema and counts. Publishing it
to the catalog is :mod:`offload_assets.snapshot.publish`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from offload_assets.aws.s3_writes import encrypted_output_filesystem, enforce_s3_settings, s3_put_kwargs
from offload_assets.catalog.glue_tables import (
    get_catalog_table,
)
from offload_assets.conversion.schema_codec import schema_from_text, schema_to_text
from offload_assets.export.layout import ExportManifest, latest_completed_export
from offload_assets.table_spec import TableSpec

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient
    from types_boto3_s3 import S3Client

SNAPSHOT_MANIFEST = "_snapshot.json"
#: ``extra["kind"]`` of a snapshot that stages a day's changes, not a full state (Iceberg tables fed by
#: incremental exports, :mod:`offload_assets.iceberg.incremental`); a full snapshot has no kind.
CHANGES_KIND = "changes"
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
    def kind(self) -> str:
        """``"full"`` (the table's state) or :data:`CHANGES_KIND` (a day's upserts, deletes in ``extra``)."""
        return str(self.extra.get("kind", "full"))

    @property
    def total_bytes(self) -> int:
        return sum(int(f.get("bytes", 0)) for f in self.files)


def new_run_dir(spec: TableSpec, partition_key: str, run_id: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    token = re.sub(r"[^A-Za-z0-9]", "", run_id)[:12] or "manual"
    return f"{spec.parquet_partition_prefix(partition_key)}/run-{now.strftime('%Y%m%dT%H%M%S%f')}Z-{token}"


def find_export_for_partition(s3: S3Client, spec: TableSpec, partition_key: str) -> ExportManifest:
    manifest = latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(partition_key))
    if manifest is None:
        raise MissingExportError(
            f"table {spec.dynamodb_table!r}, partition {partition_key}: no complete export under "
            f"s3://{spec.s3_bucket}/{spec.export_prefix(partition_key)}/AWSDynamoDB/ "
            "(materialize the raw export asset for this partition first)"
        )
    return manifest


def key_attributes(dynamodb: Any, table_name: str) -> list[str]:
    """The table's key attribute names, partition key first (DescribeTable)."""
    schema = dynamodb.describe_table(TableName=table_name)["Table"]["KeySchema"]
    return [k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH")]


def table_key_attributes(dynamodb: Any, table_name: str, log: Any = None) -> tuple[str, ...]:
    """The table's hash key then range key (DescribeTable), the columns a new snapshot puts first.

    A table DescribeTable cannot see (an export adopted from another account, a deleted table)
    converts without them: its new columns keep name order (``log`` is told why).
    """
    try:
        return tuple(key_attributes(dynamodb, table_name))
    except dynamodb.exceptions.ClientError as err:
        if log is not None:
            log(
                f"table {table_name!r}: DescribeTable failed ({err.response.get('Error', {}).get('Code')}); "
                "new columns are ordered by name, key attributes not first"
            )
        return ()


def expected_data_files(export: ExportManifest) -> dict[str, Any]:
    """What the export's ``manifest-files.json`` says of each data file (input path -> expected MD5 and items)."""
    from offload_assets.conversion import ExpectedDataFile

    return {f"{export.bucket}/{f.key}": ExpectedDataFile(f.md5, f.item_count) for f in export.data_files}


def write_snapshot_manifest(
    s3: S3Client,
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


def list_run_dirs(s3: S3Client, *, bucket: str, partition_prefix: str) -> list[str]:
    """Run directories (complete or not) of one partition, oldest first."""
    prefix = partition_prefix.rstrip("/") + "/"
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            name = cp["Prefix"][len(prefix) :].rstrip("/")
            if _RUN_DIR_RE.match(name):
                out.append(prefix + name)
    return sorted(out)


def read_snapshot_manifest(s3: S3Client, *, bucket: str, run_dir: str) -> SnapshotManifest | None:
    try:
        body = json.loads(s3.get_object(Bucket=bucket, Key=f"{run_dir}/{SNAPSHOT_MANIFEST}")["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None
    return _snapshot_from(bucket, run_dir, body)


def latest_complete_snapshot(s3: S3Client, spec: TableSpec, partition_key: str) -> SnapshotManifest | None:
    for run_dir in reversed(
        list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition_key))
    ):
        manifest = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=run_dir)
        if manifest is not None:
            return manifest
    return None


def build_snapshot(
    s3: S3Client,
    filesystem: Any,
    glue: GlueClient,
    spec: TableSpec,
    partition_key: str,
    *,
    run_id: str,
    key_attributes: tuple[str, ...] = (),
    put_kwargs: dict[str, Any] | None = None,
) -> SnapshotManifest:
    """Convert the partition's newest complete export into a new, unpublished run directory.

    The catalog table's current schema goes into the converter, so existing columns keep
    their types and places and the new snapshot never disagrees with the table; new columns
    follow, ``key_attributes`` (hash key, then range key) first. Every data file's MD5 and item
    count are checked against the export's ``manifest-files.json`` while it is read: a file that
    differs fails the conversion (:class:`~offload_assets.conversion.DataFileMismatch`) and no
    snapshot is written. Parquet files are uploaded through boto3 with the table's encryption
    settings (pyarrow's S3 writer cannot send them).
    """
    from offload_assets.conversion import ConversionOptions, convert_export_to_parquet

    s3 = enforce_s3_settings(s3, spec)
    put_kwargs = {**s3_put_kwargs(spec), **(put_kwargs or {})}
    output_filesystem = encrypted_output_filesystem(s3, filesystem, put_kwargs)

    export = find_export_for_partition(s3, spec, partition_key)
    current = get_catalog_table(glue, spec.catalog_database, spec.catalog_table)
    run_dir = new_run_dir(spec, partition_key, run_id)
    result = convert_export_to_parquet(
        [f"{export.bucket}/{f.key}" for f in export.data_files],
        filesystem,
        f"{spec.s3_bucket}/{run_dir}",
        output_filesystem,
        table_name=spec.dynamodb_table,
        existing_schema=current.schema if current else None,
        options=ConversionOptions(compression=spec.compression, key_attributes=tuple(key_attributes)),
        expected_files=expected_data_files(export),
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
