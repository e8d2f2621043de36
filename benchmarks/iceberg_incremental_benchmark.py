"""Day N of an incremental export vs a full export, at two table sizes with the same number of changes.

    .venv/bin/python benchmarks/iceberg_benchmark.py --mode incremental --sizes 5000 50000 --changes 200

For each size: one DynamoDB table on the project's local emulator (own temporary state) with
point-in-time recovery, and three tables-file entries reading it:

* ``iceberg-incremental``: ``table_format: iceberg``, ``export_method: incremental`` (day 2 staged
  as its changes only, committed with ``apply_changes``);
* ``iceberg-full``: ``table_format: iceberg``, ``export_method: native`` (day 2's full export
  converted and diffed against the table);
* ``hive-incremental``: ``table_format: hive``, ``export_method: incremental`` (what a Hive table
  pays today: the day's merged full export converted whole, then published with its checks).

Day 1 is a full export for all three. Then ``--changes`` items change (60% updates, 30% inserts,
10% deletes) and DynamoDB's INCREMENTAL_EXPORT of them is written in AWS's layout (the emulator
cannot produce one; it answers an incremental request with a full dump). Day 2 is timed in three
parts: export (native: the emulator's full dump; incremental: the merge of the previous export and
the changes, a line copy of the table), Parquet snapshot step (staging the changes / converting the
table) and publish. "snapshot+publish" is what the Iceberg incremental path makes proportional to
the changes; the export's merge is still a copy of the table (kept: the next day's base and the Hive
path's input). Each result is checked against a scan of the DynamoDB table.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
import time
from pathlib import Path

import orjson

BUCKET = "bench-iceberg-incremental"
KEYS = ("User", "Book")


def _item(n: int, rng: random.Random, version: int = 0) -> dict:
    return {
        "User": f"user-{n:08d}",
        "Book": f"book-{n % 997}",
        "Author": rng.choice(["J.K. Rowling", "Tolkien", "Austen", "Le Guin"]),
        "Rating": rng.randint(1, 5),
        "ReviewText": " ".join(rng.choice(["great", "slow", "moving", "dense"]) for _ in range(12)) + f" v{version}",
    }


def _write_incremental_export(s3, spec, day1: str, day2: str, records: list[dict]) -> None:
    """DynamoDB's INCREMENTAL_EXPORT of ``records`` (change lines), where the export step looks for it."""
    from offload_assets.export.layout import (
        DataFileWriter,
        export_dir_key,
        new_export_id,
        utc_iso,
        write_export_manifests,
    )
    from offload_assets.export.partition_export import incremental_export_prefix

    prefix = incremental_export_prefix(spec, day2)
    export_id = new_export_id()
    with tempfile.TemporaryDirectory() as tmp:
        writer = DataFileWriter(s3, bucket=BUCKET, data_prefix=f"{export_dir_key(prefix, export_id)}/data", tmpdir=tmp)
        for record in records:
            writer.write_line(orjson.dumps(record))
        writer.roll()
    t1, t2 = spec.export_time(day1), spec.export_time(day2)
    write_export_manifests(
        s3,
        bucket=BUCKET,
        export_prefix=prefix,
        export_id=export_id,
        data_files=writer.files,
        table_arn=None,
        export_time=utc_iso(t2),
        start_time=utc_iso(t2),
        export_type="INCREMENTAL_EXPORT",
        extra={"exportFromTime": utc_iso(t1), "exportToTime": utc_iso(t2), "outputView": "NEW_AND_OLD_IMAGES"},
    )


