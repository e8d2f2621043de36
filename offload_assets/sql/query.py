"""Run SQL against the catalog: Athena on AWS, DuckDB over the same Parquet files locally.

The same query text works on both: it is written in Athena's dialect (Trino) and, locally,
translated to DuckDB's with sqlglot, with every ``"database"."table"`` it names resolved
through the Glue catalog (table schema, registered partitions and their locations).
"""

from __future__ import annotations

from typing import Any

from offload_assets.sql.results import QueryError, QueryResult
from offload_assets.table_spec import DEFAULT_DATABASE

__all__ = ["QueryError", "QueryResult", "run_query"]


def run_query(
    sql: str,
    *,
    connection: Any,
    default_database: str = DEFAULT_DATABASE,
    athena_workgroup: str | None = None,
    athena_output_location: str | None = None,
    athena_settings: Any = None,
    timeout_seconds: float = 600.0,
) -> QueryResult:
    """Run ``sql`` on the engine that fits the connection's target (DuckDB locally, Athena on AWS).

    ``athena_settings`` (:class:`offload_assets.sql.athena.AthenaSettings`) sets the workgroup,
    result location and its encryption; ``athena_workgroup``/``athena_output_location`` override
    those two fields.
    """
    if connection.target == "local":
        from offload_assets.iceberg.catalog import catalog_properties
        from offload_assets.sql.duckdb_local import LocalSqlEngine

        engine = LocalSqlEngine(
            glue=connection.client("glue"),
            filesystem=connection.arrow_filesystem(),
            iceberg_io=catalog_properties(connection),
        )
        return engine.query(sql, default_database=default_database)
    from offload_assets.sql.athena import AthenaSqlEngine

    engine = AthenaSqlEngine(
        athena=connection.client("athena"),
        settings=athena_settings,
        workgroup=athena_workgroup,
        output_location=athena_output_location,
    )
    return engine.query(sql, default_database=default_database, timeout_seconds=timeout_seconds)
