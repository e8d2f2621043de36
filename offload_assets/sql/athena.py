"""SQL on AWS: Athena, with its own error messages surfaced, costs reported and results typed.

One query = StartQueryExecution (workgroup, database, result location and its encryption),
GetQueryExecution polled with backoff until a final state, then GetQueryResults page by page
(1,000 rows a page). What the query cost is reported: ``DataScannedInBytes`` (what Athena
bills) and the engine, queue and planning times. If the caller is interrupted while the query
runs (Ctrl-C, a timeout, or Dagster terminating the run, which raises inside the step), the
query is stopped with StopQueryExecution before the interruption propagates, so nothing keeps
scanning (and billing) after its run is gone.

Values come back typed: integers as ``int``, ``decimal`` as ``Decimal``, ``double``/``real``
as ``float``, ``boolean``, ``date``, ``timestamp`` (with time zone too), ``varbinary`` as
``bytes`` and ``json`` parsed. Athena returns arrays, maps and rows as display text with no
escaping, which cannot be parsed back reliably, so those stay text (cast them to ``json`` in
the query to get parsed values).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from offload_assets.sql.results import QueryError, QueryResult

if TYPE_CHECKING:
    from types_boto3_athena import AthenaClient

_INTEGER_TYPES = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOAT_TYPES = {"float", "double", "real"}
ENCRYPTION_OPTIONS = ("SSE_S3", "SSE_KMS", "CSE_KMS")
MAX_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class AthenaSettings:
    """Where and how queries run. Workgroups that enforce their own configuration override these."""

    workgroup: str = "primary"
    output_location: str | None = None  # s3://bucket/prefix/ for result files; default: the workgroup's
    encryption: str | None = None  # SSE_S3, SSE_KMS or CSE_KMS for the result files
    kms_key: str | None = None  # required by SSE_KMS and CSE_KMS
    expected_bucket_owner: str | None = None  # account id that must own the result bucket
    result_reuse_minutes: int | None = None  # reuse a previous identical query's results up to this age
    catalog: str = "AwsDataCatalog"
    poll_seconds: float = 0.5
    page_size: int = 1000

    def __post_init__(self) -> None:
        if self.output_location is not None and not self.output_location.startswith("s3://"):
            raise ValueError(f"Athena output_location must be an s3:// URI, got {self.output_location!r}")
        if self.encryption is not None and self.encryption not in ENCRYPTION_OPTIONS:
            raise ValueError(
                f"Athena result encryption {self.encryption!r}: expected one of {', '.join(ENCRYPTION_OPTIONS)}"
            )
        if self.encryption in ("SSE_KMS", "CSE_KMS") and not self.kms_key:
            raise ValueError(f"Athena result encryption {self.encryption} needs kms_key (a KMS key ARN or id)")
        if not 1 <= self.page_size <= 1000:
            raise ValueError(f"Athena page_size must be 1-1000, got {self.page_size}")

    def start_kwargs(self, sql: str, database: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": database, "Catalog": self.catalog},
            "WorkGroup": self.workgroup,
        }
        result: dict[str, Any] = {}
        if self.output_location:
            result["OutputLocation"] = self.output_location
        if self.encryption:
            result["EncryptionConfiguration"] = {"EncryptionOption": self.encryption}
            if self.kms_key:
                result["EncryptionConfiguration"]["KmsKey"] = self.kms_key
        if self.expected_bucket_owner:
            result["ExpectedBucketOwner"] = self.expected_bucket_owner
        if result:
            kwargs["ResultConfiguration"] = result
        if self.result_reuse_minutes:
            kwargs["ResultReuseConfiguration"] = {
                "ResultReuseByAgeConfiguration": {"Enabled": True, "MaxAgeInMinutes": self.result_reuse_minutes}
            }
        return kwargs


def _timestamp(value: str) -> dt.datetime:
    text = value.strip()
    zone = None
    head, _, tail = text.rpartition(" ")
    if head and tail and not tail[:1].isdigit():  # "2026-01-02 03:04:05.123 UTC"
        text, zone = head, tail
    parsed = dt.datetime.fromisoformat(text)
    if zone:
        parsed = parsed.replace(tzinfo=dt.UTC if zone == "UTC" else zoneinfo.ZoneInfo(zone))
    return parsed


def convert_value(value: str | None, athena_type: str) -> Any:
    """One result cell, from Athena's text to a Python value of its column type."""
    if value is None:
        return None
    t = athena_type.lower().split("(", 1)[0].strip()
    if t in _INTEGER_TYPES:
        return int(value)
    if t in _FLOAT_TYPES:
        return float(value)
    if t == "decimal":
        return Decimal(value)
    if t == "boolean":
        return value.lower() == "true"
    if t == "date":
        return dt.date.fromisoformat(value)
    if t in ("timestamp", "timestamp with time zone"):
        return _timestamp(value)
    if t == "varbinary":
        return bytes.fromhex(value)
    if t == "json":
        return json.loads(value)
    return value


