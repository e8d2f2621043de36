"""SQL on AWS: Athena, with its own error messages surfaced and results typed."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from offload_assets.sql_query import QueryError, QueryResult

_INTEGER_TYPES = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOAT_TYPES = {"float", "double", "real"}


def _convert(value: str | None, athena_type: str) -> Any:
    if value is None:
        return None
    t = athena_type.lower()
    if t in _INTEGER_TYPES:
        return int(value)
    if t in _FLOAT_TYPES:
        return float(value)
    if t == "decimal":
        return Decimal(value)
    if t == "boolean":
        return value.lower() == "true"
    return value


class AthenaSqlEngine:
    def __init__(self, *, athena: Any, workgroup: str = "primary", output_location: str | None = None, poll_seconds: float = 0.5) -> None:
        self.athena = athena
        self.workgroup = workgroup
        self.output_location = output_location
        self.poll_seconds = poll_seconds

    def start(self, sql: str, *, default_database: str) -> str:
        kwargs: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": default_database},
            "WorkGroup": self.workgroup,
        }
        if self.output_location:
            kwargs["ResultConfiguration"] = {"OutputLocation": self.output_location}
        return self.athena.start_query_execution(**kwargs)["QueryExecutionId"]

    def wait(self, query_id: str, *, timeout_seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                reason = execution["Status"].get("StateChangeReason", "no reason given")
                raise QueryError(f"Athena query {query_id} {state}: {reason}")
            if time.monotonic() > deadline:
                self.athena.stop_query_execution(QueryExecutionId=query_id)
                raise QueryError(f"Athena query {query_id} still {state} after {timeout_seconds:.0f} s; cancelled")
            time.sleep(self.poll_seconds)

    def results(self, query_id: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        columns: tuple[str, ...] = ()
        types: list[str] = []
        rows: list[tuple[Any, ...]] = []
        first = True
        for page in self.athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
            result_set = page["ResultSet"]
            if first:
                info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                columns = tuple(c["Name"] for c in info)
                types = [c.get("Type", "varchar") for c in info]
            data = result_set.get("Rows", [])
            if first and data and [d.get("VarCharValue") for d in data[0]["Data"]] == list(columns):
                data = data[1:]  # the header row Athena puts first for SELECT queries
            first = False
            for row in data:
                values = [d.get("VarCharValue") for d in row["Data"]]
                rows.append(tuple(_convert(v, t) for v, t in zip(values, types)))
        return columns, rows

    def query(self, sql: str, *, default_database: str, timeout_seconds: float = 600.0) -> QueryResult:
        started = time.monotonic()
        query_id = self.start(sql, default_database=default_database)
        try:
            execution = self.wait(query_id, timeout_seconds=timeout_seconds)
        except KeyboardInterrupt:
            self.athena.stop_query_execution(QueryExecutionId=query_id)
            raise
        columns, rows = self.results(query_id)
        stats = execution.get("Statistics", {})
        return QueryResult(
            columns=columns,
            rows=tuple(rows),
            engine="athena",
            elapsed_seconds=time.monotonic() - started,
            bytes_scanned=stats.get("DataScannedInBytes"),
            query_id=query_id,
            details={"engine_execution_ms": stats.get("EngineExecutionTimeInMillis")},
        )
