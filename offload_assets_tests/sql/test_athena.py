"""The Athena engine's API flow against the emulator: start, poll, paginate, type, fail, cancel.

The emulator parses no SQL: results are queued through its API
(``/moto-api/static/athena/query-results``) and query states are held back with its state
manager (``athena::execution`` advances one state every N polls), so polling, timeouts and
cancellation run against real API calls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import threading
import urllib.request
from decimal import Decimal

import dagster as dg
import pytest

from offload_assets.sql.athena import AthenaSettings, AthenaSqlEngine, convert_value, rows_from_pages
from offload_assets.sql.query import QueryError, run_query

DB = "dynamodb-exports"


def _post(emulator, path: str, body: dict) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{emulator.endpoint_url}{path}", data=json.dumps(body).encode(), method="POST")
    with opener.open(request, timeout=30) as response:
        assert response.status in (200, 201)


def queue_result(emulator, columns: list[tuple[str, str]], rows: list[list[str | None]]) -> None:
    """Queue one query result the way Athena returns it: a header row, then text values."""

    def row(values):
        return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}

    _post(
        emulator,
        "/moto-api/static/athena/query-results",
        {
            "region": "us-east-1",
            "results": [
                {
                    "rows": [row([c for c, _ in columns]), *(row(r) for r in rows)],
                    "column_info": [
                        {
                            "Name": c,
                            "Label": c,
                            "Type": t,
                            "CatalogName": "hive",
                            "SchemaName": DB,
                            "TableName": "reviews",
                            "Precision": 0,
                            "Scale": 0,
                            "Nullable": "UNKNOWN",
                            "CaseSensitive": t == "varchar",
                        }
                        for c, t in columns
                    ],
                }
            ],
        },
    )


@contextlib.contextmanager
def queries_take(emulator, polls_per_state: int):
    """Each query stays QUEUED, then RUNNING, for ``polls_per_state`` polls before it succeeds."""
    _post(
        emulator,
        "/moto-api/state-manager/set-transition",
        {"model_name": "athena::execution", "transition": {"progression": "manual", "times": polls_per_state}},
    )
    try:
        yield
    finally:
        _post(emulator, "/moto-api/state-manager/unset-transition", {"model_name": "athena::execution"})


@pytest.fixture()
def athena(aws):
    return aws.client("athena")


def state_of(athena, query_id: str) -> str:
    return athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"]


def test_typed_results_and_statistics(aws, emulator, athena):
    queue_result(
        emulator,
        [
            ("author", "varchar"),
            ("n", "bigint"),
            ("avg", "double"),
            ("price", "decimal"),
            ("ok", "boolean"),
            ("day", "date"),
            ("at", "timestamp"),
            ("cover", "varbinary"),
            ("tags", "array"),
        ],
        [
            [
                "J.K. Rowling",
                "2",
                "4.5",
                "12345678901234567890123456789012345.67",
                "true",
                "2026-11-27",
                "2026-11-27 10:00:00.123",
                "68 69",
                "[a, b]",
            ],
            ["Jane Austen", "1", "NaN", None, "false", None, None, None, None],
        ],
    )
    engine = AthenaSqlEngine(athena=athena, settings=AthenaSettings(poll_seconds=0.01))
    result = engine.query('SELECT ... FROM "dynamodb-exports"."reviews"', default_database=DB)
    assert result.engine == "athena" and result.columns == (
        "author",
        "n",
        "avg",
        "price",
        "ok",
        "day",
        "at",
        "cover",
        "tags",
    )
    first, second = result.rows
    assert first == (
        "J.K. Rowling",
        2,
        4.5,
        Decimal("12345678901234567890123456789012345.67"),
        True,
        dt.date(2026, 11, 27),
        dt.datetime(2026, 11, 27, 10, 0, 0, 123000),
        b"hi",
        "[a, b]",
    )
    assert (
        second[:2] == ("Jane Austen", 1)
        and second[2] != second[2]
        and second[3:] == (None, False, None, None, None, None)
    )
    assert result.bytes_scanned == 0 and result.details["engine_execution_ms"] == 0
    assert result.details["workgroup"] == "primary" and result.query_id


def test_polls_until_done_then_pages_every_row(aws, emulator, athena):
    rows = [[f"user-{i:05d}", str(i)] for i in range(2500)]
    queue_result(emulator, [("user", "varchar"), ("n", "bigint")], rows)
    states: list[str] = []
    pages: list[int] = []
    with queries_take(emulator, 3):
        result = AthenaSqlEngine(athena=athena, poll_seconds=0.01).query(
            "SELECT user, n FROM reviews",
            default_database=DB,
            on_poll=lambda e: states.append(e["Status"]["State"]),
            on_page=pages.append,
        )
    assert states[0] == "QUEUED" and "RUNNING" in states and states[-1] == "SUCCEEDED"
    assert len(result.rows) == 2500 and result.rows[0] == ("user-00000", 0) and result.rows[-1] == ("user-02499", 2499)
    assert pages and pages[0] == 1


def test_rows_across_pages_keep_order_and_drop_only_the_first_header():
    def page(rows, with_info=True):
        body = {"Rows": [{"Data": [{"VarCharValue": v} for v in r]} for r in rows]}
        if with_info:
            body["ResultSetMetadata"] = {
                "ColumnInfo": [{"Name": "n", "Type": "integer"}, {"Name": "s", "Type": "varchar"}]
            }
        return {"ResultSet": body}

    pages = [page([["n", "s"], ["1", "a"]]), page([["2", "n"], ["3", "s"]], with_info=False)]
    columns, types, rows = rows_from_pages(pages, has_header=True)
    assert columns == ("n", "s") and types == ("integer", "varchar") and rows == [(1, "a"), (2, "n"), (3, "s")]
    assert rows_from_pages([page([["1", "a"]])], has_header=False)[2] == [(1, "a")]


@pytest.mark.parametrize(
    ("value", "type_", "expected"),
    [
        ("-9223372036854775808", "bigint", -9223372036854775808),
        ("1.5E10", "double", 1.5e10),
        ("2026-11-27 10:00:00.000 UTC", "timestamp with time zone", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ('{"a": [1, 2]}', "json", {"a": [1, 2]}),
        ("0.10", "decimal(10,2)", Decimal("0.10")),
        ("x", "varchar(3)", "x"),
    ],
)
def test_value_conversion(value, type_, expected):
    assert convert_value(value, type_) == expected


def test_settings_reach_the_api(aws, athena):
    settings = AthenaSettings(
        output_location="s3://results-bucket/athena/",
        encryption="SSE_KMS",
        kms_key="alias/results",
        result_reuse_minutes=60,
        poll_seconds=0.01,
    )
    kwargs = settings.start_kwargs("SELECT 1", DB)
    assert kwargs["ResultConfiguration"]["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": "alias/results",
    }
    assert kwargs["ResultReuseConfiguration"]["ResultReuseByAgeConfiguration"] == {
        "Enabled": True,
        "MaxAgeInMinutes": 60,
    }
    result = AthenaSqlEngine(athena=athena, settings=settings).query("SELECT 1", default_database=DB)
    execution = athena.get_query_execution(QueryExecutionId=result.query_id)["QueryExecution"]
    assert execution["ResultConfiguration"]["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": "alias/results",
    }
    assert execution["ResultConfiguration"]["OutputLocation"].startswith("s3://results-bucket/athena/")
    assert execution["QueryExecutionContext"]["Database"] == DB


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encryption": "SSE_KMS"}, "SSE_KMS needs kms_key"),
        ({"encryption": "AES"}, "expected one of SSE_S3, SSE_KMS, CSE_KMS"),
        ({"output_location": "results-bucket/x"}, "must be an s3:// URI"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AthenaSettings(**kwargs)


def test_unknown_workgroup_is_a_clear_error(aws, athena):
    with pytest.raises(
        QueryError, match="Athena refused the query \\(workgroup 'analysts'\\): WorkGroup does not exist"
    ):
        AthenaSqlEngine(athena=athena, workgroup="analysts").query("SELECT 1", default_database=DB)


def test_query_cancelled_elsewhere_is_reported(aws, emulator, athena):
    with queries_take(emulator, 50):

        def stop_it(execution):
            athena.stop_query_execution(QueryExecutionId=execution["QueryExecutionId"])

        with pytest.raises(QueryError, match=r"Athena query [0-9a-f-]+ CANCELLED"):
            AthenaSqlEngine(athena=athena, poll_seconds=0.01).query("SELECT 1", default_database=DB, on_poll=stop_it)


def test_timeout_cancels_the_query(aws, emulator, athena):
    seen: list[str] = []
    with queries_take(emulator, 10_000):
        with pytest.raises(QueryError, match=r"still QUEUED after 0.3 s; cancelled"):
            AthenaSqlEngine(athena=athena, poll_seconds=0.05).query(
                "SELECT 1",
                default_database=DB,
                timeout_seconds=0.3,
                on_poll=lambda e: seen.append(e["QueryExecutionId"]),
            )
        assert state_of(athena, seen[0]) == "CANCELLED"


def test_interrupt_stops_the_query(aws, emulator, athena):
    seen: list[str] = []

    def interrupt(execution):
        seen.append(execution["QueryExecutionId"])
        raise KeyboardInterrupt

    with queries_take(emulator, 10_000):
        with pytest.raises(KeyboardInterrupt):
            AthenaSqlEngine(athena=athena).query("SELECT 1", default_database=DB, on_poll=interrupt)
        assert state_of(athena, seen[0]) == "CANCELLED"


def test_interrupted_dagster_run_stops_its_athena_query(aws, emulator, athena):
    """A run interrupted while its asset waits on Athena (SIGINT, as `dagster` delivers on termination)."""
    seen: dict[str, object] = {}

    @dg.asset
    def athena_review_count() -> None:
        def on_poll(execution):
            seen.setdefault("query_id", execution["QueryExecutionId"])
            if "timer" not in seen:
                seen["timer"] = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
                seen["timer"].start()

        AthenaSqlEngine(athena=athena, poll_seconds=0.05).query(
            'SELECT count(*) FROM "dynamodb-exports"."reviews"',
            default_database=DB,
            on_poll=on_poll,
            timeout_seconds=120,
        )

    with queries_take(emulator, 100_000):
        try:
            result = dg.materialize(
                [athena_review_count], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
            )
        finally:
            seen["timer"].cancel()
        assert not result.success
        assert state_of(athena, seen["query_id"]) == "CANCELLED"


def test_run_query_uses_athena_on_aws_target(aws, emulator):
    from dataclasses import replace

    queue_result(emulator, [("num_reviews", "bigint")], [["3"]])
    on_aws = replace(aws, target="aws")  # same endpoint: the emulator stands in for AWS
    result = run_query(
        'SELECT COUNT(author) AS num_reviews FROM "dynamodb-exports"."reviews"',
        connection=on_aws,
        athena_settings=AthenaSettings(poll_seconds=0.01),
    )
    assert result.engine == "athena" and result.scalar() == 3


@pytest.mark.parametrize(
    "sql",
    [
        """SELECT COUNT(author) as num_reviews FROM "dynamodb-exports"."reviews" WHERE author = 'J.K. Rowling';""",
        """SELECT COUNT(author) as num_reviews FROM "dynamodb-exports"."reviews" """
        """FOR TIMESTAMP AS OF TIMESTAMP '2026-11-20 00:00:00 UTC' WHERE author = 'J.K. Rowling'""",
        'SELECT COUNT(author) as num_reviews FROM "dynamodb-exports"."reviews" FOR VERSION AS OF 1974448851573164060',
        'SELECT count(*) AS num_reviews FROM "dynamodb-exports"."reviews$snapshots"',
    ],
)
def test_iceberg_queries_reach_athena_unchanged(aws, emulator, athena, sql):
    """Athena reads Iceberg itself: time travel and metadata tables go to it as written."""
    from dataclasses import replace

    queue_result(emulator, [("num_reviews", "bigint")], [["38"]])
    result = run_query(sql, connection=replace(aws, target="aws"), athena_settings=AthenaSettings(poll_seconds=0.01))
    assert result.engine == "athena" and result.scalar() == 38
    sent = athena.get_query_execution(QueryExecutionId=result.query_id)["QueryExecution"]["Query"]
    assert sent == sql


def test_iceberg_maintenance_statements_run_on_athena(aws, emulator, athena):
    from offload_assets.iceberg.maintenance import athena_maintenance_statements

    engine = AthenaSqlEngine(athena=athena, settings=AthenaSettings(poll_seconds=0.01))
    statements = athena_maintenance_statements(
        DB, "reviews", retention_snapshots=5, retention_days=7, target_bytes=128 * 1024 * 1024
    )
    ids = [engine.query(sql, default_database=DB).query_id for sql in statements]
    sent = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] for i in ids]
    assert sent == statements and [state_of(athena, i) for i in ids] == ["SUCCEEDED"] * 3
