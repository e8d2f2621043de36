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


#: What the Iceberg demo changes between its two days (keys of generated items; the inserted ones are new).
_DEMO_UPDATES = (3, 4, 5, 6, 7)  # these reviews' author becomes J.K. Rowling
_DEMO_DELETES = (10, 11, 12)
_DEMO_INSERTS = 4  # new J.K. Rowling reviews


def _iceberg_demo_tables(spec: Any, directory: str) -> str:
    """A tables file with the demo table as ``table_format: iceberg``, partitions at the current UTC hour.

    A scan reads the table as it is now, so it may export only the current day's partition; with
    the export hour set to this hour, yesterday's partition and today's are both current for the
    hour after it, and the demo can take day 1, change items, then take day 2.
    """
    import datetime as dt
    from pathlib import Path

    import yaml

    now = dt.datetime.now(dt.UTC)
    entry = {
        "dynamodb_table": spec.dynamodb_table,
        "s3_bucket": spec.s3_bucket,
        "s3_prefix": spec.s3_prefix,
        "catalog_database": spec.catalog_database,
        "catalog_table": spec.catalog_table,
        "table_format": "iceberg",
        "timezone": "UTC",
        "export_hour": now.hour,
        "partitions_start": (now.date() - dt.timedelta(days=2)).isoformat(),
    }
    path = Path(directory) / "tables-iceberg-demo.yaml"
    path.write_text(yaml.safe_dump({"tables": [entry]}, sort_keys=False))
    return str(path)


