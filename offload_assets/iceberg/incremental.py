"""Apply a day's DynamoDB incremental export to the Iceberg table directly: the changes, not the table.

An INCREMENTAL_EXPORT holds one line per changed item (see :mod:`offload_assets.export.incremental`):
its latest ``NewImage`` per key is an upsert, a key without one a delete. With
``export_method: incremental`` the raw export asset still writes the day's merged full export
(previous export + the day's changes: the chain the next day starts from, and the Hive path's
input); its manifest names the INCREMENTAL_EXPORT it was built from. For an Iceberg table the day
is then applied in the asset graph's two usual steps, so lineage and blocking checks keep their
places (export -> Parquet snapshot -> Iceberg table):

1. :func:`stage_incremental_changes` (the Parquet snapshot asset) converts ONLY the changed items
   (the converter's rules, the table's columns first) into a *change snapshot* in the partition's
   run directory: ``part-*.parquet`` = the upserted items, ``_deletes/part-*.parquet`` = the deleted
   keys, ``_snapshot.json`` with ``kind: changes`` and the counts against the table (previous rows,
   inserted, updated, deleted, unchanged). The merged full export is not converted.
2. :func:`publish_partition` (the catalog asset) commits a change snapshot with
   :func:`~offload_assets.iceberg.changes.apply_changes` in ONE snapshot whose summary is a
   full-export commit's (partition, export id and time, export items, counts) plus the ids of the
   incremental export and of the base export; any other snapshot goes the full-export diff path
   (:func:`~offload_assets.iceberg.publish.publish_iceberg`). A snapshot that failed its blocking
   checks is never committed, on either path.

Rules: a day is applied from its changes only when the table's newest partition commit IS the day's
base export (the export the changes were taken from); otherwise (first day, scan/native exports,
an incremental request answered by a full dump, a table that diverged) the full-export diff path
runs on the merged export. A re-run of a day already applied from the same incremental export
stages an empty change set and commits nothing. Partitions commit in date order
(:func:`~offload_assets.iceberg.publish.check_partition_order`); a change snapshot whose base is no
longer the table's newest commit when it is published is refused (re-run the Parquet snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.table import Table

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.aws.s3_writes import encrypted_output_filesystem, enforce_s3_settings, s3_put_kwargs
from offload_assets.catalog.glue_tables import ARROW_SCHEMA_PARAM, merge_table_schema
from offload_assets.cdc.iceberg_target import IcebergTarget
from offload_assets.conversion.export_lines import normalize_item
from offload_assets.conversion.options import ConversionOptions
from offload_assets.conversion.parquet_output import ParquetPartsWriter
from offload_assets.conversion.python_engine import collect_stats, convert_items
from offload_assets.conversion.schema_codec import schema_from_text, schema_to_text
from offload_assets.conversion.schema_plan import plan_schema
from offload_assets.export.incremental import read_change_set
from offload_assets.export.layout import ExportManifest, latest_completed_export, list_completed_exports
from offload_assets.export.partition_export import incremental_export_prefix
from offload_assets.iceberg.catalog import load_table
from offload_assets.iceberg.changes import apply_changes, table_key_columns
from offload_assets.iceberg.publish import (
    COUNT_KEYS,
    EXPORT_ID,
    EXPORT_ITEMS,
    EXPORT_TIME,
    PARTITION,
    SOURCE_TABLE,
    IcebergPublishResult,
    PartitionCommit,
    check_partition_order,
    commit_retrying,
    iceberg_location,
    partition_commits,
    publish_iceberg,
    publish_result,
)
from offload_assets.snapshot.build import (
    CHANGES_KIND,
    SnapshotManifest,
    latest_complete_snapshot,
    new_run_dir,
    write_snapshot_manifest,
)
from offload_assets.snapshot.publish import UnpublishableSnapshotError
from offload_assets.snapshot.verdict import SnapshotVerifier, read_check_verdict
from offload_assets.table_spec import TableSpec

#: Summary properties a commit applied from an incremental export adds to a full-export commit's.
INCREMENTAL_EXPORT_ID = "offload-assets.incremental-export-id"
BASE_EXPORT_ID = "offload-assets.base-export-id"
APPLIED_FROM = "offload-assets.applied-from"  # "incremental-export"; absent on a full-export diff
DELETES_DIR = "_deletes"


class StaleChangesError(ValueError):
    """A change snapshot's base export is no longer the table's newest partition commit."""


@dataclass(frozen=True)
class DayChanges:
    """One incremental export reduced to the latest change per key, converted."""

    upserts: pa.Table  # the new images, the table's columns first
    deletes: pa.Table  # the key columns of the deleted items
    lines: int  # lines of the incremental export
    rescued_counts: dict[str, int] = field(default_factory=dict)  # column -> values rescued into _rescued_data


def convert_images(images: list[dict], existing: pa.Schema | None) -> tuple[pa.Table, dict[str, int]]:
    """Items (DynamoDB JSON) as Arrow by the converter's rules, ``existing`` first; and the rescued counts."""
    plan = plan_schema(collect_stats(images)[0], existing, ConversionOptions())
    converted = list(convert_items(images, plan))  # (batch, the running rescued counts)
    rescued = dict(converted[-1][1]) if converted else {}
    return pa.Table.from_batches([b for b, _ in converted], schema=plan.schema), rescued


