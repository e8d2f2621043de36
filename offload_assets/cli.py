"""``offload-assets``: the demo, SQL, the local emulator and the Dagster UI from the terminal.

Exit codes: 0 success, 1 the operation failed (the reason is printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from offload_assets.demo import BLOG_QUERY
from offload_assets.aws_connection import TARGET_ENV_VAR, current_target, resolve_connection
from offload_assets.local_emulator import (
    STATE_DIR_ENV_VAR,
    default_state_dir,
    emulator_status,
    ensure_local_emulator,
    reset_local_state,
    stop_local_emulator,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


DAGSTER_YAML = """# Dagster instance of offload_assets' local mode (runs, materializations, schedules).
# Telemetry is off: the embedded default never talks to anything but loopback.
telemetry:
  enabled: false
"""


def prepare_dagster_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def _dagster_home() -> Path:
    """The Dagster instance the demo and ``offload-assets dev`` share, so demo runs show in the UI."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_state_dir() / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(home))
    return home


def print_result(result, fmt: str) -> None:
    if fmt == "json":
        print(result.to_json())
    elif fmt == "csv":
        sys.stdout.write(result.to_csv())
    else:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold")
        for col in result.columns:
            table.add_column(col)
        for row in result.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        console = _console()
        console.print(table)
        scanned = f", {result.bytes_scanned:,} bytes scanned" if result.bytes_scanned is not None else ""
        console.print(f"[dim]{len(result.rows)} row(s) in {result.elapsed_seconds:.2f} s on {result.engine}{scanned}[/dim]")


def cmd_query(args: argparse.Namespace) -> int:
    from offload_assets.sql_query import QueryError, run_query

    sql = sys.stdin.read() if args.sql == "-" else args.sql
    try:
        result = run_query(
            sql,
            connection=resolve_connection(),
            default_database=args.database,
            athena_workgroup=args.workgroup,
            athena_output_location=args.output_location,
        )
    except QueryError as err:
        print(f"query failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    print_result(result, args.format)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from offload_assets.demo import run_demo

    if current_target() != "local":
        print(f"the demo creates and fills a DynamoDB table; it only runs on the local emulator ({TARGET_ENV_VAR}=local)", file=sys.stderr)
        return EXIT_USAGE
    _dagster_home()
    return run_demo(items=args.items, console=_console())


def cmd_local(args: argparse.Namespace) -> int:
    console = _console()
    if args.action == "start":
        emu = ensure_local_emulator()
        console.print(f"local AWS emulator running at {emu.endpoint_url} (pid {emu.pid}), state in {emu.state_dir}")
    elif args.action == "stop":
        stopped = stop_local_emulator()
        console.print("stopped (state saved)" if stopped else "not running")
    elif args.action == "status":
        emu = emulator_status()
        if emu is None:
            console.print(f"not running (state directory {default_state_dir()})")
            return EXIT_FAILED
        console.print(f"running at {emu.endpoint_url} (pid {emu.pid}), state in {emu.state_dir}")
    elif args.action == "reset":
        reset_local_state()
        console.print("emulator stopped and its saved state deleted")
    return EXIT_OK


def cmd_dev(args: argparse.Namespace) -> int:
    home = _dagster_home()
    workspace = Path(args.workspace).resolve()
    if not workspace.exists():
        print(f"workspace file not found: {workspace} (run from the project directory)", file=sys.stderr)
        return EXIT_USAGE
    print(f"DAGSTER_HOME={home}; UI on http://127.0.0.1:{args.port}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)])
    return EXIT_FAILED  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offload-assets",
        description=(
            "Offload DynamoDB tables to S3 as Parquet, register them in Glue, and query them with SQL.\n"
            f"Target: {TARGET_ENV_VAR}=local (default: a local AWS emulator, DuckDB for SQL) or aws.\n"
            f"Local state lives in ${STATE_DIR_ENV_VAR} (default ./.offload_assets)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="seed the local Reviews table, run the Dagster job for today, answer the blog's query")
    demo.add_argument("--items", type=int, default=3000, help="generated reviews besides the blog's two (default 3000)")
    demo.set_defaults(func=cmd_demo)

    query = sub.add_parser("query", help="run SQL (Athena dialect) against the catalog", description=(
        "Run one SQL statement. Locally it runs on DuckDB over the catalog's Parquet files; on AWS on Athena.\n"
        f"Example: offload-assets query '{BLOG_QUERY}'"), formatter_class=argparse.RawDescriptionHelpFormatter)
    query.add_argument("sql", help="the SQL text, or - to read it from standard input")
    query.add_argument("--format", choices=["table", "json", "csv"], default="table")
    query.add_argument("--database", default="dynamodb-exports", help="database for unqualified table names")
    query.add_argument("--workgroup", default="primary", help="Athena workgroup (AWS only)")
    query.add_argument("--output-location", default=None, help="Athena result location s3://... (AWS only)")
    query.set_defaults(func=cmd_query)

    local = sub.add_parser("local", help="manage the local AWS emulator (start, stop, status, reset)")
    local.add_argument("action", choices=["start", "stop", "status", "reset"])
    local.set_defaults(func=cmd_local)

    dev = sub.add_parser("dev", help="start the Dagster UI (dagster dev) on the project's local instance")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--workspace", default="workspace.yaml")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # the reason, not a traceback, for operational failures
        if os.environ.get("OFFLOAD_ASSETS_DEBUG"):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