def _reset_catalog_table(connection: Any, spec: Any, console: Any) -> None:
    """The demo starts its Iceberg table from nothing (a Hive table of the same name is unregistered, data kept)."""
    from offload_assets.aws.s3_objects import delete_prefix
    from offload_assets.iceberg.publish import iceberg_location

    glue = connection.client("glue")
    try:
        table = glue.get_table(DatabaseName=spec.catalog_database, Name=spec.catalog_table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        table = None
    if table is not None:
        kind = table.get("Parameters", {}).get("table_type", "hive").lower()
        glue.delete_table(DatabaseName=spec.catalog_database, Name=spec.catalog_table)
        console.print(f"    unregistered the existing {kind} table {spec.catalog_database}.{spec.catalog_table}")
    bucket, _, prefix = iceberg_location(spec).location.removeprefix("s3://").partition("/")
    try:
        delete_prefix(connection.client("s3"), bucket=bucket, prefix=prefix + "/")
    except connection.client("s3").exceptions.NoSuchBucket:
        pass


def _change_items(ddb: Any, spec: Any, seeded: list[dict[str, Any]]) -> int:
    """Update, delete and insert a few reviews; returns J.K. Rowling's count after the changes."""
    from offload_assets.local.demo_data import put_items

    generated = [i for i in seeded if str(i["User"]).startswith("user-")]
    updated = [{**generated[n], "Author": "J.K. Rowling"} for n in _DEMO_UPDATES]
    inserted = [
        {"User": f"demo-new-{n}", "Book": "Harry Potter and the Goblet of Fire", "Author": "J.K. Rowling", "Rating": 5}
        for n in range(_DEMO_INSERTS)
    ]
    put_items(ddb, spec.dynamodb_table, updated + inserted)
    for n in _DEMO_DELETES:
        item = generated[n]
        ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": {"S": item["User"]}, "Book": {"S": item["Book"]}})
    deleted = {(generated[n]["User"], generated[n]["Book"]) for n in _DEMO_DELETES}
    after = {(i["User"], i["Book"]): i for i in seeded if (i["User"], i["Book"]) not in deleted}
    after.update({(i["User"], i["Book"]): i for i in updated + inserted})
    return sum(1 for i in after.values() if i.get("Author") == "J.K. Rowling")


def run_iceberg_demo(*, items: int, console: Any, tables_file: str | None = None) -> int:
    """The walkthrough on an Iceberg table: day 1, a few changes, day 2; today's answer and day 1's by time travel."""
    import datetime as dt
    import tempfile

    import dagster as dg

    from offload_assets.aws.connection import resolve_connection
    from offload_assets.defs.definitions import TABLES_FILE, build_definitions
    from offload_assets.defs.table_assets import asset_keys, partitions_for
    from offload_assets.local.demo_data import REVIEWS_TABLE, seed_reviews
    from offload_assets.sql.query import run_query
    from offload_assets.table_spec import load_tables_file

    base = load_tables_file(tables_file or TABLES_FILE).table(REVIEWS_TABLE)
    connection = resolve_connection(target="local")
    console.print(f"[bold]1/5[/bold] local AWS emulator at {connection.endpoint_url}")
    ddb = connection.client("dynamodb")
    if base.dynamodb_table in ddb.list_tables()["TableNames"]:
        for n in range(_DEMO_INSERTS):  # a previous demo's inserts
            key = {"User": {"S": f"demo-new-{n}"}, "Book": {"S": "Harry Potter and the Goblet of Fire"}}
            ddb.delete_item(TableName=base.dynamodb_table, Key=key)
    seeded = seed_reviews(ddb, table_name=base.dynamodb_table, count=items)
    day1_expected = sum(1 for i in seeded if i.get("Author") == "J.K. Rowling")
    console.print(
        f"[bold]2/5[/bold] DynamoDB table {base.dynamodb_table}: {len(seeded):,} items ({day1_expected} by J.K. Rowling)"
    )
    _reset_catalog_table(connection, base, console)
    with tempfile.TemporaryDirectory(prefix="offload-iceberg-demo-") as directory:
        demo_tables = _iceberg_demo_tables(base, directory)
        spec = load_tables_file(demo_tables).table(REVIEWS_TABLE)
        defs = build_definitions(demo_tables, target="local")
    job = defs.resolve_job_def(f"{spec.name}_offload_job")
    catalog_node = "__".join(asset_keys(spec)["catalog"].path)
    today = partitions_for(spec).get_last_partition_key()
    day1 = (dt.date.fromisoformat(today) - dt.timedelta(days=1)).isoformat()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    snapshots = {}
    for step, partition in ((3, day1), (4, today)):
        if partition == today:
            day2_expected = _change_items(ddb, spec, seeded)
            console.print(
                f"    changed {len(_DEMO_UPDATES)} reviews to J.K. Rowling, deleted {len(_DEMO_DELETES)}, "
                f"added {_DEMO_INSERTS} new ones"
            )
        console.print(f"[bold]{step}/5[/bold] running Dagster job {job.name} for partition {partition} (Iceberg) ...")
        result = job.execute_in_process(
            partition_key=partition, instance=dg.DagsterInstance.get(), raise_on_error=False, run_config=quiet
        )
        if not result.success:
            failures = [e.message for e in result.all_events if e.is_failure]
            console.print(f"[red]job {job.name} failed[/red] (run {result.run_id}): " + " | ".join(failures))
            return 1
        meta = result.asset_materializations_for_node(catalog_node)
        facts = meta[0].metadata if meta else {}
        snapshots[partition] = facts.get("snapshot_id").value if facts.get("snapshot_id") else None
        counts = ", ".join(
            f"{k} {facts[k].value}" for k in ("inserted", "updated", "deleted", "unchanged") if k in facts
        )
        console.print(f"    Iceberg snapshot {snapshots[partition]}: {counts}")

    console.print(f"[bold]5/5[/bold] {BLOG_QUERY}")
    answer = run_query(BLOG_QUERY, connection=connection).scalar()
    console.print(f"num_reviews = [bold]{answer}[/bold] (now, partition {today})")
    travel = BLOG_QUERY.replace(
        f'"{spec.catalog_table}"', f'"{spec.catalog_table}" FOR VERSION AS OF {snapshots[day1]}'
    )
    console.print(f"    {travel}")
    before = run_query(travel, connection=connection).scalar()
    console.print(f"num_reviews = [bold]{before}[/bold] (as of partition {day1}, by time travel)")
    if (answer, before) != (day2_expected, day1_expected):
        console.print(f"[red]expected {day2_expected} now and {day1_expected} on day 1[/red]")
        return 1
    console.print(
        f'history: [bold]{_command()} query[/bold] \'SELECT * FROM "{spec.catalog_database}"."{spec.catalog_table}$snapshots"\''
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
