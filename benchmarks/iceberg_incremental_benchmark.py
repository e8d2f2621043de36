"""Day N of an incremental export vs a full export, at two table sizes with the same number of changes.

    .venv/bin/python benchmarks/iceberg_benchmark.py --mode incremental --sizes 20000 200000 --changes 500

For each size, on the project's local emulator (own temporary state), three tables-file entries of
one DynamoDB table:

* ``iceberg-incremental``: ``table_format: iceberg``, ``export_method: incremental``: day 2 staged
  as its changes only (:func:`offload_assets.iceberg.incremental.stage_incremental_changes`) and
  committed with ``apply_changes`` (``publish_partition``);
* ``iceberg-full``: ``table_format: iceberg`` fed a full export: day 2's export converted
  (``build_snapshot``) and diffed against the table (``publish_partition`` -> ``publish_iceberg``);
* ``hive-incremental``: ``table_format: hive``, ``export_method: incremental``: what a Hive table
  pays today, the day's merged full export converted whole, then published with its blocking checks.

The exports are written straight into S3 in DynamoDB's layout (loading and exporting large tables
through the emulator's DynamoDB would take minutes and measure moto): day 1 a full export, day 2
DynamoDB's INCREMENTAL_EXPORT of ``--changes`` changes (60% updates, 30% inserts, 10% deletes) and,
for the incremental entries, the merged full export the export asset builds from them
(:func:`offload_assets.export.incremental.apply_incremental_export`, timed as "export merge"); for
``iceberg-full`` the day-2 full export. Day 2 is timed per step: export merge, Parquet snapshot step
(staging the changes / converting the table), publish. Every table's SQL count is checked.
"""

from __future__ import annotations

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


def _write_incremental_export(s3, spec, day1: str, day2: str, records: list[dict]):
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
            if writer.full:
                writer.roll()
        writer.roll()
    t1, t2 = spec.export_time(day1), spec.export_time(day2)
    return write_export_manifests(
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


def _write_full_export(s3, spec, day: str, items: dict[int, dict]):
    """A native full export of ``items`` under the partition's export prefix (as DynamoDB writes one)."""
    from offload_assets.export.layout import (
        DataFileWriter,
        export_dir_key,
        new_export_id,
        utc_iso,
        write_export_manifests,
    )
    from offload_assets.local.demo_data import to_low_level

    prefix, export_id = spec.export_prefix(day), new_export_id()
    with tempfile.TemporaryDirectory() as tmp:
        writer = DataFileWriter(s3, bucket=BUCKET, data_prefix=f"{export_dir_key(prefix, export_id)}/data", tmpdir=tmp)
        for item in items.values():
            writer.write_line(orjson.dumps({"Item": to_low_level(item)}))
            if writer.full:
                writer.roll()
        writer.roll()
    when = utc_iso(spec.export_time(day))
    return write_export_manifests(
        s3,
        bucket=BUCKET,
        export_prefix=prefix,
        export_id=export_id,
        data_files=writer.files,
        table_arn=None,
        export_time=when,
        start_time=when,
    )


def _one_size(items: int, changes: int) -> dict[str, dict[str, float]]:
    from offload_assets.aws.connection import resolve_connection
    from offload_assets.export.incremental import apply_incremental_export
    from offload_assets.export.layout import utc_iso
    from offload_assets.iceberg.catalog import connect_catalog
    from offload_assets.iceberg.incremental import publish_partition, stage_incremental_changes
    from offload_assets.iceberg.publish import iceberg_location
    from offload_assets.local.demo_data import create_reviews_table, to_low_level
    from offload_assets.local.emulator import ensure_local_emulator, stop_local_emulator
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
        create_reviews_table(ddb, "Reviews")  # empty: DescribeTable gives the checks the key
        day1, day2 = "2026-11-20", "2026-11-21"
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
        state1 = {n: _item(n, rng) for n in range(items)}

        def convert_and_publish(spec, day: str) -> dict[str, float]:
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
            return {"snapshot": t2 - t1, "publish": time.monotonic() - t2, "staged_rows": staged.rows}

        base = {}
        t0 = time.monotonic()
        for label, spec in specs.items():
            base[label] = _write_full_export(s3, spec, day1, state1)
            convert_and_publish(spec, day1)
        print(f"  day 1 ({items:,} items) exported and published for the 3 tables in {time.monotonic() - t0:.1f} s")

        updates = rng.sample(range(items), int(changes * 0.6))
        inserts = list(range(items, items + int(changes * 0.3)))
        deletes = rng.sample(sorted(set(range(items)) - set(updates)), changes - len(updates) - len(inserts))
        state2 = dict(state1)
        micros = int(specs["iceberg-incremental"].export_time(day1).timestamp() * 1_000_000)
        records = []
        for n in updates + inserts:
            state2[n] = _item(n, rng, 2)
            image = to_low_level(state2[n])
            records.append(
                {
                    "Metadata": {"WriteTimestampMicros": {"N": str(micros + n)}},
                    "Keys": {k: image[k] for k in KEYS},
                    "NewImage": image,
                }
            )
        for n in deletes:
            gone = state2.pop(n)
            key = to_low_level({k: gone[k] for k in KEYS})
            records.append({"Metadata": {"WriteTimestampMicros": {"N": str(micros + n)}}, "Keys": key})

        out = {}
        for label, spec in specs.items():
            t0 = time.monotonic()
            if spec.export_method == "incremental":
                increment = _write_incremental_export(s3, spec, day1, day2, records)
                t0 = time.monotonic()
                apply_incremental_export(
                    s3,
                    base=base[label],
                    incremental=increment,
                    key_names=KEYS,
                    bucket=BUCKET,
                    export_prefix=spec.export_prefix(day2),
                    export_time=utc_iso(spec.export_time(day2)),
                    table_arn=None,
                )
                merge = time.monotonic() - t0
            else:
                _write_full_export(s3, spec, day2, state2)
                merge = 0.0
            out[label] = {"export": merge, **convert_and_publish(spec, day2)}
            sql = f'SELECT count(*) FROM "dynamodb-exports"."{spec.catalog_table}"'
            if spec.table_format != "iceberg":
                sql += f" WHERE ddb_export_timestamp = '{day2}'"
            rows = run_query(sql, connection=aws).scalar()
            assert rows == len(state2), (label, rows, len(state2))
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
                f"  {label:20s} export merge {r['export']:6.2f} s  snapshot {r['snapshot']:6.2f} s  publish {r['publish']:6.2f} s"
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
