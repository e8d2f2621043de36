"""Change-capture benchmark (issue 18): changes/s of the core, and of applying them to an Iceberg table.

    .venv/bin/python benchmarks/cdc_benchmark.py --changes 100000               # core only (scripted stream)
    .venv/bin/python benchmarks/cdc_benchmark.py --changes 2000 --table-rows 20000 --iceberg   # + Iceberg on the emulator
    .venv/bin/python benchmarks/cdc_benchmark.py --lag 200 --cadence 60      # PutItem -> visible in SQL, p50/p95

Changes are 60% updates, 30% inserts, 10% deletes of a Reviews-like table. Peak RSS from
``resource.getrusage``; bytes written are the Iceberg snapshots' ``added-files-size``.

``--lag``: on the emulator, a table with its stream on and its Iceberg table bootstrapped; a writer
thread puts N items at random instants over ``N / writes-per-minute`` minutes while the capture
loop does what the sensor does every ``cadence`` seconds (``capture_until_caught_up``); after each
commit, SQL (DuckDB over the Iceberg snapshot's data files) finds which written keys are visible.
Lag = visible time - PutItem time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import tempfile
import time

from offload_assets.cdc.capture import CaptureSettings, bootstrap_properties, capture_until_caught_up
from offload_assets.cdc.changes import convert_images, reduce_records
from offload_assets.cdc.reader import read_waiting
from offload_assets.cdc.scripted import ScriptedStreamSource

KEYS = ("user_id", "review_id")


def item(i: int, rating: int) -> dict:
    return {
        "user_id": {"S": f"u{i % 5000}"},
        "review_id": {"N": str(i)},
        "rating": {"N": str(rating)},
        "review_text": {"S": "x" * 200},
        "n_votes": {"N": str(i % 97)},
    }


def script(stream: ScriptedStreamSource, table_rows: int, changes: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(table_rows):
        stream.put(item(i, 3))
    stream.tick(3600)
    return rng


def changes_into(stream, rng, table_rows: int, changes: int) -> None:
    next_id = table_rows
    for _ in range(changes):
        r = rng.random()
        if r < 0.6:
            stream.put(item(rng.randrange(table_rows), rng.randrange(1, 6)))
        elif r < 0.9:
            stream.put(item(next_id, 5))
            next_id += 1
        else:
            k = item(rng.randrange(table_rows), 0)
            stream.delete({"user_id": k["user_id"], "review_id": k["review_id"]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--table-rows", type=int, default=10_000)
    ap.add_argument("--iceberg", action="store_true", help="also apply to an Iceberg table on the local emulator")
    ap.add_argument("--max-records", type=int, default=10_000, help="records per Iceberg commit (--iceberg)")
    ap.add_argument("--lag", type=int, default=0, help="measure PutItem -> SQL lag over this many writes")
    ap.add_argument("--cadence", type=float, default=60.0, help="capture interval in seconds (--lag)")
    ap.add_argument("--writes-per-minute", type=float, default=50.0, help="write rate (--lag)")
    args = ap.parse_args()
    if args.lag:
        run_lag(args.lag, args.cadence, args.writes_per_minute)
        return
    stream = ScriptedStreamSource("Reviews", KEYS)
    rng = script(stream, args.table_rows, args.changes)
    snapshot_time = stream.now
    changes_into(stream, rng, args.table_rows, args.changes)
    settings = CaptureSettings("Reviews", KEYS, max_records=10_000_000, page_limit=1000)
    from offload_assets.cdc.positions import CapturePosition

    position = CapturePosition(stream.latest_stream_arn("Reviews"), since=snapshot_time)
    t0 = time.perf_counter()
    read = read_waiting(stream, "Reviews", position, max_records=settings.max_records, page_limit=1000)
    t1 = time.perf_counter()
    batch = reduce_records(read.records, KEYS)
    t2 = time.perf_counter()
    upserts = convert_images(batch.upserts.values(), None)
    t3 = time.perf_counter()
    print(
        f"core: {len(read.records)} records read {t1 - t0:.2f}s, reduced {t2 - t1:.2f}s "
        f"({batch.facts()}), converted {upserts.num_rows} rows {t3 - t2:.2f}s; "
        f"{len(read.records) / (t3 - t0):,.0f} changes/s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    if args.iceberg:
        run_iceberg(stream, settings, snapshot_time, args)


def run_iceberg(stream, settings, snapshot_time, args) -> None:
    from offload_assets.aws.connection import resolve_connection
    from offload_assets.cdc.iceberg_target import IcebergTarget
    from offload_assets.iceberg import apply_changes
    from offload_assets.iceberg.catalog import IcebergLocation, connect_catalog, create_table
    from offload_assets.local.emulator import ensure_local_emulator, stop_local_emulator

    state = tempfile.mkdtemp(prefix="cdc-bench-")
    emu = ensure_local_emulator(state)
    try:
        aws = resolve_connection(target="local", endpoint_url=emu.endpoint_url)
        aws.client("s3").create_bucket(Bucket="cdc-bench")
        catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"})
        initial = convert_images([item(i, 3) for i in range(args.table_rows)], None)
        where = IcebergLocation("dynamodb-exports", "reviews", "s3://cdc-bench/iceberg/reviews")
        table = create_table(catalog, where, initial.schema, KEYS)
        props = bootstrap_properties(stream, settings, snapshot_time)
        apply_changes(table, upserts=initial, summary=props)
        before = {s.snapshot_id for s in table.snapshots()}
        t0 = time.perf_counter()
        steps = capture_until_caught_up(
            stream,
            IcebergTarget(table),
            CaptureSettings("Reviews", KEYS, max_records=args.max_records),
            max_steps=10_000,
        )
        t1 = time.perf_counter()
        records = sum(s.batch.records for s in steps)
        files = table.inspect.files()
        written = sum(
            int(s.summary.additional_properties.get("added-files-size", 0))
            for s in table.snapshots()
            if s.snapshot_id not in before and s.summary is not None
        )
        print(
            f"iceberg: {records} changes applied to a {args.table_rows}-row table in {t1 - t0:.2f}s "
            f"({records / (t1 - t0):,.0f} changes/s, {len(steps)} commits of <= {args.max_records}); "
            f"{written:,} bytes written; table now {table.scan().to_arrow().num_rows} rows, "
            f"{len(files)} data files, {sum(files.column('file_size_in_bytes').to_pylist()):,} bytes; "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
    finally:
        stop_local_emulator(state)


def _visible_keys(aws, table, keys: list[str]) -> set[str]:
    """SQL on the Iceberg table's current snapshot (DuckDB over its data files, as local SQL reads it)."""
    import duckdb
    import pyarrow.dataset as ds

    table.refresh()
    files = [t.file.file_path.removeprefix("s3://") for t in table.scan().plan_files()]
    with duckdb.connect() as con:
        con.register("reviews", ds.dataset(files, format="parquet", filesystem=aws.arrow_filesystem()))
        wanted = ", ".join(f"'{k}'" for k in keys)
        return {r[0] for r in con.sql(f"SELECT user_id FROM reviews WHERE user_id IN ({wanted})").fetchall()}