def rows_from_pages(
    pages: Iterable[dict[str, Any]], *, has_header: bool
) -> tuple[tuple[str, ...], tuple[str, ...], list[tuple[Any, ...]]]:
    """Columns, their Athena types, and typed rows from GetQueryResults pages.

    For SELECT (``DML``) queries Athena repeats the column names as the first row of the first page.
    """
    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = []
    first = True
    for page in pages:
        result_set = page["ResultSet"]
        if first:
            info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = tuple(c["Name"] for c in info)
            types = tuple(c.get("Type", "varchar") for c in info)
        data = result_set.get("Rows", [])
        if first and has_header and data:
            data = data[1:]
        first = False
        for row in data:
            values = [d.get("VarCharValue") for d in row["Data"]]
            if len(values) != len(types):
                raise QueryError(f"Athena returned a row of {len(values)} values for {len(types)} columns")
            rows.append(tuple(convert_value(v, t) for v, t in zip(values, types)))
    return columns, types, rows


class AthenaSqlEngine:
    def __init__(
        self,
        *,
        athena: AthenaClient,
        settings: AthenaSettings | None = None,
        workgroup: str | None = None,
        output_location: str | None = None,
        poll_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = settings or AthenaSettings()
        overrides = {
            k: v
            for k, v in (("workgroup", workgroup), ("output_location", output_location), ("poll_seconds", poll_seconds))
            if v is not None
        }
        self.settings = replace(settings, **overrides)
        self.athena = athena
        self.sleep = sleep

    def start(self, sql: str, *, default_database: str) -> str:
        try:
            return self.athena.start_query_execution(**self.settings.start_kwargs(sql, default_database))[
                "QueryExecutionId"
            ]
        except self.athena.exceptions.ClientError as err:
            message = err.response.get("Error", {}).get("Message") or str(err)
            raise QueryError(f"Athena refused the query (workgroup {self.settings.workgroup!r}): {message}") from None

    def cancel(self, query_id: str) -> bool:
        """Stop a query (best effort: it may have finished meanwhile); True if the stop was accepted."""
        try:
            self.athena.stop_query_execution(QueryExecutionId=query_id)
            return True
        except Exception:  # noqa: BLE001 - cancelling must never hide the interruption that caused it
            return False

    def wait(
        self, query_id: str, *, timeout_seconds: float, on_poll: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll until the query ends; the execution on success, :class:`QueryError` on failure or timeout."""
        deadline = time.monotonic() + timeout_seconds
        delay = self.settings.poll_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if on_poll is not None:
                on_poll(execution)
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                status = execution["Status"]
                reason = status.get("StateChangeReason", "no reason given")
                error = status.get("AthenaError") or {}
                kind = {1: "system error", 2: "query error", 3: "other error"}.get(error.get("ErrorCategory"), "")
                retry = " (Athena says it can be retried)" if error.get("Retryable") else ""
                raise QueryError(f"Athena query {query_id} {state}{': ' + kind if kind else ''}: {reason}{retry}")
            if time.monotonic() > deadline:
                self.cancel(query_id)
                raise QueryError(f"Athena query {query_id} still {state} after {timeout_seconds:g} s; cancelled")
            self.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_SECONDS)

    def pages(self, query_id: str) -> Iterable[dict[str, Any]]:
        paginator = self.athena.get_paginator("get_query_results")
        yield from paginator.paginate(QueryExecutionId=query_id, PaginationConfig={"PageSize": self.settings.page_size})

    def query(
        self,
        sql: str,
        *,
        default_database: str,
        timeout_seconds: float = 600.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> QueryResult:
        started = time.monotonic()
        query_id = self.start(sql, default_database=default_database)
        try:
            execution = self.wait(query_id, timeout_seconds=timeout_seconds, on_poll=on_poll)
        except QueryError:
            raise
        except BaseException:
            # Interrupted (KeyboardInterrupt, Dagster's run termination, ...): stop paying for it.
            self.cancel(query_id)
            raise

        def counted(pages: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
            for n, page in enumerate(pages, start=1):
                if on_page is not None:
                    on_page(n)
                yield page

        columns, types, rows = rows_from_pages(
            counted(self.pages(query_id)), has_header=execution.get("StatementType", "DML") == "DML"
        )
        stats = execution.get("Statistics", {})
        return QueryResult(
            columns=columns,
            rows=tuple(rows),
            engine="athena",
            elapsed_seconds=time.monotonic() - started,
            bytes_scanned=stats.get("DataScannedInBytes"),
            query_id=query_id,
            details={
                "column_types": types,
                "engine_execution_ms": stats.get("EngineExecutionTimeInMillis"),
                "total_execution_ms": stats.get("TotalExecutionTimeInMillis"),
                "queue_ms": stats.get("QueryQueueTimeInMillis"),
                "planning_ms": stats.get("QueryPlanningTimeInMillis"),
                "workgroup": execution.get("WorkGroup", self.settings.workgroup),
                "output_location": execution.get("ResultConfiguration", {}).get("OutputLocation"),
                "reused_previous_result": stats.get("ResultReuseInformation", {}).get("ReusedPreviousResult"),
            },
        )
