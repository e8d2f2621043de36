"""Publishing a partition's Parquet snapshot to the catalog, and removing what it replaces.

Publishing points the catalog partition at the newest complete run directory (see
:mod:`offload_assets.snapshot.build` for the layout), and only then deletes the older ones, so SQL
readers never see half a snapshot and a re-run replaces instead of appending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.aws.s3_writes import enforce_s3_settings
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
from offload_assets.snapshot.build import (
    MissingSnapshotError,
    SnapshotManifest,
    latest_complete_snapshot,
    list_run_dirs,
)
from offload_assets.table_spec import TableSpec

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