def run_lag(writes: int, cadence: float, per_minute: float) -> None:
    import statistics
    import threading

    from offload_assets.aws.connection import resolve_connection
    from offload_assets.cdc.catch_up import apply_waiting
    from offload_assets.cdc.iceberg_target import IcebergTarget
    from offload_assets.cdc.native_snapshot import native_export_snapshot
    from offload_assets.cdc.source import Boto3StreamSource
    from offload_assets.iceberg.catalog import IcebergLocation, connect_catalog, create_table
    from offload_assets.iceberg.schema import key_columns_of
    from offload_assets.local.emulator import (
        backdate_point_in_time_recovery,
        ensure_local_emulator,
        stop_local_emulator,
    )
    from offload_assets.table_spec import parse_tables

    state = tempfile.mkdtemp(prefix="cdc-lag-")
    emu = ensure_local_emulator(state)
    try:
        aws = resolve_connection(target="local", endpoint_url=emu.endpoint_url)
        ddb, s3 = aws.client("dynamodb"), aws.client("s3")
        s3.create_bucket(Bucket="cdc-bench")
        ddb.create_table(
            TableName="Reviews",
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(KEYS, ("HASH", "RANGE"), strict=True)],
            AttributeDefinitions=[
                {"AttributeName": "user_id", "AttributeType": "S"},
                {"AttributeName": "review_id", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        for i in range(1000):
            ddb.put_item(TableName="Reviews", Item={"user_id": {"S": f"seed{i}"}, "review_id": {"N": "1"}})
        backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=1, region=aws.region_name)
        spec = parse_tables(
            {"tables": [{"dynamodb_table": "Reviews", "s3_bucket": "cdc-bench", "table_format": "iceberg"}]}, "x"
        ).tables[0]
        catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"})
        where = IcebergLocation("dynamodb-exports", "reviews", "s3://cdc-bench/iceberg/reviews")
        target = IcebergTarget(
            None, create=lambda schema: create_table(catalog, where, schema, key_columns_of(schema, KEYS))
        )
        source = Boto3StreamSource(aws.client("dynamodbstreams"))
        settings = CaptureSettings("Reviews", KEYS)
        take = lambda: native_export_snapshot(ddb, s3, spec)  # noqa: E731
        apply_waiting(source, target, settings, take_snapshot=take)  # bootstrap

        put_at: dict[str, float] = {}
        rng = random.Random(11)
        span = writes / per_minute * 60
        instants = sorted(rng.uniform(0, span) for _ in range(writes))
        start = time.monotonic()

        def writer() -> None:
            client = aws.client("dynamodb")
            for n, at in enumerate(instants):
                time.sleep(max(0.0, start + at - time.monotonic()))
                key = f"w{n}"
                client.put_item(TableName="Reviews", Item={"user_id": {"S": key}, "review_id": {"N": "1"}})
                put_at[key] = time.monotonic()

        thread = threading.Thread(target=writer)
        thread.start()
        visible_at: dict[str, float] = {}
        tick = start
        while len(visible_at) < writes:
            tick += cadence
            time.sleep(max(0.0, tick - time.monotonic()))
            apply_waiting(source, target, settings, take_snapshot=take)
            pending = [k for k in list(put_at) if k not in visible_at]
            if pending:
                now = time.monotonic()
                for k in _visible_keys(aws, target.table, pending):
                    visible_at[k] = now
            print(f"  t={time.monotonic() - start:6.1f}s: {len(visible_at)}/{writes} writes visible", flush=True)
        thread.join()
        lags = sorted(visible_at[k] - put_at[k] for k in visible_at)
        q = statistics.quantiles(lags, n=100, method="inclusive")
        print(
            f"lag PutItem -> visible in SQL over {writes} writes at cadence {cadence:g}s: p50 {q[49]:.1f}s, "
            f"p95 {q[94]:.1f}s, max {lags[-1]:.1f}s (p95 / cadence = {q[94] / cadence:.2f})"
        )
    finally:
        stop_local_emulator(state)


if __name__ == "__main__":
    _ = dt
    main()
