"""Iceberg table maintenance: expire old snapshots, remove orphan files, compact small data files.

Locally (and on AWS when chosen) through pyiceberg: snapshots are expired with its
``ExpireSnapshots``; orphan files are the objects under the table's location that no remaining
snapshot, manifest or metadata file references (older than a grace period, so a commit in flight
is never touched); small data files and the data files position deletes apply to are rewritten into files of the
target size, and the delete files dropped, in ONE snapshot (pyiceberg has no rewrite-data-files
action; the commit is :class:`~offload_assets.iceberg.row_delta.RowDelta`, rows unchanged).

On AWS the same three steps are Athena statements (:func:`athena_maintenance_statements`):
``ALTER TABLE ... SET TBLPROPERTIES`` (Athena's VACUUM reads its retention from the table),
``OPTIMIZE ... REWRITE DATA USING BIN_PACK`` and ``VACUUM`` (which expires snapshots and removes
orphan files).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table

from offload_assets.iceberg.row_delta import RowDelta

MAINTENANCE = "offload-assets.maintenance"
#: Objects younger than this are never orphans: they may belong to a commit in flight.
ORPHAN_GRACE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class MaintenanceResult:
    expired_snapshots: tuple[int, ...]
    snapshots: int  # remaining
    orphan_files_removed: int
    orphan_bytes_removed: int
    files_compacted: int  # small files rewritten
    files_written: int
    data_files: int  # of the current snapshot, after maintenance
    data_bytes: int
    snapshot_id: int | None


def snapshots_to_expire(
    table: Table, *, retention_snapshots: int | None, retention_days: int | None, now: dt.datetime
) -> list[int]:
    """Snapshots beyond the newest ``retention_snapshots`` or older than ``retention_days``; never the current one."""
    snapshots = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
    current = table.current_snapshot()
    cutoff_ms = int((now - dt.timedelta(days=retention_days)).timestamp() * 1000) if retention_days else None
    out = []
    for rank, snap in enumerate(snapshots):
        if current is not None and snap.snapshot_id == current.snapshot_id:
            continue
        beyond_count = retention_snapshots is not None and rank >= retention_snapshots
        too_old = cutoff_ms is not None and snap.timestamp_ms < cutoff_ms
        if beyond_count or too_old:
            out.append(snap.snapshot_id)
    return out


def expire_snapshots(table: Table, snapshot_ids: list[int]) -> None:
    if snapshot_ids:
        table.maintenance.expire_snapshots().by_ids(snapshot_ids).commit()
        table.refresh()


def referenced_files(table: Table) -> set[str]:
    """Every object the table's remaining metadata reaches: metadata files, manifest lists, manifests, data files."""
    table.refresh()
    refs = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    refs |= {s.manifest_list for s in table.metadata.snapshots}
    if table.metadata.snapshots:
        refs |= set(table.inspect.all_manifests().column("path").to_pylist())
        refs |= set(table.inspect.all_files().column("file_path").to_pylist())
    return refs


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").removeprefix("s3a://").partition("/")
    return bucket, key


def remove_orphan_files(
    table: Table, s3: Any, *, now: dt.datetime, grace: dt.timedelta = ORPHAN_GRACE
) -> tuple[int, int]:
    """Delete the objects under the table's location that nothing references (older than ``grace``): (count, bytes)."""
    bucket, prefix = _split(table.location().rstrip("/") + "/")
    keep = {_split(uri)[1] for uri in referenced_files(table) if _split(uri)[0] == bucket}
    orphans: list[tuple[str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"] not in keep and obj["LastModified"] <= now - grace:
                orphans.append((obj["Key"], obj["Size"]))
    for start in range(0, len(orphans), 1000):
        batch = orphans[start : start + 1000]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k, _ in batch], "Quiet": True})
    return len(orphans), sum(size for _, size in orphans)


def _live_delete_files(table: Table) -> list[DataFile]:
    """Every position delete file of the current snapshot (also those whose data files are gone)."""
    snapshot = table.current_snapshot()
    out = []
    for manifest in snapshot.manifests(io=table.io) if snapshot else []:
        if manifest.content == ManifestContent.DELETES:
            out += [e.data_file for e in manifest.fetch_manifest_entry(io=table.io, discard_deleted=True)]
    return out


