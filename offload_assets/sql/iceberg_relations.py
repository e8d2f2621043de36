"""Iceberg tables of the Glue catalog as local SQL relations (what Athena reads, resolved by pyiceberg).

Glue marks an Iceberg table with ``table_type=ICEBERG`` and points ``metadata_location`` at its
current metadata file. The local engine reads that metadata with pyiceberg (no DuckDB extension),
picks the snapshot a query asks for, and hands DuckDB that snapshot's data files
(``plan_files()``) as a pyarrow dataset, like a Hive table's partitions. A snapshot with position
delete files (merge-on-read, how this project writes changes) is read by DuckDB itself: each data
file's rows (``read_parquet`` with ``filename`` and ``file_row_number``) anti-joined with the
``(file_path, pos)`` of its delete files (:func:`offload_assets.iceberg.positions.live_rows_sql`),
streamed like the dataset, never materialized in Python.

Athena's syntax, translated here:

* ``FOR VERSION AS OF <snapshot id>`` and ``FOR TIMESTAMP AS OF <timestamp>`` (the snapshot that
  was current at that instant, from the table's history);
* the metadata tables ``"<table>$snapshots"``, ``"<table>$history"`` and ``"<table>$files"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from pyiceberg.table import StaticTable, Table
from pyiceberg.table.snapshots import Snapshot

from offload_assets.iceberg.positions import file_urls, live_rows_sql
from offload_assets.sql.results import QueryError

ICEBERG_TABLE_TYPE = "ICEBERG"
METADATA_TABLES = ("snapshots", "history", "files")


def is_iceberg(parameters: dict[str, str]) -> bool:
    return parameters.get("table_type", "").upper() == ICEBERG_TABLE_TYPE and bool(parameters.get("metadata_location"))


@dataclass(frozen=True)
class RelationName:
    """A name as a query uses it: ``reviews``, ``reviews$snapshots``, or a time-travel reference."""

    table: str
    metadata_table: str | None = None
    version: int | None = None  # FOR VERSION AS OF
    timestamp_ms: int | None = None  # FOR TIMESTAMP AS OF

    @property
    def key(self) -> str:
        """A relation name unique per distinct reference (what DuckDB's view is called)."""
        if self.metadata_table:
            return f"{self.table}${self.metadata_table}"
        if self.version is not None:
            return f"{self.table}@version={self.version}"
        if self.timestamp_ms is not None:
            return f"{self.table}@timestamp_ms={self.timestamp_ms}"
        return self.table

    @classmethod
    def parse(cls, key: str) -> RelationName:
        if "@version=" in key:
            table, value = key.split("@version=", 1)
            return cls(table, version=int(value))
        if "@timestamp_ms=" in key:
            table, value = key.split("@timestamp_ms=", 1)
            return cls(table, timestamp_ms=int(value))
        if "$" in key:
            table, suffix = key.rsplit("$", 1)
            return cls(table, metadata_table=suffix)
        return cls(key)

    @property
    def time_travel(self) -> bool:
        return self.version is not None or self.timestamp_ms is not None


def open_table(database: str, name: str, parameters: dict[str, str], io_properties: dict[str, str]) -> Table:
    """The Iceberg table as of Glue's ``metadata_location`` (read-only)."""
    try:
        return StaticTable.from_metadata(parameters["metadata_location"], properties=io_properties)
    except Exception as err:  # a missing or unreadable metadata file: say which table and where
        raise QueryError(
            f"Iceberg table {database}.{name}: cannot read metadata {parameters['metadata_location']}: {err}"
        ) from None


def snapshot_for(table: Table, ref: RelationName, where: str) -> Snapshot | None:
    """The snapshot ``ref`` reads: the current one, or the one time travel names (as Athena resolves it)."""
    if ref.version is not None:
        snap = table.snapshot_by_id(ref.version)
        if snap is None:
            raise QueryError(f"{where}: Iceberg snapshot {ref.version} not found (expired or never existed)")
        return snap
    if ref.timestamp_ms is not None:
        snap = table.snapshot_as_of_timestamp(ref.timestamp_ms)
        if snap is None:
            raise QueryError(f"{where}: no Iceberg snapshot was current at that time (the table is younger)")
        return snap
    return table.current_snapshot()


def _strip_scheme(path: str) -> str:
    return path.removeprefix("s3://").removeprefix("s3a://").removeprefix("file://")


@dataclass(frozen=True)
class MergeOnReadRows:
    """A snapshot with position deletes: DuckDB SQL of its live rows over ``offload://`` URLs.

    ``schema`` is the snapshot's table schema: the view is ``<empty table of schema> UNION ALL BY
    NAME <sql>``, so columns keep the table's order and types and a column no data file has yet
    reads as NULL (as the dataset does). DuckDB needs :func:`offload_assets.iceberg.positions.register_files`.
    """

    schema: pa.Schema
    sql: str
    delete_files: int
    urls: tuple[str, ...]  # every file the SQL reads (DuckDB's allowed_paths once file access is off)


def snapshot_relation(table: Table, snapshot: Snapshot | None, filesystem: Any) -> tuple[Any, int]:
    """(a dataset, an Arrow table or :class:`MergeOnReadRows` of the snapshot's rows, number of data files)."""
    schema = table.schemas().get(snapshot.schema_id) if snapshot and snapshot.schema_id is not None else None
    schema = schema or table.schema()
    arrow_schema = schema.as_arrow()
    if snapshot is None:
        return arrow_schema.empty_table(), 0
    scan = table.scan(snapshot_id=snapshot.snapshot_id)
    tasks = list(scan.plan_files())
    if any(task.delete_files for task in tasks):
        deletes = len({d.file_path for task in tasks for d in task.delete_files})
        return MergeOnReadRows(arrow_schema, live_rows_sql(tasks), deletes, tuple(file_urls(tasks))), len(tasks)
    paths = [_strip_scheme(task.file.file_path) for task in tasks]
    dataset = ds.FileSystemDataset.from_paths(
        paths, schema=arrow_schema, format=ds.ParquetFileFormat(), filesystem=filesystem
    )
    return dataset, len(paths)


def _plain(table: pa.Table) -> pa.Table:
    """Metadata tables without the nested per-column statistics DuckDB cannot register as-is."""
    keep = [f.name for f in table.schema if f.name != "readable_metrics"]
    return table.select(keep)


def metadata_relation(table: Table, which: str, where: str) -> pa.Table:
    """Athena's ``$snapshots`` / ``$history`` / ``$files`` metadata table (columns as Athena names them)."""
    if which == "snapshots":
        return table.inspect.snapshots()
    if which == "history":
        return table.inspect.history()
    if which == "files":
        return _plain(table.inspect.files())
    raise QueryError(f"{where}: unknown Iceberg metadata table ${which} (known: {', '.join(METADATA_TABLES)})")


__all__ = [
    "ICEBERG_TABLE_TYPE",
    "METADATA_TABLES",
    "MergeOnReadRows",
    "RelationName",
    "is_iceberg",
    "metadata_relation",
    "open_table",
    "snapshot_for",
    "snapshot_relation",
]
