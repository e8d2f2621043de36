"""Publish a partition to the table's Iceberg table: one snapshot per partition, changes only.

The Parquet snapshot asset converts the partition's export as for Hive tables (same converter,
same types, the table's schema handed in so existing columns keep their types). Publishing then
diffs that staged state against the Iceberg table by primary key and commits only the inserted,
updated and deleted items, in ONE snapshot whose summary records the partition, the export and
the counts. The staged Parquet files are removed afterwards: the Iceberg table holds the data. (A day of an
incremental export is staged as its changes only and committed by
:mod:`offload_assets.iceberg.incremental`, which falls back to this module for every full export.)

Rules (enforced here, documented in the README):

* a partition already committed with the same export is not applied again (re-runs change nothing);
* partitions commit in date order: publishing a partition older than the newest committed one is
  refused (it would roll newer changes back); a backfill runs oldest first;
* re-running the newest partition with a new export diffs against the current state, so it
  converges to that export exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.aws.s3_writes import enforce_s3_settings
from offload_assets.catalog.glue_tables import ARROW_SCHEMA_PARAM, merge_table_schema
from offload_assets.conversion.schema_codec import schema_from_text, schema_to_text
from offload_assets.iceberg.catalog import IcebergLocation, create_table, load_table
from offload_assets.iceberg.changes import AppliedChanges, apply_changes, live_rows, table_key_columns
from offload_assets.iceberg.diff import diff_full_state
from offload_assets.iceberg.schema import key_columns_of
from offload_assets.snapshot.build import MissingSnapshotError, SnapshotManifest, latest_complete_snapshot
from offload_assets.table_spec import TableSpec

#: Snapshot summary properties of a partition commit.
PARTITION = "offload-assets.partition"
EXPORT_ID = "offload-assets.export-id"
EXPORT_TIME = "offload-assets.export-time"
EXPORT_ITEMS = "offload-assets.export-items"
SOURCE_TABLE = "offload-assets.source-table"
COUNT_KEYS = {k: f"offload-assets.{k}" for k in ("inserted", "updated", "deleted", "unchanged", "previous-rows")}


class PartitionOrderError(ValueError):
    """A partition older than the newest committed one was published (it would undo newer changes)."""


def iceberg_location(spec: TableSpec) -> IcebergLocation:
    """``s3://<bucket>/<prefix>/iceberg/<table>``, registered as ``"<database>"."<table>"``."""
    return IcebergLocation(
        spec.catalog_database,
        spec.catalog_table,
        f"s3://{spec.s3_bucket}/{spec.s3_prefix}/iceberg/{spec.catalog_table}",
    )


@dataclass(frozen=True)
class PartitionCommit:
    """One partition's commit as recorded in a snapshot summary."""

    snapshot_id: int
    timestamp_ms: int
    partition_key: str
    export_id: str
    summary: dict[str, str] = field(repr=False)


def partition_commits(table: Table) -> list[PartitionCommit]:
    """Our commits, oldest first, from the snapshots still in the table's metadata."""
    out = []
    for snap in table.metadata.snapshots:
        props = snap.summary.additional_properties if snap.summary else {}
        if PARTITION in props:
            out.append(
                PartitionCommit(snap.snapshot_id, snap.timestamp_ms, props[PARTITION], props.get(EXPORT_ID, ""), props)
            )
    return out


@dataclass(frozen=True)
class IcebergPublishResult:
    table: str
    change: str  # "created" / "committed" / "already committed"
    snapshot_id: int | None
    counts: dict[str, int]
    rows: int
    data_files: int
    data_bytes: int  # data and delete files
    export_id: str
    applied: AppliedChanges | None = None
    removed_staging: int = 0
    summary: dict[str, str] = field(default_factory=dict)
    delete_files: int = 0  # position delete files of the current snapshot (compaction folds them in)


def _read_staged(filesystem: Any, snapshot: SnapshotManifest) -> pa.Table:
    paths = [f["path"] for f in snapshot.files]
    if not paths:
        return snapshot.schema.empty_table()
    return pq.read_table(paths, filesystem=filesystem, schema=snapshot.schema)


def _result(
    table: Table, change: str, export_id: str, applied: AppliedChanges | None, removed: int
) -> IcebergPublishResult:
    snap = table.current_snapshot()
    props = snap.summary.additional_properties if snap and snap.summary else {}
    return IcebergPublishResult(
        table=".".join(table.name()),
        change=change,
        snapshot_id=snap.snapshot_id if snap else None,
        counts={k: int(props.get(v, 0)) for k, v in COUNT_KEYS.items()},
        rows=live_rows(table),  # data file records minus position deletes (merge-on-read)
        data_files=int(props.get("total-data-files", 0)),
        data_bytes=int(props.get("total-files-size", 0)),
        delete_files=int(props.get("total-delete-files", 0)),
        export_id=export_id,
        applied=applied,
        removed_staging=removed,
        summary=dict(props),
    )


