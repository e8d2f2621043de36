"""``offload-assets query``: SQL on the catalog, printed for people (table) or programs (json, csv)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from offload_assets.aws.connection import resolve_connection
from offload_assets.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_command,
    make_console,
    print_error,
)
from offload_assets.cli.demo import BLOG_QUERY
from offload_assets.table_spec import DEFAULT_DATABASE


def _is_number(v: Any) -> bool:
    from decimal import Decimal

    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def print_result(result, fmt: str) -> None:
    if fmt == "json":
        print(result.to_json())
    elif fmt == "csv":
        sys.stdout.write(result.to_csv())
    else:
        from rich import box
        from rich.table import Table

        from offload_assets.sql.display import trino_text

        table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD)
        for i, col in enumerate(result.columns):
            values = [row[i] for row in result.rows if row[i] is not None]
            numeric = bool(values) and all(_is_number(v) for v in values)
            table.add_column(col, justify="right" if numeric else "left", overflow="fold")
        for row in result.rows:
            table.add_row(*(trino_text(v) for v in row))
        make_console().print(table)
        scanned = f", {result.bytes_scanned:,} bytes scanned" if result.bytes_scanned is not None else ""
        make_console(stderr=True).print(
            f"[dim]{len(result.rows)} row(s) in {result.elapsed_seconds:.2f} s on {result.engine}{scanned}[/dim]"
        )


def cmd_query(args: argparse.Namespace) -> int:
    from offload_assets.sql.query import QueryError, run_query

    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not sql.strip():
        raise UsageError("no SQL given (pass the statement as an argument, or - to read it from stdin)")
    try:
        result = run_query(
            sql,
            connection=resolve_connection(),
            default_database=args.database,
            athena_workgroup=args.workgroup,
            athena_output_location=args.output_location,
        )
    except QueryError as err:
        print_error(f"query failed: {err}")
        return EXIT_FAILED
    print_result(result, args.format)
    return EXIT_OK


def add_query_parser(sub) -> None:
    query = add_command(
        sub,
        "query",
        help="run SQL (Athena dialect) against the catalog",
        description="Run one SQL statement. Locally it runs on DuckDB over the catalog's Parquet files; on AWS on Athena.\n"
        f'Tables are resolved through the Glue catalog (database "{DEFAULT_DATABASE}" unless --database says otherwise).\n'
        "Each partition (ddb_export_timestamp) is a full snapshot: filter on it to ask about one day.",
        examples=(
            f"  offload-assets query '{BLOG_QUERY}'\n"
            "  offload-assets query --format csv 'SELECT * FROM reviews WHERE ddb_export_timestamp = current_date' > today.csv\n"
            "  echo 'SELECT count(*) FROM reviews' | offload-assets query -\n"
            "  OFFLOAD_ASSETS_TARGET=aws offload-assets query --output-location s3://my-bucket/athena/ 'SELECT 1'"
        ),
    )
    query.add_argument("sql", help="the SQL text, or - to read it from standard input")
    query.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        default="table",
        help="table (aligned, for people; the default), json (a list of objects) or csv (with a header)",
    )
    query.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help=f"database for unqualified table names (default {DEFAULT_DATABASE})",
    )
    query.add_argument("--workgroup", default="primary", help="Athena workgroup (AWS only)")
    query.add_argument("--output-location", default=None, help="Athena result location s3://... (AWS only)")
    query.set_defaults(func=cmd_query)
