"""``offload-assets demo``, ``local`` (the emulator) and ``dev`` (the Dagster UI)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offload_assets.aws.connection import TARGET_ENV_VAR, current_target, resolve_connection
from offload_assets.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    UsageError,
    add_command,
    dagster_home,
    load_tables,
    make_console,
    tables_option,
)
from offload_assets.local.emulator import (
    EmulatorError,
    backdate_point_in_time_recovery,
    default_state_dir,
    emulator_status,
    ensure_local_emulator,
    reset_local_state,
    stop_local_emulator,
)


def cmd_demo(args: argparse.Namespace) -> int:
    from offload_assets.cli.demo import run_demo, run_iceberg_demo

    if current_target() != "local":
        raise UsageError(
            f"the demo creates and fills a DynamoDB table; it only runs on the local emulator ({TARGET_ENV_VAR}=local)"
        )
    tables_file = str(load_tables(args.tables).path)
    dagster_home()
    demo = run_iceberg_demo if args.table_format == "iceberg" else run_demo
    return demo(items=args.items, console=make_console(), tables_file=tables_file)


def cmd_local(args: argparse.Namespace) -> int:
    console = make_console()
    if (args.table is not None) != (args.action == "pitr"):
        raise UsageError("only `local pitr` takes a table: offload-assets local pitr TABLE [--days N]")
    if args.action == "pitr":
        return _local_pitr(args.table, args.days, console)
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
            return EXIT_NOT_RUNNING
        console.print(f"running at {emu.endpoint_url} (pid {emu.pid}), state in {emu.state_dir}")
    elif args.action == "reset":
        reset_local_state()
        console.print("emulator stopped and its saved state deleted")
    return EXIT_OK


def _local_pitr(table: str, days: float, console) -> int:
    """Give a table of the local emulator ``days`` of point-in-time recovery history (see README, Backfills)."""
    if current_target() != "local":
        raise UsageError(
            f"`local pitr` changes the local emulator only ({TARGET_ENV_VAR}=local); on AWS enable PITR on the table"
        )
    connection = resolve_connection(target="local")
    try:
        earliest = backdate_point_in_time_recovery(
            connection.endpoint_url, table, days=days, region=connection.region_name
        )
    except EmulatorError as err:
        raise UsageError(str(err)) from None
    console.print(
        f"{table}: point-in-time recovery on since {earliest:%Y-%m-%d %H:%M} UTC (local emulator): native exports of "
        "partitions from then on are accepted. The emulator exports the table as it is now, whatever the day."
    )
    return EXIT_OK


def cmd_dev(args: argparse.Namespace) -> int:
    home = dagster_home()
    workspace = Path(args.workspace).resolve()
    if not workspace.exists():
        raise UsageError(f"workspace file not found: {workspace} (run from the project directory, or pass --workspace)")
    from offload_assets.local.dev_server import run_dagster_dev

    print(f"DAGSTER_HOME={home}; UI on http://127.0.0.1:{args.port} (stop with Ctrl-C)", flush=True)
    code = run_dagster_dev(workspace, host="127.0.0.1", port=args.port)
    return EXIT_OK if code in (0, 128 + 2, 128 + 15) else EXIT_FAILED  # stopped by Ctrl-C/SIGTERM is a clean stop


def add_demo_parser(sub) -> None:
    demo = add_command(
        sub,
        "demo",
        help="seed the local Reviews table, run its Dagster job for today, answer the blog's query",
        description="The Goodreads walkthrough on the local emulator: create and fill the DynamoDB table Reviews,\n"
        "run reviews_offload_job for today's partition as a real Dagster run (it shows in `offload-assets dev`),\n"
        "then count J.K. Rowling's reviews with SQL over the Parquet snapshot.",
        examples="  offload-assets demo\n  offload-assets demo --items 20000\n  offload-assets demo --table-format iceberg",
    )
    demo.add_argument("--items", type=int, default=3000, help="generated reviews besides the blog's two (default 3000)")
    demo.add_argument(
        "--table-format",
        choices=("hive", "iceberg"),
        default="hive",
        help="iceberg: one Iceberg table, two days with changes between them, today's answer and day 1's by time "
        "travel (default hive: one Parquet snapshot per day)",
    )
    tables_option(demo)
    demo.set_defaults(func=cmd_demo)


def add_local_parser(sub) -> None:
    local = add_command(
        sub,
        "local",
        help="manage the local AWS emulator (start, stop, status, reset, pitr)",
        description="The local AWS emulator (moto) serving DynamoDB, S3, Glue and Athena on a loopback port. It starts\n"
        "by itself when anything needs it; its state is saved in $OFFLOAD_ASSETS_HOME/emulator/ and restored.\n"
        "  start   start it now (prints its endpoint)\n"
        "  stop    stop it; its state is saved and comes back at the next start\n"
        "  status  exit 0 if it is running, 3 if not\n"
        "  reset   stop it and delete everything it held\n"
        "  pitr    give TABLE point-in-time recovery since --days ago, so native exports (backfills)\n"
        "          of past days work locally; the emulator still exports the table as it is now",
        examples="  offload-assets local status || offload-assets local start\n  offload-assets local reset\n"
        "  offload-assets local pitr Reviews --days 8   # then backfill the last 7 days (export_method: native)",
    )
    local.add_argument("action", choices=["start", "stop", "status", "reset", "pitr"])
    local.add_argument("table", nargs="?", default=None, help="pitr: the DynamoDB table (in the local emulator)")
    local.add_argument("--days", type=float, default=8, help="pitr: days of recovery history, at most 35 (default 8)")
    local.set_defaults(func=cmd_local)


def add_dev_parser(sub) -> None:
    dev = add_command(
        sub,
        "dev",
        help="start the Dagster UI (dagster dev) on the project's local instance",
        description="Run `dagster dev -w workspace.yaml` on 127.0.0.1 with DAGSTER_HOME=$OFFLOAD_ASSETS_HOME/dagster_home,\n"
        "the instance `offload-assets demo` records its runs in. Ctrl-C or SIGTERM stops the UI, the daemon and the\n"
        "code server within a few seconds (the local emulator keeps running, its state intact).",
        examples="  offload-assets dev\n  offload-assets dev --port 3001",
    )
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--workspace", default="workspace.yaml", help="workspace file (default: ./workspace.yaml)")
    dev.set_defaults(func=cmd_dev)
