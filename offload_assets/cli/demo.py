"""The Goodreads walkthrough: seed ``Reviews`` locally, run the table's job for today, ask the blog's question."""

from __future__ import annotations

from typing import Any

BLOG_QUERY = """SELECT COUNT(author) as num_reviews FROM "dynamodb-exports"."reviews" WHERE author = 'J.K. Rowling';"""


def run_demo(*, items: int, console: Any, tables_file: str | None = None) -> int:
    import dagster as dg

    from offload_assets.aws.connection import resolve_connection
    from offload_assets.defs.definitions import TABLES_FILE, build_definitions
    from offload_assets.defs.table_assets import partitions_for
    from offload_assets.local.demo_data import REVIEWS_TABLE, seed_reviews
    from offload_assets.sql.query import run_query
    from offload_assets.table_spec import load_tables_file

    tables = load_tables_file(tables_file or TABLES_FILE)
    spec = tables.table(REVIEWS_TABLE)
    connection = resolve_connection(target="local")
    console.print(f"[bold]1/4[/bold] local AWS emulator at {connection.endpoint_url}")
    seeded = seed_reviews(connection.client("dynamodb"), table_name=spec.dynamodb_table, count=items)
    expected = sum(1 for i in seeded if i.get("Author") == "J.K. Rowling")
    console.print(
        f"[bold]2/4[/bold] DynamoDB table {spec.dynamodb_table}: {len(seeded):,} items ({expected} by J.K. Rowling)"
    )

    if spec.change_capture == "streams":
        from offload_assets.cdc.table_capture import enable_stream

        if enable_stream(connection.client("dynamodb"), spec.dynamodb_table):
            console.print(f"    {spec.dynamodb_table}: DynamoDB stream on (NEW_AND_OLD_IMAGES) for change capture")

    defs = build_definitions(tables.path, target="local")
    job = defs.resolve_job_def(f"{spec.name}_offload_job")
    partition = partitions_for(spec).get_last_partition_key()
    console.print(f"[bold]3/4[/bold] running Dagster job {job.name} for partition {partition} ...")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # our four lines, not Dagster's debug stream
    result = job.execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.get(), raise_on_error=False, run_config=quiet
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        console.print(f"[red]job {job.name} failed[/red] (run {result.run_id}): " + " | ".join(failures))
        return 1
    console.print(f"    run {result.run_id} succeeded (see it with `{_command()} dev`)")

    if spec.change_capture == "streams":
        _bootstrap_change_capture(spec, connection, partition, console)
    console.print(f"[bold]4/4[/bold] {BLOG_QUERY}")
    answer = run_query(BLOG_QUERY, connection=connection).scalar()
    console.print(f"num_reviews = [bold]{answer}[/bold]")
    if answer != expected:
        console.print(f"[red]expected {expected}: the offloaded data does not match the table[/red]")
        return 1
    console.print(
        f"next: [bold]{_command()} dev[/bold] (the Dagster UI, this run included), "
        f'[bold]{_command()} query[/bold] "SELECT ..." (your own SQL), '
        f"[bold]{_command()} export status[/bold] (what is exported and published)"
    )
    return 0


def _bootstrap_change_capture(spec, connection, partition: str, console) -> None:
    """change_capture: streams: start the stream's capture from the partition just published (or, when
    the partition went to no Iceberg table, from a native export), so `cdc run` works right after."""
    from offload_assets.aws.s3_writes import s3_put_kwargs
    from offload_assets.cdc.table_capture import (
        ChangeCaptureRefused,
        bootstrap_from_export,
        open_table_capture,
        run_table_capture,
    )
    from offload_assets.export.layout import parse_export_time
    from offload_assets.iceberg.catalog import connect_catalog
    from offload_assets.local.emulator import backdate_point_in_time_recovery
    from offload_assets.snapshot.build import find_export_for_partition

    # A re-bootstrap loads a native export: PITR on, with a window reaching back to now minus 5 minutes.
    backdate_point_in_time_recovery(connection.endpoint_url, spec.dynamodb_table, days=1, region=connection.region_name)
    s3 = connection.client("s3")
    try:
        capture = open_table_capture(
            spec,
            dynamodb=connection.client("dynamodb"),
            streams=connection.client("dynamodbstreams"),
            s3=s3,
            catalog=connect_catalog(connection, s3_put_kwargs(spec)),
        )
    except ChangeCaptureRefused as err:
        console.print(f"    [yellow]change capture not bootstrapped[/yellow]: {err}")
        return
    if capture.target.table is not None and capture.target.table.current_snapshot() is not None:
        export = find_export_for_partition(s3, spec, partition)
        bootstrap_from_export(capture, parse_export_time(export.start_time), f"partition {partition}")
        origin = f"partition {partition} (export {export.export_id})"
    else:
        run = run_table_capture(capture)
        origin = run.rebootstraps[0].origin if run.rebootstraps else "its committed position"
    console.print(
        f"    change capture bootstrapped from {origin}: `{_command()} cdc run {spec.dynamodb_table}` applies new changes"
    )


def _command() -> str:
    """``offload-assets`` when that is on PATH, else the path to the one in this environment (e.g. ``.venv/bin/...``)."""
    import os
    import shutil
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "offload-assets"
    found = shutil.which("offload-assets")
    if found and (not script.exists() or Path(found).resolve() == script.resolve()):
        return "offload-assets"
    try:
        return os.path.relpath(script)
    except ValueError:
        return str(script)
