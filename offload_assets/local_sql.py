"""Athena's stand-in for the embedded default: DuckDB over the catalog's Parquet files.

Tables are resolved from the Glue catalog exactly as Athena does (schema from the table,
files from the registered partitions' locations), so what is not registered is not seen.
Each table becomes a pyarrow dataset whose partition column comes from the partition
values, so DuckDB prunes files on ``ddb_export_timestamp`` filters and reads only the
columns a query needs.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import sqlglot
from pyarrow import fs as pafs
from sqlglot import exp

from offload_assets.catalog import get_catalog_table, list_partitions
from offload_assets.sql_query import QueryError, QueryResult


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class LocalSqlEngine:
    def __init__(self, *, glue: Any, filesystem: pafs.FileSystem) -> None:
        self.glue = glue
        self.filesystem = filesystem

    def table_dataset(self, database: str, table: str) -> ds.Dataset:
        """The catalog table as a dataset: every registered partition's Parquet files."""
        meta = get_catalog_table(self.glue, database, table)
        if meta is None:
            raise QueryError(f"Table not found: {database}.{table} (not in the Glue catalog)")
        schema = meta.schema
        for key in meta.partition_keys:
            schema = schema.append(pa.field(key, pa.string()))
        paths: list[str] = []
        partitions: list[pc.Expression] = []
        if meta.partition_keys:
            key = meta.partition_keys[0]
            for part in list_partitions(self.glue, database=database, table=table):
                for path in self._parquet_files(part.location):
                    paths.append(path)
                    partitions.append(pc.field(key) == pa.scalar(part.value))
        else:
            paths = self._parquet_files(meta.location)
            partitions = [pc.scalar(True)] * len(paths)
        return ds.FileSystemDataset.from_paths(
            paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=self.filesystem, partitions=partitions
        )

    def _parquet_files(self, location: str) -> list[str]:
        path = location.removeprefix("s3://").removeprefix("file://").rstrip("/")
        if not path:
            return []
        infos = self.filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(
            i.path for i in infos
            if i.type == pafs.FileType.File and i.path.endswith(".parquet") and "/_" not in i.path[len(path):]
        )

    def query(self, sql: str, *, default_database: str) -> QueryResult:
        started = time.monotonic()
        try:
            parsed = sqlglot.parse(sql, read="trino")
        except sqlglot.errors.ParseError as err:
            raise QueryError(f"SQL syntax error: {err}") from None
        statements = [p for p in parsed if p is not None]
        if len(statements) != 1:
            raise QueryError(f"expected exactly one SQL statement, got {len(statements)}")
        tree = statements[0]
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        con = duckdb.connect()
        try:
            registered: set[tuple[str, str]] = set()
            for node in tree.find_all(exp.Table):
                if not node.name or (not node.db and node.name.lower() in ctes):
                    continue
                database, table = (node.db or default_database), node.name
                if (database.lower(), table.lower()) in registered:
                    continue
                registered.add((database.lower(), table.lower()))
                dataset = self.table_dataset(database, table)
                handle = f"__offload_{len(registered)}"
                con.register(handle, dataset)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(database)}")
                con.execute(f"CREATE OR REPLACE VIEW {_quote(database)}.{_quote(table)} AS SELECT * FROM {handle}")
                if not node.db:
                    node.set("db", exp.to_identifier(database, quoted=True))
            duck_sql = tree.sql(dialect="duckdb")
            try:
                cursor = con.execute(duck_sql)
                columns = tuple(d[0] for d in cursor.description or ())
                rows = tuple(tuple(r) for r in cursor.fetchall())
            except duckdb.Error as err:
                raise QueryError(f"{type(err).__name__}: {err}") from None
        finally:
            con.close()
        return QueryResult(
            columns=columns,
            rows=rows,
            engine="duckdb",
            elapsed_seconds=time.monotonic() - started,
            details={"translated_sql": duck_sql},
        )
