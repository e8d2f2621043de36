"""The live rows of an Iceberg snapshot, by DuckDB: each data file's rows minus its position deletes.

A merge-on-read table marks replaced and deleted rows with position delete files: Parquet files of
``(file_path, pos)`` (Iceberg field ids 2147483546 and 2147483545) naming a data file and a 0-based
row in it. DuckDB reads the data files' Parquet itself, with ``filename`` and ``file_row_number``,
through the table's pyarrow filesystem (registered with DuckDB as an fsspec filesystem under the
``offload://`` scheme: no DuckDB extension, no second S3 client), and anti-joins each data file's
rows with the positions the delete files name. Two uses, one query shape:

* :func:`live_rows_sql`: the snapshot's rows, what a reader (local SQL) sees;
* :func:`touched_positions`: where the live rows of some keys are (file and row), what a
  merge-on-read commit writes into its position delete file. Only the key columns are read.

A position delete applies to a data file of the same or an older sequence number; data file paths
are unique (a UUID each), so matching the path is matching the file.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from fsspec.implementations.arrow import ArrowFSWrapper
from pyiceberg.io import FileIO
from pyiceberg.table import FileScanTask

SCHEME = "offload"
#: DuckDB's names for the file and row number columns of a read (never a converter column: they start with '__').
FILE_COLUMN = "__offload_file"
ROW_COLUMN = "file_row_number"


class _PositionalFile(io.RawIOBase):
    """A pyarrow file as DuckDB's fsspec bridge reads it: ``seek`` + ``read``, positioned per thread.

    DuckDB's threads share one Python handle per file and each read is a ``seek`` then a
    ``read``; with one shared position they race (wrong bytes, short reads). Here every thread
    has its own position and reads with pyarrow's thread-safe ``read_at``.
    """

    def __init__(self, file: Any) -> None:
        super().__init__()
        self._file = file
        self._size = file.size()
        self._local = threading.local()

    @property
    def _pos(self) -> int:
        return getattr(self._local, "pos", 0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._local.pos = base + offset
        return self._local.pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        pos = self._pos
        size = self._size - pos if size is None or size < 0 else min(size, self._size - pos)
        data = self._file.read_at(size, pos) if size > 0 else b""
        self._local.pos = pos + len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


class _PyArrowFiles(ArrowFSWrapper):
    """A pyarrow filesystem as DuckDB sees it (fsspec), under its own scheme so it never shadows ``s3://``."""

    protocol = SCHEME

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(f"{SCHEME}:// is read-only ({path})")
        return _PositionalFile(self.fs.open_input_file(self._strip_protocol(path)))

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        # fsspec's default takes the bucket for a host name and drops it; pyarrow wants "bucket/key"
        return path.removeprefix(f"{SCHEME}://").rstrip("/")


def duckdb_url(path: str) -> str:
    """``s3://bucket/key`` as DuckDB reads it through :func:`register_files` (``offload://bucket/key``)."""
    return f"{SCHEME}://{path.split('://', 1)[-1]}"


def register_files(con: duckdb.DuckDBPyConnection, filesystem: Any) -> None:
    """Let ``con`` read ``offload://bucket/key`` through ``filesystem`` (a pyarrow FileSystem)."""
    if not con.filesystem_is_registered(SCHEME):
        con.register_filesystem(_PyArrowFiles(filesystem))


def filesystem_of(io: FileIO, location: str) -> Any:
    """The pyarrow filesystem pyiceberg's FileIO reads ``location`` with (endpoint, credentials as configured)."""
    scheme, netloc, _ = io.parse_location(location)
    return io.fs_by_scheme(scheme, netloc)


def sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _numbered_rows_sql(data_paths: Sequence[str], delete_paths: Sequence[str], columns: str) -> str:
    """Live rows of ``data_paths`` with their file (as DuckDB names it) and row number."""
    rows = (
        f"SELECT {columns}, {quoted(FILE_COLUMN)}, {ROW_COLUMN} FROM read_parquet("
        f"{sql_list(duckdb_url(p) for p in data_paths)}, filename='{FILE_COLUMN}', file_row_number=true, "
        "union_by_name=true)"
    )
    if not delete_paths:
        return rows
    deleted = (
        f"SELECT '{SCHEME}://' || split_part(file_path, '://', 2) AS deleted_file, pos AS deleted_row "
        f"FROM read_parquet({sql_list(duckdb_url(p) for p in delete_paths)})"
    )
    return (
        f"SELECT * FROM ({rows}) AS data_rows ANTI JOIN ({deleted}) AS deleted_rows "
        f"ON data_rows.{quoted(FILE_COLUMN)} = deleted_rows.deleted_file AND data_rows.{ROW_COLUMN} = deleted_rows.deleted_row"
    )


def delete_files_of(tasks: Sequence[FileScanTask]) -> list[str]:
    return sorted({d.file_path for task in tasks for d in task.delete_files})


def file_urls(tasks: Sequence[FileScanTask]) -> list[str]:
    """Every file :func:`live_rows_sql` reads, as DuckDB names them (for DuckDB's ``allowed_paths``)."""
    return [duckdb_url(p) for p in sorted({t.file.file_path for t in tasks} | set(delete_files_of(tasks)))]


def live_rows_sql(tasks: Sequence[FileScanTask], columns: str = "*") -> str:
    """DuckDB SQL of the rows the scan ``tasks`` read: their data files minus their position deletes."""
    numbered = _numbered_rows_sql([t.file.file_path for t in tasks], delete_files_of(tasks), columns)
    return f"SELECT * EXCLUDE ({quoted(FILE_COLUMN)}, {ROW_COLUMN}) FROM ({numbered})"


def touched_positions(
    io: FileIO, tasks: Sequence[FileScanTask], key_columns: Sequence[str], touched: pa.Table
) -> pa.Table:
    """``(file_path, pos, <keys>)`` of the live rows whose key is in ``touched``, sorted by file_path, pos.

    ``key_columns`` are the key columns' names in the Parquet files (pyiceberg's sanitized names),
    in the order of ``touched``'s columns. Only those columns of the data files are read.
    """
    if not tasks or not touched.num_rows:
        empty = {"file_path": pa.array([], pa.string()), "pos": pa.array([], pa.int64())}
        return pa.table({**empty, **{c: touched.column(i).slice(0, 0) for i, c in enumerate(key_columns)}})
    paths = {duckdb_url(t.file.file_path): t.file.file_path for t in tasks}
    names = pa.table({"url": list(paths), "file_path": list(paths.values())})
    probe = touched.rename_columns([f"__key{i}" for i in range(touched.num_columns)])
    select = ", ".join(quoted(c) for c in key_columns)
    on = " AND ".join(f"r.{quoted(c)} = t.__key{i}" for i, c in enumerate(key_columns))
    with duckdb.connect() as con:
        register_files(con, filesystem_of(io, tasks[0].file.file_path))
        con.register("touched_keys", probe)
        con.register("file_names", names)
        numbered = _numbered_rows_sql([t.file.file_path for t in tasks], delete_files_of(tasks), select)
        hits = con.sql(
            f"SELECT n.file_path, r.{ROW_COLUMN} AS pos, {', '.join('r.' + quoted(c) for c in key_columns)} "
            f"FROM ({numbered}) AS r SEMI JOIN touched_keys AS t ON {on} "
            f"JOIN file_names AS n ON n.url = r.{quoted(FILE_COLUMN)} ORDER BY n.file_path, pos"
        ).to_arrow_table()
    return hits


__all__ = [
    "SCHEME",
    "delete_files_of",
    "duckdb_url",
    "file_urls",
    "filesystem_of",
    "sql_list",
    "live_rows_sql",
    "register_files",
    "touched_positions",
]
