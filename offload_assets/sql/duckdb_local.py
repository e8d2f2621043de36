"""Athena's stand-in for the embedded default: DuckDB over the catalog's Parquet files.

Relations are resolved from the Glue catalog exactly as Athena resolves them:

* a table: schema from the table, files from its registered partitions' locations (or, when
  the table has Athena partition projection, from the projected date directories), so what
  is not registered is not seen. Each table becomes a pyarrow dataset whose partition column
  comes from the partition values, so DuckDB prunes files on ``ddb_export_timestamp`` filters
  and reads only the columns a query needs;
* an Athena view (``<table>_latest`` and any view users create in Athena): its Trino SQL is
  decoded from the view definition and translated like a query, recursively.

Queries are written in Athena's dialect and translated with :mod:`offload_assets.sql.trino_to_duckdb`.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs as pafs
from sqlglot import exp

from offload_assets.catalog.glue_tables import (
    CatalogTable,
    CatalogView,
    get_catalog_relation,
    get_catalog_table,
    list_partitions,
)
from offload_assets.catalog.projection import ProjectionError, parse_projection, projected_locations, template_root
from offload_assets.iceberg.positions import register_files, sql_list
from offload_assets.sql.iceberg_relations import (
    MergeOnReadRows,
    RelationName,
    is_iceberg,
    metadata_relation,
    open_table,
    snapshot_for,
    snapshot_relation,
)
from offload_assets.sql.results import QueryError, QueryResult
from offload_assets.sql.trino_to_duckdb import (
    TranslationError,
    athena_column_name,
    duckdb_schema_of,
    parse_trino,
    pop_time_travel,
    table_references,
    to_duckdb,
)

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _strip_scheme(location: str) -> str:
    return location.removeprefix("s3://").removeprefix("s3a://").removeprefix("file://").rstrip("/")


class _Session:
    """One query's DuckDB connection and the catalog relations registered in it."""

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")  # Athena's session time zone
        self.registered: set[tuple[str, str]] = set()
        self.schemas: dict[str, dict[str, dict[str, str]]] = {}
        self.files: dict[tuple[str, str], int] = {}
        self.allowed_paths: set[str] = set()  # files DuckDB reads itself (merge-on-read Iceberg snapshots)