def compact_small_files(table: Table, *, target_bytes: int) -> tuple[int, int]:
    """Rewrite small data files and those with position deletes into target-size files: (rewritten, written).

    Merge-on-read leaves position delete files behind each change commit; compaction folds them
    in: every data file some delete applies to is rewritten without its deleted rows, and every
    delete file is dropped, so the table reads as plain data files again. Small files (under
    ``target_bytes``) are bin-packed too, when there are two or more (or any, next to deletes). Rows are unchanged; the commit
    is ONE snapshot marked ``offload-assets.maintenance=compaction``.
    """
    table.refresh()
    if table.current_snapshot() is None:
        return 0, 0
    tasks = list(table.scan().plan_files())
    deletes = _live_delete_files(table)
    small = [t for t in tasks if t.file.file_size_in_bytes < target_bytes and not t.delete_files]
    with_deletes = [t for t in tasks if t.delete_files]
    # files are written anyway when deletes are folded in: small files join them, even a single one
    rewrite = with_deletes + (small if len(small) >= 2 or with_deletes else [])
    if not rewrite and not deletes:
        return 0, 0
    with table.transaction() as tx:
        tx.set_properties({"write.target-file-size-bytes": str(target_bytes)})
        scan = ArrowScan(tx.table_metadata, table.io, tx.table_metadata.schema(), AlwaysTrue())
        rows = pa.concat_tables([scan.to_table([task]) for task in rewrite]) if rewrite else None  # deletes applied
        commit_uuid = uuid.uuid4()
        written = (
            list(
                _dataframe_to_data_files(
                    tx.table_metadata, rows, io=table.io, write_uuid=commit_uuid, counter=itertools.count(0)
                )
            )
            if rows is not None and rows.num_rows
            else []
        )
        props = {
            MAINTENANCE: "compaction",
            f"{MAINTENANCE}.files-rewritten": str(len(rewrite)),
            f"{MAINTENANCE}.delete-files-removed": str(len(deletes)),
        }
        with RowDelta(tx, table.io, props, commit_uuid) as delta:
            for file in [t.file for t in rewrite] + deletes:
                delta.remove_file(file)
            for data_file in written:
                delta.append_data_file(data_file)
    table.refresh()
    return len(rewrite), len(written)


def maintain_table(
    table: Table,
    s3: Any,
    *,
    retention_snapshots: int | None,
    retention_days: int | None,
    target_bytes: int,
    now: dt.datetime | None = None,
    orphan_grace: dt.timedelta = ORPHAN_GRACE,
) -> MaintenanceResult:
    """Compact, then expire, then remove orphans (so the compacted-away files go in the same run once expired)."""
    now = now or dt.datetime.now(dt.UTC)
    rewritten, written = compact_small_files(table, target_bytes=target_bytes)
    expired = snapshots_to_expire(
        table, retention_snapshots=retention_snapshots, retention_days=retention_days, now=now
    )
    expire_snapshots(table, expired)
    orphans, orphan_bytes = remove_orphan_files(table, s3, now=now, grace=orphan_grace)
    current = table.current_snapshot()
    totals = current.summary.additional_properties if current and current.summary else {}
    return MaintenanceResult(
        expired_snapshots=tuple(expired),
        snapshots=len(table.metadata.snapshots),
        orphan_files_removed=orphans,
        orphan_bytes_removed=orphan_bytes,
        files_compacted=rewritten,
        files_written=written,
        data_files=int(totals.get("total-data-files", 0)),
        data_bytes=int(totals.get("total-files-size", 0)),
        snapshot_id=current.snapshot_id if current else None,
    )


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def athena_maintenance_statements(
    database: str, table: str, *, retention_snapshots: int | None, retention_days: int | None, target_bytes: int
) -> list[str]:
    """Athena's maintenance of an Iceberg table, in order: retention and target size, OPTIMIZE, VACUUM.

    Athena's VACUUM expires snapshots older than ``vacuum_max_snapshot_age_seconds`` while keeping
    ``vacuum_min_snapshots_to_keep``, then removes orphan files; OPTIMIZE bin-packs data files to
    ``write_target_data_file_size_bytes``.
    """
    name = f"{_quoted(database)}.{_quoted(table)}"
    props = {"write_target_data_file_size_bytes": str(target_bytes)}
    if retention_days:
        props["vacuum_max_snapshot_age_seconds"] = str(retention_days * 86_400)
    if retention_snapshots:
        props["vacuum_min_snapshots_to_keep"] = str(retention_snapshots)
    listed = ", ".join(f"'{k}'='{v}'" for k, v in props.items())
    return [
        f"ALTER TABLE {name} SET TBLPROPERTIES ({listed})",
        f"OPTIMIZE {name} REWRITE DATA USING BIN_PACK",
        f"VACUUM {name}",
    ]


__all__ = [
    "MAINTENANCE",
    "MaintenanceResult",
    "athena_maintenance_statements",
    "compact_small_files",
    "expire_snapshots",
    "maintain_table",
    "referenced_files",
    "remove_orphan_files",
    "snapshots_to_expire",
]
