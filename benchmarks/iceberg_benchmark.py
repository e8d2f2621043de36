"""Hive vs Iceberg (issue 17): 7 daily partitions with 1% of the items changed each day.

    .venv/bin/python benchmarks/iceberg_benchmark.py --items 20000
    .venv/bin/python benchmarks/iceberg_benchmark.py --mode incremental --sizes 20000 200000 --changes 500

One DynamoDB table on the project's local emulator (own temporary state), two tables-file entries
reading it: ``table_format: hive`` and ``table_format: iceberg``. Each day, 1% of the items change
(60% updates, 30% inserts, 10% deletes), then for each format the day's scan export is taken and
converted + published (timed: build_snapshot + publish; hive's publish includes its blocking checks, row
parity and unique keys, which for iceberg run as separate Dagster check steps, not timed here). Reported: S3 bytes under each format's
prefix after day 7 (Parquet/Iceberg data and metadata; the raw exports separately, identical for
both) next to ONE snapshot (hive's day-7 partition), the day 2..7 convert+publish times, what each
Iceberg change commit wrote (merge-on-read: data files of the changed rows + one position delete
file), and the time and answer of a count of the current state and of day 1 (hive: the newest /
first partition; iceberg: the table / FOR VERSION AS OF day 1), then the same after maintenance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

BUCKET = "bench-iceberg"
DAYS = [f"2026-11-{d:02d}" for d in range(20, 27)]


def _item(n: int, rng: random.Random, version: int = 0) -> dict:
    return {
        "User": f"user-{n:08d}",
        "Book": f"book-{n % 997}",
        "Author": rng.choice(["J.K. Rowling", "Tolkien", "Austen", "Le Guin"]),
        "Rating": rng.randint(1, 5),
        "ReviewText": " ".join(rng.choice(["great", "slow", "moving", "dense"]) for _ in range(12)) + f" v{version}",
    }


def _prefix_bytes(s3, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def _kinds(s3, prefix: str) -> str:
    """Bytes under ``prefix`` by kind: data / position-delete Parquet, metadata JSON, manifests (Avro)."""
    kinds: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            key = o["Key"]
            kind = (
                "delete files"
                if key.endswith("-deletes.parquet")
                else "data files"
                if key.endswith(".parquet")
                else "metadata.json"
                if key.endswith(".json")
                else "manifests+lists"
                if key.endswith(".avro")
                else "other"
            )
            kinds[kind] = kinds.get(kind, 0) + o["Size"]
    return ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--change-fraction", type=float, default=0.01)
    ap.add_argument(
        "--mode",
        choices=("days", "incremental"),
        default="days",
        help="incremental: day N of an "
        "incremental vs a full export at --sizes with --changes changes (iceberg_incremental_benchmark.py)",
    )
    ap.add_argument("--sizes", type=int, nargs=2, default=(20_000, 200_000))
    ap.add_argument("--changes", type=int, default=500)
    args = ap.parse_args()
    if args.mode == "incremental":
        from iceberg_incremental_benchmark import run  # benchmarks/ is on sys.path when run as a script

        return run(args)

    from offload_assets.aws.connection import resolve_connection
    from offload_assets.export.partition_export import export_partition
    from offload_assets.iceberg.catalog import connect_catalog
    from offload_assets.iceberg.publish import publish_iceberg
    from offload_assets.local.demo_data import create_reviews_table, put_items
    from offload_assets.local.emulator import ensure_local_emulator, stop_local_emulator
    from offload_assets.snapshot.build import build_snapshot
    from offload_assets.snapshot.publish import publish_snapshot
    from offload_assets.snapshot.verdict import blocking_checks_verifier
    from offload_assets.sql.query import run_query
    from offload_assets.table_spec import parse_tables

    state = Path(tempfile.mkdtemp(prefix="iceberg-bench-"))
    emu = ensure_local_emulator(state)
    try:
        aws = resolve_connection(target="local", endpoint_url=emu.endpoint_url)
        ddb, s3, glue, fs = aws.client("dynamodb"), aws.client("s3"), aws.client("glue"), aws.arrow_filesystem()
        s3.create_bucket(Bucket=BUCKET)
        common = {"dynamodb_table": "Reviews", "s3_bucket": BUCKET, "partitions_start": DAYS[0]}
        hive, iceberg = (  # two tables files: one tables file may name a DynamoDB table once
            parse_tables({"tables": [{**common, **entry}]}, Path("bench.yaml")).tables[0]
            for entry in (
                {"catalog_table": "reviews_hive", "s3_prefix": "hive"},
                {"catalog_table": "reviews_iceberg", "s3_prefix": "iceberg", "table_format": "iceberg"},
            )
        )
        tables = (hive, iceberg)
        catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"}, glue=glue)
        rng = random.Random(17)
        create_reviews_table(ddb, "Reviews")
        started = time.monotonic()
        live = list(range(args.items))
        put_items(ddb, "Reviews", [_item(n, rng) for n in live])
        print(f"loaded {args.items:,} items in {time.monotonic() - started:.1f} s")
        next_id = args.items
        times: dict[str, list[float]] = {"hive": [], "iceberg": []}
        for day_index, day in enumerate(DAYS):
            if day_index:
                changes = max(1, int(len(live) * args.change_fraction))
                updates = [rng.choice(live) for _ in range(int(changes * 0.6))]
                inserts = list(range(next_id, next_id + int(changes * 0.3)))
                next_id += len(inserts)
                deletes = set(rng.sample(live, int(changes * 0.1)))
                put_items(ddb, "Reviews", [_item(n, rng, day_index) for n in updates + inserts])
                for n in deletes:
                    ddb.delete_item(
                        TableName="Reviews", Key={"User": {"S": f"user-{n:08d}"}, "Book": {"S": f"book-{n % 997}"}}
                    )
                live = [n for n in live if n not in deletes] + inserts
            now = hive.export_time(day) + dt.timedelta(minutes=5)
            for spec in tables:
                export_partition(spec, day, dynamodb=ddb, s3=s3, now=now)
                t0 = time.monotonic()
                build_snapshot(s3, fs, glue, spec, day, run_id=f"bench-{day}")
                if spec is hive:
                    publish_snapshot(glue, s3, spec, day, verify=blocking_checks_verifier(s3, fs, ddb, spec))
                else:
                    publish_iceberg(catalog, s3, fs, spec, day, ("User", "Book"))
                elapsed = time.monotonic() - t0
                if day_index:
                    times[spec.table_format].append(elapsed)
            print(
                f"{day}: {len(live):,} items; hive {times['hive'][-1] if day_index else 0:.2f} s, "
                f"iceberg {times['iceberg'][-1] if day_index else 0:.2f} s"
            )

        print(f"\nresults: {args.items:,} items, {len(DAYS)} days, {args.change_fraction:.0%} changed per day")
        one_snapshot = _prefix_bytes(s3, hive.parquet_partition_prefix(DAYS[-1]) + "/")
        print(f"one snapshot (hive's day-7 partition): {one_snapshot:,} bytes")
        for spec in tables:
            data = _prefix_bytes(s3, f"{spec.s3_prefix}/parquet/") + _prefix_bytes(s3, f"{spec.s3_prefix}/iceberg/")
            exports = _prefix_bytes(s3, f"{spec.s3_prefix}/exports/")
            day_times = ", ".join(f"{t:.2f}" for t in times[spec.table_format])
            print(
                f"{spec.table_format:8s} table bytes after day 7: {data:,} = {data / one_snapshot:.2f}x one snapshot "
                f"(raw exports {exports:,}); day 2..7 convert+publish s: {day_times} "
                f"(mean {statistics.mean(times[spec.table_format]):.2f})"
            )
        print(f"iceberg bytes by kind: {_kinds(s3, f'{iceberg.s3_prefix}/iceberg/')}")
        table = catalog.load_table(("dynamodb-exports", "reviews_iceberg"))
        for snap in table.snapshots()[1:]:
            p = snap.summary.additional_properties
            print(
                f"iceberg commit {p.get('offload-assets.partition')}: +{p.get('added-records', 0)} rows in "
                f"{p.get('added-data-files', 0)} data file(s), {p.get('added-position-deletes', 0)} position deletes in "
                f"{p.get('added-delete-files', 0)} delete file(s), {int(p.get('added-files-size', 0)):,} bytes; "
                f"removed data files: {p.get('deleted-data-files', 0)}"
            )
        one_day = None
        for label, sql in (
            (
                "hive current",
                f'SELECT count(*) FROM "dynamodb-exports"."reviews_hive" WHERE ddb_export_timestamp = \'{DAYS[-1]}\'',
            ),
            (
                "hive day 1",
                f'SELECT count(*) FROM "dynamodb-exports"."reviews_hive" WHERE ddb_export_timestamp = \'{DAYS[0]}\'',
            ),
            ("iceberg current", 'SELECT count(*) FROM "dynamodb-exports"."reviews_iceberg"'),
        ):
            t0 = time.monotonic()
            answer = run_query(sql, connection=aws).scalar()
            print(f"query {label}: {answer:,} rows in {time.monotonic() - t0:.2f} s")
        snaps = run_query(
            'SELECT snapshot_id FROM "dynamodb-exports"."reviews_iceberg$snapshots" ORDER BY committed_at',
            connection=aws,
        ).rows
        one_day = snaps[0][0]
        t0 = time.monotonic()
        answer = run_query(
            f'SELECT count(*) FROM "dynamodb-exports"."reviews_iceberg" FOR VERSION AS OF {one_day}', connection=aws
        ).scalar()
        print(f"query iceberg day 1 (time travel): {answer:,} rows in {time.monotonic() - t0:.2f} s")

        # Merge-on-read: each day adds its changed rows and a position delete file; maintenance
        # compacts them into plain data files and, once old snapshots expire, removes the rest.
        from offload_assets.iceberg.maintenance import maintain_table

        table = catalog.load_table(("dynamodb-exports", "reviews_iceberg"))
        for keep in (7, 3, 1):
            t0 = time.monotonic()
            out = maintain_table(
                table,
                s3,
                retention_snapshots=keep,
                retention_days=None,
                target_bytes=iceberg.compaction_target_mb * 1024 * 1024,
                now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
            )
            data = _prefix_bytes(s3, f"{iceberg.s3_prefix}/iceberg/")
            print(f"  by kind: {_kinds(s3, f'{iceberg.s3_prefix}/iceberg/')}")
            print(
                f"iceberg after maintenance keeping {keep} snapshot(s): {data:,} bytes = {data / one_snapshot:.2f}x one "
                f"snapshot ({out.orphan_files_removed} files removed, {out.files_compacted} compacted) in "
                f"{time.monotonic() - t0:.2f} s"
            )
        t0 = time.monotonic()
        answer = run_query('SELECT count(*) FROM "dynamodb-exports"."reviews_iceberg"', connection=aws).scalar()
        print(f"query iceberg current (compacted): {answer:,} rows in {time.monotonic() - t0:.2f} s")
    finally:
        stop_local_emulator(state)


if __name__ == "__main__":
    main()