def _confine(con: duckdb.DuckDBPyConnection, duck_sql: str) -> None:
    """Like Athena: one query (SELECT, WITH, VALUES, SHOW, DESCRIBE) over the catalog's tables.
    Any other statement is refused, and once the catalog's tables are registered DuckDB's file
    and network access is switched off for the session (it cannot be switched on again), so
    ``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH`` and the like are refused by DuckDB."""
    try:
        statements = duckdb.extract_statements(duck_sql)
    except duckdb.Error as err:
        raise QueryError(f"{type(err).__name__}: {err}") from None
    if len(statements) != 1:
        raise QueryError(f"refused: expected one SQL statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        raise QueryError(f"refused: {kind} statement; local SQL runs only SELECT, WITH, VALUES, SHOW and DESCRIBE")
    con.execute("SET enable_external_access = false")


def _time_travel_value(kind: str, expression: Any) -> int:
    """The snapshot id (VERSION) or the instant in epoch milliseconds (TIMESTAMP) a query travels to."""
    sql = expression.sql(dialect="duckdb")
    probe = f"CAST({sql} AS BIGINT)" if kind == "VERSION" else f"epoch_ms(CAST({sql} AS TIMESTAMPTZ))"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        try:
            return int(con.execute(f"SELECT {probe}").fetchone()[0])
        except (duckdb.Error, TypeError) as err:
            raise QueryError(f"FOR {kind} AS OF {sql}: not a constant {kind.lower()} ({err})") from None


class LocalSqlEngine:
    def __init__(
        self,
        *,
        glue: GlueClient,
        filesystem: pafs.FileSystem,
        today: dt.date | None = None,
        iceberg_io: dict[str, str] | None = None,
    ) -> None:
        """``iceberg_io``: pyiceberg FileIO properties (endpoint, region, credentials) to read Iceberg metadata."""
        self.glue = glue
        self.filesystem = filesystem
        self.today = today
        self.iceberg_io = iceberg_io or {}

    # --- tables -----------------------------------------------------------------------------

    def table_dataset(self, database: str, table: str) -> ds.Dataset:
        """The catalog table as a dataset: every registered (or projected) partition's Parquet files."""
        meta = get_catalog_table(self.glue, database, table)
        if meta is None:
            raise QueryError(f"Table not found: {database}.{table} (not in the Glue catalog)")
        return self._dataset(meta)

    def _dataset(self, meta: CatalogTable) -> ds.Dataset:
        schema = meta.schema
        for key in meta.partition_keys:
            schema = schema.append(pa.field(key, pa.string()))
        paths: list[str] = []
        partitions: list[pc.Expression] = []
        if meta.partition_keys:
            key = meta.partition_keys[0]
            for value, files in self._files_by_partition(meta).items():
                paths.extend(files)
                partitions.extend([pc.field(key) == pa.scalar(value)] * len(files))
        else:
            paths = self._parquet_files(meta.location)
            partitions = [pc.scalar(True)] * len(paths)
        return ds.FileSystemDataset.from_paths(
            paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=self.filesystem, partitions=partitions
        )

    def _files_by_partition(self, meta: CatalogTable) -> dict[str, list[str]]:
        """Parquet files of each partition. Partitions below the table's location are found with one
        listing of that location (a few LIST calls for hundreds of snapshots), others one by one."""
        locations = {value: _strip_scheme(loc) + "/" for value, loc in self._partition_locations(meta).items()}
        root = _strip_scheme(meta.location) + "/"
        inside = {v: loc for v, loc in locations.items() if root != "/" and loc.startswith(root)}
        out: dict[str, list[str]] = {v: self._parquet_files(loc) for v, loc in locations.items() if v not in inside}
        if inside:
            by_location = {loc: v for v, loc in inside.items()}
            for v in inside:
                out[v] = []
            for path in self._parquet_files(root):
                # A path belongs to the partition whose location is its nearest enclosing directory.
                directory = path
                while "/" in directory:
                    directory = directory.rsplit("/", 1)[0]
                    value = by_location.get(directory + "/")
                    if value is not None:
                        if not any(part.startswith(("_", ".")) for part in path[len(directory) + 1 :].split("/")):
                            out[value].append(path)
                        break
                    if len(directory) < len(root):
                        break
        return dict(sorted(out.items()))

    def _partition_locations(self, meta: CatalogTable) -> dict[str, str]:
        where = f"table {meta.database}.{meta.name}"
        try:
            projection = parse_projection(meta.parameters, meta.partition_keys, where=where, today=self.today)
        except ProjectionError as err:
            raise QueryError(str(err)) from None
        if projection is None:
            if len(meta.partition_keys) > 1:
                raise QueryError(f"{where}: {len(meta.partition_keys)} partition keys are not supported locally")
            return {p.value: p.location for p in list_partitions(self.glue, database=meta.database, table=meta.name)}
        # Athena with projection ignores registered partitions and reads the projected directories.
        root = template_root(projection)
        segment = projection.template[len(root) :].split("/", 1)[0]
        pattern = re.compile("^" + re.escape(segment).replace(re.escape(f"${{{projection.column}}}"), "(.+)") + "$")
        values = []
        for info in self.filesystem.get_file_info(pafs.FileSelector(_strip_scheme(root), allow_not_found=True)):
            m = pattern.match(info.base_name)
            if info.type == pafs.FileType.Directory and m:
                values.append(m.group(1))
        return projected_locations(projection, values)

    def _parquet_files(self, location: str) -> list[str]:
        path = _strip_scheme(location)
        if not path:
            return []
        infos = self.filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        # Like Athena: files and directories whose names start with '_' or '.' are not data.
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.path.endswith(".parquet")
            and not any(part.startswith(("_", ".")) for part in i.path[len(path) :].split("/") if part)
        )

    # --- relations --------------------------------------------------------------------------

    def _register(self, session: _Session, database: str, name: str, stack: tuple[tuple[str, str], ...]) -> None:
        key = (database.lower(), name.lower())
        if key in session.registered:
            return
        if key in stack:
            chain = " -> ".join(f"{d}.{n}" for d, n in (*stack, key))
            raise QueryError(f"View is recursive: {chain}")
        ref = RelationName.parse(key[1])
        try:
            relation = get_catalog_relation(self.glue, key[0], ref.table)
            if relation is None and ref.table != key[1]:  # a table whose own name has '$' or '@'
                ref, relation = RelationName(key[1]), get_catalog_relation(self.glue, *key)
        except ValueError as err:
            raise QueryError(str(err)) from None
        if relation is None:
            raise QueryError(f"Table not found: {key[0]}.{ref.table} (not in the Glue catalog)")
        con = session.con
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(key[0])}")
        target = f"{_quote(key[0])}.{_quote(key[1])}"
        iceberg = isinstance(relation, CatalogTable) and is_iceberg(relation.parameters)
        if ref != RelationName(ref.table) and not iceberg:
            raise QueryError(
                f"{key[0]}.{ref.table} is not an Iceberg table: time travel and metadata tables "
                f"({key[1]!r}) need table_format iceberg"
            )
        if iceberg:
            self._register_iceberg(session, relation, ref, target)
        elif isinstance(relation, CatalogTable):
            dataset = self._dataset(relation)
            session.files[key] = len(dataset.files)
            handle = f"__offload_{len(session.registered)}"
            con.register(handle, dataset)
            con.execute(f"CREATE VIEW {target} AS SELECT * FROM {handle}")
        else:
            con.execute(
                f"CREATE VIEW {target} AS {self._translate(session, relation.sql, relation.default_schema, (*stack, key), relation)}"
            )
            actual = list(duckdb_schema_of(con, *key))
            expected = [c for c, _ in relation.columns]
            if expected and [c.lower() for c in actual] != [c.lower() for c in expected]:
                raise QueryError(
                    f"View '{key[0]}.{key[1]}' is stale or in invalid state: its definition lists columns {expected} "
                    f"but its query returns {actual}; re-create the view"
                )
        session.registered.add(key)
        session.schemas.setdefault(key[0], {})[key[1]] = duckdb_schema_of(con, *key)

    def _register_iceberg(self, session: _Session, meta: CatalogTable, ref: RelationName, target: str) -> None:
        where = f"table {meta.database}.{meta.name}"
        table = open_table(meta.database, meta.name, meta.parameters, self.iceberg_io)
        if ref.metadata_table:
            data, files = metadata_relation(table, ref.metadata_table, where), 0
        else:
            data, files = snapshot_relation(table, snapshot_for(table, ref, where), self.filesystem)
        handle = f"__offload_{len(session.registered)}"
        if isinstance(data, MergeOnReadRows):  # position deletes: DuckDB anti-joins them itself
            register_files(session.con, self.filesystem)
            # file access goes off before the query runs (_confine): these files, and only these, stay readable
            session.allowed_paths.update(data.urls)
            session.con.execute(f"SET allowed_paths = {sql_list(sorted(session.allowed_paths))}")
            session.con.register(handle, data.schema.empty_table())
            session.con.execute(f"CREATE VIEW {target} AS SELECT * FROM {handle} UNION ALL BY NAME {data.sql}")
        else:
            session.con.register(handle, data)
            session.con.execute(f"CREATE VIEW {target} AS SELECT * FROM {handle}")
        session.files[(meta.database, ref.key)] = files

    def _translate(
        self,
        session: _Session,
        sql: str,
        default_database: str,
        stack: tuple[tuple[str, str], ...],
        view: CatalogView | None = None,
    ) -> str:
        where = f" (in view {view.database}.{view.name})" if view else ""
        try:
            tree = parse_trino(sql)
            refs = table_references(tree, default_database)
        except TranslationError as err:
            raise QueryError(f"{err}{where}") from None
        for node in refs:
            try:
                travel = pop_time_travel(node)
            except TranslationError as err:
                raise QueryError(f"{err}{where}") from None
            if travel is not None:
                kind, expression = travel
                value = _time_travel_value(kind, expression)
                ref = RelationName(node.name, **({"version": value} if kind == "VERSION" else {"timestamp_ms": value}))
                node.set("this", exp.to_identifier(ref.key, quoted=True))
            self._register(session, node.db, node.name, stack)
        return to_duckdb(tree, session.schemas)

    def query(self, sql: str, *, default_database: str) -> QueryResult:
        started = time.monotonic()
        session = _Session()
        try:
            duck_sql = self._translate(session, sql, default_database, ())
            _confine(session.con, duck_sql)
            try:
                cursor = session.con.execute(duck_sql)
                columns = tuple(athena_column_name(d[0]) for d in cursor.description or ())
                rows = tuple(tuple(r) for r in cursor.fetchall())
            except duckdb.PermissionException as err:
                raise QueryError(
                    f"refused: local SQL reads only the catalog's tables, never files or the network ({err})"
                ) from None
            except duckdb.Error as err:
                raise QueryError(f"{type(err).__name__}: {err}") from None
        finally:
            session.con.close()
        return QueryResult(
            columns=columns,
            rows=rows,
            engine="duckdb",
            elapsed_seconds=time.monotonic() - started,
            details={"translated_sql": duck_sql, "files_registered": sum(session.files.values())},
        )
