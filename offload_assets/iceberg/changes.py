"""Apply upserts and deletes by primary key to an Iceberg table: one atomic snapshot per call.

This is the small, stable API other features build on (the full-export diff in
:mod:`offload_assets.iceberg.publish`, DynamoDB Streams capture)::

    apply_changes(table, upserts=pa.Table, deletes=pa.Table of key columns, summary={"k": "v"})
    current_summary(table) -> {"operation": ..., "k": "v", "added-records": ..., ...}

Copy-on-write: each data file holding a touched key is rewritten without the touched rows; the
upserted rows are written as new files; files without a touched key are kept as they are. All of
it (and any new columns of ``upserts``) lands in ONE snapshot of ONE commit, whose summary carries
``summary`` next to Iceberg's own counts. Matching is an exact hash join on the key columns (no
per-row predicates, so large change sets and composite keys stay cheap).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.table import Table, Transaction

from offload_assets.iceberg.schema import key_columns_of, new_columns

_ROW = "__offload_row"


@dataclass(frozen=True)
class AppliedChanges:
    """What one :func:`apply_changes` commit did."""

    snapshot_id: int | None
    rows_upserted: int
    rows_replaced: int  # existing rows replaced by an upsert (updates)
    rows_deleted: int  # existing rows removed by a delete key (a key absent from the table counts 0)
    files_kept: int
    files_removed: int
    files_added: int


def table_key_columns(table: Table) -> tuple[str, ...]:
    names = tuple(table.schema().identifier_field_names())
    if not names:
        raise ValueError(f"Iceberg table {table.name()} has no identifier fields (primary key)")
    # identifier_field_names is a set: keep the schema's column order
    return tuple(f.name for f in table.schema().fields if f.name in names)


def current_summary(table: Table) -> dict[str, str]:
    """The current snapshot's summary (operation, Iceberg's counts, our properties); {} before the first."""
    table.refresh()
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return {}
    return {"operation": snapshot.summary.operation.value, **snapshot.summary.additional_properties}


def conform_to(data: pa.Table, target: pa.Schema) -> pa.Table:
    """``data`` with exactly the table's columns and types (absent columns NULL)."""
    columns = []
    for field in target:
        if field.name in data.column_names:
            columns.append(data.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(len(data), field.type))
    return pa.Table.from_arrays(columns, schema=target)


def _key_table(data: pa.Table, keys: tuple[str, ...], target: pa.Schema) -> pa.Table:
    return pa.table({k: data.column(k).cast(target.field(k).type) for k in keys})


def _refuse_duplicates(keys_table: pa.Table, keys: tuple[str, ...], what: str) -> None:
    if keys_table.num_rows and keys_table.group_by(list(keys)).aggregate([]).num_rows != keys_table.num_rows:
        raise ValueError(f"{what}: a primary key appears more than once (one row per item)")


def _rows_without(data: pa.Table, keys: tuple[str, ...], touched: pa.Table) -> tuple[pa.Table, int]:
    """(rows of ``data`` whose key is not in ``touched``, number of rows removed)."""
    numbered = data.select(list(keys)).append_column(_ROW, pa.array(range(len(data)), pa.int64()))
    keep = numbered.join(touched, list(keys), join_type="left anti").column(_ROW).combine_chunks()
    kept = data.take(pc.take(keep, pc.sort_indices(keep)))
    return kept, len(data) - len(kept)


def _evolve_schema(tx: Transaction, upserts: pa.Table) -> None:
    added = new_columns(tx.table_metadata.schema(), upserts.schema)
    if len(added):
        with tx.update_schema() as update:
            update.union_by_name(added)


def apply_changes(
    table: Table,
    upserts: pa.Table | None = None,
    deletes: pa.Table | None = None,
    summary: dict[str, str] | None = None,
    table_properties: dict[str, str] | None = None,
) -> AppliedChanges:
    """Upsert ``upserts`` and delete the keys in ``deletes`` (a table of the key columns) in ONE snapshot.

    Keys are the table's identifier fields. An upserted row replaces the row with its key, or is
    inserted; a delete key absent from the table is ignored. A key in both is upserted. New
    columns of ``upserts`` are added to the table first (same commit). ``summary`` goes into the
    snapshot summary as given (strings). A call with no changes still commits a snapshot, so
    the summary (e.g. "partition X applied") is recorded. ``table_properties`` are set in the
    same commit (pyiceberg's Glue catalog copies them into the Glue table's parameters).
    """
    keys = table_key_columns(table)
    with table.transaction() as tx:
        if upserts is not None and upserts.num_rows:
            _evolve_schema(tx, upserts)
        if table_properties:
            tx.set_properties(table_properties)
        target = tx.table_metadata.schema().as_arrow()
        upserts = conform_to(upserts, target) if upserts is not None else target.empty_table()
        delete_keys = _key_table(deletes, keys, target) if deletes is not None else None
        upsert_keys = _key_table(upserts, keys, target)
        _refuse_duplicates(upsert_keys, keys, "upserts")
        touched = pa.concat_tables([upsert_keys, delete_keys]) if delete_keys is not None else upsert_keys
        removed, remnants, kept, replaced_rows, deleted_rows = [], [], 0, 0, 0
        if touched.num_rows and tx.table_metadata.current_snapshot() is not None:
            touched = touched.group_by(list(keys)).aggregate([])
            io = table.io
            key_scan = ArrowScan(tx.table_metadata, io, tx.table_metadata.schema().select(*keys), AlwaysTrue())
            full_scan = ArrowScan(tx.table_metadata, io, tx.table_metadata.schema(), AlwaysTrue())
            for task in tx._scan().plan_files():
                file_keys = key_scan.to_table([task])
                hits = file_keys.join(touched, list(keys), join_type="left semi").num_rows
                if not hits:
                    kept += 1
                    continue
                rows, gone = _rows_without(full_scan.to_table([task]), keys, touched)
                removed.append(task.file)
                remnants.append(rows)
                hit_keys = file_keys.join(touched, list(keys), join_type="left semi")
                replaced_rows += hit_keys.join(upsert_keys, list(keys), join_type="left semi").num_rows
                deleted_rows += gone
            deleted_rows -= replaced_rows
        new_rows = pa.concat_tables([*remnants, upserts]) if remnants else upserts
        commit_uuid = uuid.uuid4()
        added = (
            list(
                _dataframe_to_data_files(
                    tx.table_metadata, new_rows, io=table.io, write_uuid=commit_uuid, counter=itertools.count(0)
                )
            )
            if new_rows.num_rows
            else []
        )
        props = {str(k): str(v) for k, v in (summary or {}).items()}
        with tx.update_snapshot(snapshot_properties=props).overwrite(commit_uuid=commit_uuid) as snap:
            for data_file in removed:
                snap.delete_data_file(data_file)
            for data_file in added:
                snap.append_data_file(data_file)
    table.refresh()
    current = table.current_snapshot()
    return AppliedChanges(
        snapshot_id=current.snapshot_id if current else None,
        rows_upserted=upserts.num_rows,
        rows_replaced=replaced_rows,
        rows_deleted=deleted_rows,
        files_kept=kept,
        files_removed=len(removed),
        files_added=len(added),
    )


__all__ = ["AppliedChanges", "apply_changes", "current_summary", "conform_to", "key_columns_of", "table_key_columns"]