def _key_image(key: bytes, key_names: tuple[str, ...]) -> dict[str, Any]:
    """The DynamoDB key image behind :func:`offload_assets.export.incremental.item_key`'s bytes."""
    return {name: {tag: value} for name, (tag, value) in zip(key_names, orjson.loads(key), strict=True)}


def table_arrow_schema(table: Table) -> pa.Schema | None:
    """The converter's schema the table records (types and DynamoDB names), else the Iceberg schema."""
    stored = table.properties.get(ARROW_SCHEMA_PARAM)
    return schema_from_text(stored) if stored else IcebergTarget(table).arrow_schema()


def convert_changes(table: Table, s3: Any, incremental: ExportManifest, key_names: tuple[str, ...]) -> DayChanges:
    """Read ``incremental``, keep each key's latest change, convert the upserts and the delete keys."""
    change_set = read_change_set(s3, incremental, key_names)
    if change_set.full_dump:
        raise ValueError(f"{incremental.s3_uri} is a full dump, not changes (use the full-export path)")
    existing = table_arrow_schema(table)
    keys = table_key_columns(table)
    images = [normalize_item(c.new_image, native=True) for c in change_set.changes.values() if c.new_image is not None]
    gone = [_key_image(k, key_names) for k, c in change_set.changes.items() if c.new_image is None]
    upserts, rescued = convert_images(images, existing) if images else (existing.empty_table(), {})
    key_schema = pa.schema([existing.field(k) for k in keys])
    deletes = convert_images(gone, existing)[0].select(list(keys)) if gone else key_schema.empty_table()
    return DayChanges(upserts=upserts, deletes=deletes, lines=change_set.lines, rescued_counts=rescued)


def count_changes(table: Table, upserts: pa.Table, deletes: pa.Table) -> dict[str, int]:
    """Inserted / updated / deleted / unchanged against the table's current rows (a scan of its keys)."""
    keys = table_key_columns(table)
    present = table.scan(selected_fields=keys).to_arrow()

    def matches(data: pa.Table) -> int:
        if not data.num_rows:
            return 0
        probe = pa.table({k: data.column(k).cast(present.schema.field(k).type) for k in keys})
        # the table's rows holding a changed key (keys are unique on both sides); Acero hashes the
        # right side, so the few changes are hashed, not the whole table (20x faster at 500k rows)
        return present.join(probe, list(keys), join_type="left semi").num_rows

    updated, deleted = matches(upserts), matches(deletes)
    return {
        "inserted": upserts.num_rows - updated,
        "updated": updated,
        "deleted": deleted,
        "unchanged": present.num_rows - updated - deleted,
        "previous-rows": present.num_rows,
        "deletes-of-absent-items": deletes.num_rows - deleted,
    }


def _newest_commit(table: Table) -> PartitionCommit | None:
    commits = partition_commits(table)
    return max(commits, key=lambda c: (c.partition_key, c.timestamp_ms)) if commits else None


def incremental_behind(s3: Any, spec: TableSpec, partition_key: str, export: ExportManifest) -> ExportManifest | None:
    """The INCREMENTAL_EXPORT the partition's merged export was built from; None if it was not built from changes."""
    summary = export.summary
    if summary.get("exportMethod") != "incremental" or summary.get("incrementalWasFullDump"):
        return None
    uri = summary.get("incrementalS3Uri")
    prefix = incremental_export_prefix(spec, partition_key)
    for manifest in list_completed_exports(s3, bucket=spec.s3_bucket, export_prefix=prefix):
        if manifest.s3_uri == uri and manifest.export_type == "INCREMENTAL_EXPORT":
            return manifest
    return None


def _write_parts(s3: Any, filesystem: Any, spec: TableSpec, directory: str, data: pa.Table) -> list[dict[str, Any]]:
    output = encrypted_output_filesystem(s3, filesystem, s3_put_kwargs(spec))
    writer = ParquetPartsWriter(
        output, f"{spec.s3_bucket}/{directory}", data.schema, ConversionOptions(compression=spec.compression)
    )
    try:
        for batch in data.to_batches():
            writer.write(batch)
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    return [{"path": f.path, "rows": f.rows, "bytes": f.bytes} for f in files]


