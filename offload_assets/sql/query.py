"""Run SQL against the catalog: Athena on AWS, DuckDB over the same Parquet files locally.

The same query text works on both: it is written in Athena's dialect (Trino) and, locally,
translated to DuckDB's with sqlglot, with every ``"database"."table"`` it names resolved
through the Glue catalog (table schema, registered partitions and their locations).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from offload_assets.table_spec import DEFAULT_DATABASE


class QueryError(RuntimeError):
    """The query failed; the message is the engine's own (Athena's StateChangeReason, DuckDB's error)."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    engine: str
    elapsed_seconds: float
    bytes_scanned: int | None = None
    query_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def scalar(self) -> Any:
        if len(self.rows) != 1 or len(self.columns) != 1:
            raise ValueError(f"expected one value, got {len(self.rows)} row(s) of {len(self.columns)} column(s)")
        return self.rows[0][0]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_json(self) -> str:
        return json.dumps(self.as_dicts(), default=_json_value, ensure_ascii=False)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        writer.writerows([[_text_value(v) for v in row] for row in self.rows])
        return buf.getvalue()


def _json_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        import base64

        return base64.b64encode(v).decode()
    return str(v)


def _text_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=_json_value, ensure_ascii=False)
    return str(v)


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
        from offload_assets.sql.duckdb_local import LocalSqlEngine

        engine = LocalSqlEngine(glue=connection.client("glue"), filesystem=connection.arrow_filesystem())
        return engine.query(sql, default_database=default_database)
    from offload_assets.sql.athena import AthenaSqlEngine

    engine = AthenaSqlEngine(
        athena=connection.client("athena"),
        settings=athena_settings,
        workgroup=athena_workgroup,
        output_location=athena_output_location,
    )
    return engine.query(sql, default_database=default_database, timeout_seconds=timeout_seconds)