def check_partition_order(commits: list[PartitionCommit], partition_key: str, where: str) -> PartitionCommit | None:
    """The commit of ``partition_key`` if there is one; refuses a partition older than the newest."""
    if not commits:
        return None
    newest = max(c.partition_key for c in commits)
    if partition_key < newest:
        raise PartitionOrderError(
            f"{where}: partition {partition_key} is older than the newest committed partition {newest}; "
            "an Iceberg table applies partitions in date order (a backfill runs oldest first). To rebuild "
            "history, drop the Iceberg table and backfill from the first partition."
        )
    same = [c for c in commits if c.partition_key == partition_key]
    return same[-1] if same else None


def publish_iceberg(
    catalog: GlueCatalog,
    s3: Any,
    filesystem: Any,
    spec: TableSpec,
    partition_key: str,
    key_attributes: tuple[str, ...],
) -> IcebergPublishResult:
    """Commit the partition's staged snapshot to the Iceberg table (created on the first partition).

    Another writer committing first (change capture, a concurrent run) makes the optimistic commit
    fail with nothing of ours landed: the whole decision (order, diff, counts) is redone on the
    table's new current snapshot, up to :data:`COMMIT_ATTEMPTS` times, so no change is lost.
    """
    return commit_retrying()(_publish_once, catalog, s3, filesystem, spec, partition_key, key_attributes)


#: Optimistic commits tried before a publish gives up on a table other writers keep moving.
COMMIT_ATTEMPTS = 8


def commit_retrying(
    retry_on: tuple[type[BaseException], ...] = (CommitFailedException, ValidationException),
    attempts: int = COMMIT_ATTEMPTS,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """Redo a whole commit decision after a lost optimistic commit (nothing of it landed), up to
    ``attempts`` times, with random exponential back-off: Iceberg publishes and applied changes
    (pyiceberg's lost commits), Streams capture steps (:class:`~offload_assets.cdc.capture.CommitConflict`)."""
    return Retrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.2, max=5),
        before_sleep=before_sleep,
        reraise=True,
    )


def _publish_once(
    catalog: GlueCatalog,
    s3: Any,
    filesystem: Any,
    spec: TableSpec,
    partition_key: str,
    key_attributes: tuple[str, ...],
) -> IcebergPublishResult:
    s3 = enforce_s3_settings(s3, spec)
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    snapshot = latest_complete_snapshot(s3, spec, partition_key)
    location = iceberg_location(spec)
    table = load_table(catalog, location)
    if snapshot is None:
        done = check_partition_order(partition_commits(table), partition_key, where) if table else None
        if done is not None:  # already committed, staging removed: nothing to do
            return _result(table, "already committed", done.export_id, None, 0)
        raise MissingSnapshotError(
            f"{where}: no complete Parquet snapshot under s3://{spec.s3_bucket}/{spec.parquet_partition_prefix(partition_key)}/ "
            "(materialize the Parquet snapshot asset for this partition first)"
        )
    change = "committed"
    if table is None:
        table = create_table(catalog, location, snapshot.schema, key_columns_of(snapshot.schema, key_attributes))
        change = "created"
    done = check_partition_order(partition_commits(table), partition_key, where)
    if done is not None and done.export_id == snapshot.export_id:
        removed = delete_prefix(s3, bucket=spec.s3_bucket, prefix=snapshot.run_dir + "/")
        return _result(table, "already committed", done.export_id, None, removed)

    keys = table_key_columns(table)
    current = table.scan().to_arrow()
    diff = diff_full_state(current, _read_staged(filesystem, snapshot), keys)
    if done is not None and not (diff.upserts.num_rows or diff.deletes.num_rows):
        # the same partition again, with a new export of the same state: nothing to commit
        removed = delete_prefix(s3, bucket=spec.s3_bucket, prefix=snapshot.run_dir + "/")
        return _result(table, "already committed", done.export_id, None, removed)
    stored = table.properties.get(ARROW_SCHEMA_PARAM)
    merged = merge_table_schema(schema_from_text(stored) if stored else None, snapshot.schema, where=where)
    summary = {
        PARTITION: partition_key,
        EXPORT_ID: snapshot.export_id,
        EXPORT_TIME: spec.export_time(partition_key).isoformat(),
        EXPORT_ITEMS: str(snapshot.rows),
        SOURCE_TABLE: spec.dynamodb_table,
        **{COUNT_KEYS[k]: str(v) for k, v in diff.counts().items()},
        COUNT_KEYS["previous-rows"]: str(current.num_rows),
    }
    applied = apply_changes(
        table,
        upserts=diff.upserts,
        deletes=diff.deletes,
        summary=summary,
        table_properties={ARROW_SCHEMA_PARAM: schema_to_text(merged)},
    )
    removed = delete_prefix(s3, bucket=spec.s3_bucket, prefix=snapshot.run_dir + "/")
    return _result(table, change, snapshot.export_id, applied, removed)


#: The result of a partition's commit as this module reports it (also for :mod:`offload_assets.iceberg.incremental`).
publish_result = _result

__all__ = [
    "COUNT_KEYS",
    "EXPORT_ID",
    "PARTITION",
    "IcebergPublishResult",
    "PartitionCommit",
    "PartitionOrderError",
    "commit_retrying",
    "iceberg_location",
    "partition_commits",
    "publish_iceberg",
    "publish_result",
]