def stage_incremental_changes(
    s3: Any,
    filesystem: Any,
    table: Table | None,
    spec: TableSpec,
    partition_key: str,
    *,
    run_id: str,
    key_names: tuple[str, ...],
) -> SnapshotManifest | None:
    """The partition's change snapshot, if the day can be applied from its incremental export; else None.

    None means "convert the merged full export" (the full-export diff path): no Iceberg table yet,
    the export is not a merge of an incremental export, or the table's newest partition commit is
    not the day's base export. A day already applied from this incremental export stages an empty
    change set (``already_applied``), which the publish step commits as nothing.
    """
    s3 = enforce_s3_settings(s3, spec)
    export = latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(partition_key))
    if table is None or export is None or not key_names:
        return None
    incremental = incremental_behind(s3, spec, partition_key, export)
    if incremental is None:
        return None
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    done = check_partition_order(partition_commits(table), partition_key, where)
    already = done is not None and done.summary.get(INCREMENTAL_EXPORT_ID) == incremental.export_id
    newest = _newest_commit(table)
    if not already and (newest is None or newest.export_id != export.summary.get("baseExportId")):
        return None
    if already:
        existing = table_arrow_schema(table)
        keys = table_key_columns(table)
        changes = DayChanges(existing.empty_table(), pa.schema([existing.field(k) for k in keys]).empty_table(), 0)
    else:
        changes = convert_changes(table, s3, incremental, key_names)
    counts = count_changes(table, changes.upserts, changes.deletes)
    run_dir = new_run_dir(spec, partition_key, run_id)
    files = _write_parts(s3, filesystem, spec, run_dir, changes.upserts)
    delete_files = _write_parts(s3, filesystem, spec, f"{run_dir}/{DELETES_DIR}", changes.deletes)
    current = table.current_snapshot()
    return write_snapshot_manifest(
        s3,
        bucket=spec.s3_bucket,
        run_dir=run_dir,
        partition_key=partition_key,
        export_id=export.export_id,
        rows=changes.upserts.num_rows,
        files=files,
        schema=changes.upserts.schema,
        rescued_counts=changes.rescued_counts,
        extra={
            "kind": CHANGES_KIND,
            "export_item_count": export.item_count,  # the merged export: the table's rows after the day
            "export_time": export.export_time,
            "incremental_export_id": incremental.export_id,
            "incremental_s3_uri": incremental.s3_uri,
            "incremental_lines": changes.lines,
            "input_bytes": sum(f.size_bytes or 0 for f in incremental.data_files),
            "base_export_id": export.summary.get("baseExportId"),
            "base_snapshot_id": current.snapshot_id if current else None,
            "already_applied": already,
            "delete_keys": changes.deletes.num_rows,
            "delete_files": delete_files,
            **{k.replace("-", "_"): v for k, v in counts.items()},
            "quarantined_lines": 0,
        },
        put_kwargs=s3_put_kwargs(spec),
    )


