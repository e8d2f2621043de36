"""Change-capture benchmark (issue 18): changes/s of the core, and of applying them to an Iceberg table.

    .venv/bin/python benchmarks/cdc_benchmark.py --changes 100000               # core only (scripted stream)
    .venv/bin/python benchmarks/cdc_benchmark.py --changes 2000 --table-rows 20000 --iceberg   # + Iceberg on the emulator

Changes are 60% updates, 30% inserts, 10% deletes of a Reviews-like table. Peak RSS from
``resource.getrusage``. The end-to-end lag (PutItem -> visible in SQL) needs the sensor, not built yet.
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
    args = ap.parse_args()
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
        t0 = time.perf_counter()
        steps = capture_until_caught_up(
            stream, IcebergTarget(table), CaptureSettings("Reviews", KEYS, max_records=10_000)
        )
        t1 = time.perf_counter()
        records = sum(s.batch.records for s in steps)
        files = table.inspect.files()
        print(
            f"iceberg: {records} changes applied to a {args.table_rows}-row table in {t1 - t0:.2f}s "
            f"({records / (t1 - t0):,.0f} changes/s, {len(steps)} commits); table now {table.scan().to_arrow().num_rows} rows, "
            f"{len(files)} data files, {sum(files.column('file_size_in_bytes').to_pylist()):,} bytes; "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
    finally:
        stop_local_emulator(state)


if __name__ == "__main__":
    _ = dt
    main()
