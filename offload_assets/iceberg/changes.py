"""Apply upserts and deletes by primary key to an Iceberg table: one atomic snapshot per call.

This is the small, stable API other features build on (the full-export diff in
:mod:`offload_assets.iceberg.publish`, DynamoDB Streams capture)::

    apply_changes(table, upserts=pa.Table, deletes=pa.Table of key columns, summary={"k": "v"})
    current_summary(table) -> {"operation": ..., "k": "v", "added-records": ..., ...}

Merge-on-read (Iceberg v2, what Athena writes for ``write.update.mode=merge-on-read``): the
upserted rows are written as new data files; the rows they replace and the deleted rows are named
by ONE position delete file (file path, row number), found by reading only the key columns of the
live rows (:func:`offload_assets.iceberg.positions.touched_positions`); no existing data file is
rewritten, so a commit writes bytes in proportion to its changes, not to the table. All of it
(and any new columns of ``upserts``) lands in ONE snapshot of ONE commit
(:class:`offload_assets.iceberg.row_delta.RowDelta`), whose summary carries ``summary`` next to
Iceberg's own counts. Compaction (:mod:`offload_assets.iceberg.maintenance`) later folds the
deletes into rewritten data files.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.schema import sanitize_column_names
from pyiceberg.table import Table, Transaction

from offload_assets.iceberg.positions import touched_positions
from offload_assets.iceberg.row_delta import RowDelta, write_position_deletes
from offload_assets.iceberg.schema import key_columns_of, new_columns


@dataclass(frozen=True)
class AppliedChanges:
    """What one :func:`apply_changes` commit did."""

    snapshot_id: int | None
    rows_upserted: int
    rows_replaced: int  # existing rows replaced by an upsert (updates)
    rows_deleted: int  # existing rows removed by a delete key (a key absent from the table counts 0)
    files_kept: int  # data files with no row replaced or deleted by this commit
    files_removed: int  # data files removed (merge-on-read: none, they get position deletes instead)
    files_added: int  # data files added
    delete_files_added: int = 0  # position delete files added (0 or 1)
    position_deletes_added: int = 0  # rows of those (= rows_replaced + rows_deleted)
    files_with_deletes: int = 0  # data files some of whose rows this commit deleted


def live_rows(table: Table, snapshot_id: int | None = None) -> int:
    """Rows of the snapshot (the current one by default): data file records minus position deletes."""
    snapshot = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    props = snapshot.summary.additional_properties
    return int(props.get("total-records", 0)) - int(props.get("total-position-deletes", 0))


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
        hits, data_files = pa.table({"file_path": pa.array([], pa.string())}), 0
        if touched.num_rows and tx.table_metadata.current_snapshot() is not None:
            touched = touched.group_by(list(keys)).aggregate([])
            tasks = list(tx._scan().plan_files())
            data_files = len(tasks)
            hits = touched_positions(table.io, tasks, _file_column_names(tx, keys), touched)
            hits = hits.rename_columns(["file_path", "pos", *keys])
        replaced_rows = 0
        if hits.num_rows:
            replaced_rows = _key_table(hits, keys, target).join(upsert_keys, list(keys), join_type="left semi").num_rows
        deleted_rows = hits.num_rows - replaced_rows
        commit_uuid = uuid.uuid4()
        # rows in key order: neighbouring keys compress together, and each file's key bounds are narrow
        ordered = upserts.sort_by([(k, "ascending") for k in keys]) if upserts.num_rows else upserts
        added = (
            list(
                _dataframe_to_data_files(
                    tx.table_metadata, ordered, io=table.io, write_uuid=commit_uuid, counter=itertools.count(0)
                )
            )
            if upserts.num_rows
            else []
        )
        delete_file = write_position_deletes(tx, table.io, hits, commit_uuid) if hits.num_rows else None
        props = {str(k): str(v) for k, v in (summary or {}).items()}
        with RowDelta(tx, table.io, props, commit_uuid) as delta:
            for data_file in added:
                delta.append_data_file(data_file)
            if delete_file is not None:
                delta.append_delete_file(delete_file)
    table.refresh()
    current = table.current_snapshot()
    touched_files = len(set(hits.column("file_path").to_pylist())) if hits.num_rows else 0
    return AppliedChanges(
        snapshot_id=current.snapshot_id if current else None,
        rows_upserted=upserts.num_rows,
        rows_replaced=replaced_rows,
        rows_deleted=deleted_rows,
        files_kept=data_files - touched_files,
        files_removed=0,
        files_added=len(added),
        delete_files_added=1 if delete_file is not None else 0,
        position_deletes_added=hits.num_rows,
        files_with_deletes=touched_files,
    )


def _file_column_names(tx: Transaction, keys: tuple[str, ...]) -> list[str]:
    """The key columns' names inside the data files (pyiceberg writes sanitized names)."""
    schema = tx.table_metadata.schema()
    sanitized = sanitize_column_names(schema)
    return [sanitized.find_field(schema.find_field(k).field_id).name for k in keys]


__all__ = [
    "AppliedChanges",
    "apply_changes",
    "conform_to",
    "current_summary",
    "key_columns_of",
    "live_rows",
    "table_key_columns",
]
