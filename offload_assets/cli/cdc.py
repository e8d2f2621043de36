"""``offload-assets cdc run TABLE`` (apply what waits in the table's DynamoDB stream, once, with a progress
line) and ``cdc status [TABLE]`` (lag, positions, last commit): change capture (issue 18) by hand."""

from __future__ import annotations

import argparse
import json

from offload_assets.aws.connection import resolve_connection
from offload_assets.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_command,
    load_tables,
    make_console,
    print_error,
    select_tables,
    tables_option,
)


def _open(spec, connection):
    from offload_assets.aws.s3_writes import s3_put_kwargs
    from offload_assets.cdc.table_capture import open_table_capture
    from offload_assets.iceberg.catalog import connect_catalog

    return open_table_capture(
        spec,
        dynamodb=connection.client("dynamodb"),
        streams=connection.client("dynamodbstreams"),
        s3=connection.client("s3"),
        catalog=connect_catalog(connection, s3_put_kwargs(spec)),
    )


def _capture_specs(tables, names):
    specs = [s for s in select_tables(tables, names) if names or s.change_capture == "streams"]
    for spec in specs:
        if spec.change_capture != "streams":
            raise UsageError(
                f"{spec.dynamodb_table}: change_capture is {spec.change_capture!r} in {tables.path}; "
                "set change_capture: streams and table_format: iceberg"
            )
    return specs


def cmd_cdc_run(args: argparse.Namespace) -> int:
    from offload_assets.cdc.reader import ContinuityLost
    from offload_assets.cdc.table_capture import ChangeCaptureRefused, run_table_capture

    (spec,) = _capture_specs(load_tables(args.tables), [args.table])
    err = make_console(stderr=True)
    totals = {"records": 0, "commits": 0}

    def progress(step) -> None:
        f = step.facts()
        totals["records"] += f["records"]
        totals["commits"] += step.committed
        err.print(
            f"{spec.dynamodb_table}: {totals['records']:,} records applied in {totals['commits']} commit(s) "
            f"(+{f['inserts']} inserts, {f['updates']} updates, {f['deletes']} deletes, {f['ttl_deletes']} TTL deletes; "
            f"{f['shards']} shard(s)), lag {f['lag_seconds']:.1f} s"
            + ("" if step.read.caught_up else ", more waiting ...")
        )

    try:
        run = run_table_capture(_open(spec, resolve_connection()), on_step=progress)
    except (ChangeCaptureRefused, ContinuityLost) as problem:
        print_error(f"offload-assets cdc run: {problem}")
        return EXIT_FAILED
    for gap in run.rebootstraps:
        err.print(f"[yellow]{spec.dynamodb_table}: {gap.reason}[/yellow]: {gap.message}; loaded {gap.origin}")
    facts = run.facts()
    if args.format == "json":
        print(json.dumps({"table": spec.dynamodb_table, **facts}))
    else:
        print(
            f"{spec.dynamodb_table}: {facts['records_read']:,} records, {facts['inserts']} inserts, {facts['updates']} "
            f"updates, {facts['deletes']} deletes, {facts['ttl_deletes']} TTL deletes in {facts['commits']} commit(s); "
            f"lag {facts['lag_seconds']:.1f} s; {'caught up' if facts['caught_up'] else 'more waiting'}"
            + (f"; re-bootstrapped {facts['rebootstraps']}x" if facts["rebootstraps"] else "")
        )
    return EXIT_OK


def cmd_cdc_status(args: argparse.Namespace) -> int:
    from offload_assets.cdc.table_capture import ChangeCaptureRefused, capture_status

    specs = _capture_specs(load_tables(args.tables), [args.table] if args.table else None)
    connection = resolve_connection()
    out = []
    for spec in specs:
        try:
            out.append(capture_status(_open(spec, connection)))
        except ChangeCaptureRefused as problem:
            out.append({"table": spec.dynamodb_table, "state": "refused", "detail": str(problem)})
    if args.format == "json":
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    if not out:
        print("no table has change_capture: streams")
    for s in out:
        lag = "" if s.get("lag_seconds") is None else f", lag {s['lag_seconds']:.1f} s"
        print(f"{s['table']} -> {s.get('iceberg_table', '?')}: {s['state']}{lag}")
        if s.get("detail"):
            print(f"  {s['detail']}")
        if s.get("position"):
            p = s["position"]
            print(f"  stream {p['stream_arn']}")
            for shard, seq in sorted(p["shards"].items()):
                print(f"  shard {shard}: after {seq}{' (read to its end)' if shard in p['finished'] else ''}")
        if s.get("last_commit"):
            c = s["last_commit"]
            print(
                f"  last commit {c.get('committed_at', '?')}: {c.get('records', 0)} records "
                f"({c.get('inserts', 0)} inserts, {c.get('updates', 0)} updates, {c.get('deletes', 0)} deletes, "
                f"{c.get('ttl_deletes', 0)} TTL deletes)"
            )
    return EXIT_OK


def add_cdc_parser(sub) -> None:
    cdc = add_command(
        sub,
        "cdc",
        help="change capture: apply a table's DynamoDB stream to its Iceberg table now (cdc run), or show where it stands",
        description="Change capture from DynamoDB Streams into the table's Iceberg table (tables.yaml: table_format: "
        "iceberg, change_capture: streams).\nIn Dagster a sensor does `cdc run` every change_capture_interval_seconds.",
        examples="  offload-assets cdc run Reviews\n  offload-assets cdc status\n  offload-assets cdc status Reviews --format json",
    )
    cdc_sub = cdc.add_subparsers(dest="cdc_command", required=True, metavar="ACTION")
    run = add_command(
        cdc_sub,
        "run",
        help="apply what waits in the table's stream once, with a progress line",
        description="Read the table's DynamoDB stream from the position committed in its Iceberg table and apply\n"
        "the changes (inserts, updates, deletes, TTL deletes), each batch in ONE Iceberg commit together with the\n"
        "new position. The first run, and a run that finds continuity lost (records trimmed, a re-enabled stream),\n"
        "loads a new native export first (point-in-time recovery must be on).",
        examples="  offload-assets cdc run Reviews\n  offload-assets cdc run Reviews --format json | jq .records_read",
    )
    run.add_argument("table", help="DynamoDB table name (or catalog table name) from the tables file")
    run.add_argument("--format", choices=["table", "json"], default="table", help="how to print the summary")
    tables_option(run)
    run.set_defaults(func=cmd_cdc_run)
    status = add_command(
        cdc_sub,
        "status",
        help="lag, stream positions and last commit per table with change capture",
        description="Where change capture stands: the lag (age of the oldest change not yet applied), the position\n"
        "committed per shard, and the last change-capture commit. Reads only; applies nothing.",
        examples="  offload-assets cdc status\n  offload-assets cdc status Reviews --format json",
    )
    status.add_argument("table", nargs="?", default=None, help="one table (default: every table with change capture)")
    status.add_argument("--format", choices=["table", "json"], default="table", help="how to print it")
    tables_option(status)
    status.set_defaults(func=cmd_cdc_status)