def _read_files(filesystem: Any, files: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    paths = [f["path"] for f in files]
    return pq.read_table(paths, filesystem=filesystem, schema=schema)


def _commit_staged_changes(
    catalog: GlueCatalog, s3: Any, filesystem: Any, spec: TableSpec, partition_key: str, snapshot: SnapshotManifest
) -> IcebergPublishResult:
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    table = load_table(catalog, iceberg_location(spec))
    if table is None:
        raise StaleChangesError(
            f"{where}: the changes staged in {snapshot.s3_uri} need the Iceberg table, which is gone"
        )
    extra = snapshot.extra
    done = check_partition_order(partition_commits(table), partition_key, where)
    if done is not None and (
        done.summary.get(INCREMENTAL_EXPORT_ID) == extra["incremental_export_id"]
        or done.export_id == snapshot.export_id
    ):  # this day's changes, or this day's merged export (by the full path), are in the table already
        removed = delete_prefix(s3, bucket=spec.s3_bucket, prefix=snapshot.run_dir + "/")
        return publish_result(table, "already committed", done.export_id, None, removed)
    newest = _newest_commit(table)
    if newest is None or newest.export_id != extra["base_export_id"]:
        raise StaleChangesError(
            f"{where}: the changes in {snapshot.s3_uri} apply to export {extra['base_export_id']}, but the table's "
            f"newest commit is {'none' if newest is None else f'partition {newest.partition_key}, export {newest.export_id}'}; "
            "re-materialize the Parquet snapshot of this partition"
        )
    upserts = _read_files(filesystem, list(snapshot.files), snapshot.schema)
    deletes = _read_files(filesystem, extra["delete_files"])
    current = table.current_snapshot()
    if current is not None and current.snapshot_id == extra.get("base_snapshot_id"):  # the table as staged against
        counts = {k: int(extra[k.replace("-", "_")]) for k in COUNT_KEYS}
    else:  # another writer (change capture, maintenance) committed since staging: count again
        counts = count_changes(table, upserts, deletes)
    stored = table.properties.get(ARROW_SCHEMA_PARAM)
    merged = merge_table_schema(schema_from_text(stored) if stored else None, snapshot.schema, where=where)
    summary = {
        PARTITION: partition_key,
        EXPORT_ID: snapshot.export_id,
        EXPORT_TIME: spec.export_time(partition_key).isoformat(),
        EXPORT_ITEMS: str(extra["export_item_count"]),
        SOURCE_TABLE: spec.dynamodb_table,
        INCREMENTAL_EXPORT_ID: extra["incremental_export_id"],
        BASE_EXPORT_ID: extra["base_export_id"],
        APPLIED_FROM: "incremental-export",
        **{COUNT_KEYS[k]: str(v) for k, v in counts.items() if k in COUNT_KEYS},
    }
    applied = apply_changes(
        table,
        upserts=upserts,
        deletes=deletes,
        summary=summary,
        table_properties={ARROW_SCHEMA_PARAM: schema_to_text(merged)},
    )
    removed = delete_prefix(s3, bucket=spec.s3_bucket, prefix=snapshot.run_dir + "/")
    return publish_result(table, "committed", snapshot.export_id, applied, removed)


def _refuse_unverified(s3: Any, snapshot: SnapshotManifest, verify: SnapshotVerifier, where: str) -> None:
    verdict = read_check_verdict(s3, snapshot)
    if verdict is None or (verdict.missing and not verdict.failed):
        verdict = verify(snapshot)
    if not verdict.publishable:
        raise UnpublishableSnapshotError(
            f"{where}: the staged snapshot {snapshot.s3_uri} {verdict.describe()}; nothing is committed "
            "(re-run the Parquet snapshot asset to build a new one)"
        )


def publish_partition(
    catalog: GlueCatalog,
    s3: Any,
    filesystem: Any,
    spec: TableSpec,
    partition_key: str,
    key_attributes: tuple[str, ...],
    *,
    verify: SnapshotVerifier | None = None,
) -> IcebergPublishResult:
    """Commit the partition's staged snapshot: its changes directly, or a full export by diff.

    ``verify`` runs the blocking checks on a staged snapshot that has no verdict yet; a snapshot
    whose verdict is not "passed" is never committed. Lost optimistic commits are redone on the
    table's new snapshot, as in :func:`~offload_assets.iceberg.publish.publish_iceberg`.
    """
    s3 = enforce_s3_settings(s3, spec)
    snapshot = latest_complete_snapshot(s3, spec, partition_key)
    if snapshot is not None and verify is not None:
        _refuse_unverified(s3, snapshot, verify, f"table {spec.dynamodb_table!r}, partition {partition_key}")
    if snapshot is None or snapshot.kind != CHANGES_KIND:
        return publish_iceberg(catalog, s3, filesystem, spec, partition_key, key_attributes)
    return commit_retrying()(_commit_staged_changes, catalog, s3, filesystem, spec, partition_key, snapshot)


def apply_incremental_export(
    table: Table, s3: Any, spec: TableSpec, partition_key: str, incremental: ExportManifest, key_names: tuple[str, ...]
) -> dict[str, int] | None:
    """Commit the changes of ``incremental`` as partition ``partition_key`` in one step (no staging).

    The counts, or None if already applied. The assets use the two steps above instead (staging, so
    the blocking checks judge the converted changes before anything is committed).
    """
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    done = check_partition_order(partition_commits(table), partition_key, where)
    if done is not None and incremental.export_id in (done.export_id, done.summary.get(INCREMENTAL_EXPORT_ID)):
        return None
    changes = convert_changes(table, s3, incremental, key_names)
    counts = count_changes(table, changes.upserts, changes.deletes)
    counts = {k: v for k, v in counts.items() if k in COUNT_KEYS}
    summary = {
        PARTITION: partition_key,
        EXPORT_ID: incremental.export_id,
        EXPORT_TIME: spec.export_time(partition_key).isoformat(),
        EXPORT_ITEMS: str(counts["previous-rows"] + counts["inserted"] - counts["deleted"]),
        SOURCE_TABLE: spec.dynamodb_table,
        INCREMENTAL_EXPORT_ID: incremental.export_id,
        APPLIED_FROM: "incremental-export",
        **{COUNT_KEYS[k]: str(v) for k, v in counts.items()},
    }
    apply_changes(table, upserts=changes.upserts, deletes=changes.deletes, summary=summary)
    return counts


__all__ = [
    "APPLIED_FROM",
    "BASE_EXPORT_ID",
    "INCREMENTAL_EXPORT_ID",
    "DayChanges",
    "StaleChangesError",
    "apply_incremental_export",
    "convert_changes",
    "count_changes",
    "incremental_behind",
    "publish_partition",
    "stage_incremental_changes",
]