def _one_size(items: int, changes: int) -> dict[str, dict[str, float]]:
    from offload_assets.aws.connection import resolve_connection
    from offload_assets.export.partition_export import export_partition
    from offload_assets.iceberg.catalog import connect_catalog
    from offload_assets.iceberg.incremental import publish_partition, stage_incremental_changes
    from offload_assets.iceberg.publish import iceberg_location
    from offload_assets.local.demo_data import create_reviews_table, put_items, to_low_level
    from offload_assets.local.emulator import (
        backdate_point_in_time_recovery,
        ensure_local_emulator,
        stop_local_emulator,
    )
    from offload_assets.snapshot.build import build_snapshot
    from offload_assets.snapshot.publish import publish_snapshot
    from offload_assets.snapshot.verdict import blocking_checks_verifier
    from offload_assets.sql.query import run_query
    from offload_assets.table_spec import parse_tables

    state = Path(tempfile.mkdtemp(prefix="iceberg-incr-bench-"))
    emu = ensure_local_emulator(state)
    try:
        aws = resolve_connection(target="local", endpoint_url=emu.endpoint_url)
        ddb, s3, glue, fs = aws.client("dynamodb"), aws.client("s3"), aws.client("glue"), aws.arrow_filesystem()
        s3.create_bucket(Bucket=BUCKET)
        now = dt.datetime.now(dt.UTC)
        day1, day2 = ((now - dt.timedelta(days=d)).date().isoformat() for d in (2, 1))
        common = {"dynamodb_table": "Reviews", "s3_bucket": BUCKET, "partitions_start": day1}
        entries = {
            "iceberg-incremental": {"table_format": "iceberg", "export_method": "incremental"},
            "iceberg-full": {"table_format": "iceberg", "export_method": "native"},
            "hive-incremental": {"export_method": "incremental"},
        }
        specs = {
            label: parse_tables(
                {"tables": [{**common, **entry, "catalog_table": label.replace("-", "_"), "s3_prefix": label}]},
                Path("bench.yaml"),
            ).tables[0]
            for label, entry in entries.items()
        }
        catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"}, glue=glue)
        rng = random.Random(17)
        create_reviews_table(ddb, "Reviews")
        t0 = time.monotonic()
        put_items(ddb, "Reviews", [_item(n, rng) for n in range(items)])
        print(f"  loaded {items:,} items in {time.monotonic() - t0:.1f} s")
        backdate_point_in_time_recovery(emu.endpoint_url, "Reviews", days=4)

        def run_day(label: str, day: str) -> dict[str, float]:
            spec = specs[label]
            at = spec.export_time(day) + dt.timedelta(minutes=5)
            t0 = time.monotonic()
            export_partition(spec, day, dynamodb=ddb, s3=s3, now=at, poll_seconds=0.1)
            t1 = time.monotonic()
            staged = None
            if spec.table_format == "iceberg":
                table = catalog.load_table(iceberg_location(spec).identifier) if day != day1 else None
                staged = stage_incremental_changes(s3, fs, table, spec, day, run_id=f"bench{day}", key_names=KEYS)
            if staged is None:
                staged = build_snapshot(s3, fs, glue, spec, day, run_id=f"bench{day}")
            t2 = time.monotonic()
            verify = blocking_checks_verifier(s3, fs, ddb, spec)
            if spec.table_format == "iceberg":
                publish_partition(catalog, s3, fs, spec, day, KEYS, verify=verify)
            else:
                publish_snapshot(glue, s3, spec, day, verify=verify)
            t3 = time.monotonic()
            return {"export": t1 - t0, "snapshot": t2 - t1, "publish": t3 - t2, "staged_rows": staged.rows}

        for label in specs:
            run_day(label, day1)

        live = list(range(items))
        updates = rng.sample(live, int(changes * 0.6))
        inserts = list(range(items, items + int(changes * 0.3)))
        deletes = rng.sample(sorted(set(live) - set(updates)), changes - len(updates) - len(inserts))
        micros = int(specs["iceberg-incremental"].export_time(day1).timestamp() * 1_000_000)
        records = []
        for n in updates + inserts:
            image = to_low_level(_item(n, rng, 2))
            ddb.put_item(TableName="Reviews", Item=image)
            records.append(
                {
                    "Metadata": {"WriteTimestampMicros": {"N": str(micros + n)}},
                    "Keys": {k: image[k] for k in KEYS},
                    "NewImage": image,
                }
            )
        for n in deletes:
            key = {"User": {"S": f"user-{n:08d}"}, "Book": {"S": f"book-{n % 997}"}}
            ddb.delete_item(TableName="Reviews", Key=key)
            records.append({"Metadata": {"WriteTimestampMicros": {"N": str(micros + n)}}, "Keys": key})
        for label in ("iceberg-incremental", "hive-incremental"):
            _write_incremental_export(s3, specs[label], day1, day2, records)

        out = {}
        expected = items + len(inserts) - len(deletes)
        for label, spec in specs.items():
            out[label] = run_day(label, day2)
            sql = (
                f'SELECT count(*) FROM "dynamodb-exports"."{spec.catalog_table}"'
                if spec.table_format == "iceberg"
                else f'SELECT count(*) FROM "dynamodb-exports"."{spec.catalog_table}" WHERE ddb_export_timestamp = \'{day2}\''
            )
            rows = run_query(sql, connection=aws).scalar()
            assert rows == expected, (label, rows, expected)
        return out
    finally:
        stop_local_emulator(state)


def run(args) -> None:
    results = {}
    for items in args.sizes:
        print(f"table of {items:,} items, {args.changes} changes on day 2:")
        results[items] = _one_size(items, args.changes)
        for label, r in results[items].items():
            print(
                f"  {label:20s} export {r['export']:6.2f} s  snapshot {r['snapshot']:6.2f} s  publish {r['publish']:6.2f} s"
                f"  snapshot+publish {r['snapshot'] + r['publish']:6.2f} s  (staged {r['staged_rows']:,} rows)"
            )
    small, large = min(results), max(results)
    print(f"\nday-2 time, {large:,} vs {small:,} items ({large / small:.0f}x the table), same {args.changes} changes:")
    for label in results[small]:
        a, b = results[small][label], results[large][label]
        sp_a, sp_b = a["snapshot"] + a["publish"], b["snapshot"] + b["publish"]
        total_a, total_b = sp_a + a["export"], sp_b + b["export"]
        print(
            f"  {label:20s} snapshot+publish {sp_a:6.2f} -> {sp_b:6.2f} s ({sp_b / sp_a:4.1f}x); "
            f"with the export {total_a:6.2f} -> {total_b:6.2f} s ({total_b / total_a:4.1f}x)"
        )
