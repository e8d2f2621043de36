"""SIGKILL mid-conversion: SQL keeps answering from the previous snapshot; a re-run publishes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from offload_assets.defs.table_assets import partitions_for
from offload_assets.export.partition_export import export_partition
from offload_assets.local.demo_data import put_items, seed_reviews
from offload_assets.snapshot.build import build_snapshot, list_run_dirs
from offload_assets.snapshot.publish import publish_snapshot
from offload_assets.snapshot.verdict import blocking_checks_verifier
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file

ROOT = Path(__file__).resolve().parents[2]
KEYS_SQL = 'SELECT "user", "book" FROM "dynamodb-exports"."reviews" WHERE ddb_export_timestamp = \'{p}\''


def _keys(aws, partition):
    return sorted(run_query(KEYS_SQL.format(p=partition), connection=aws).rows)


def test_sigkill_mid_conversion_then_rerun_publishes_exactly_once(aws, emulator, tmp_path):
    tables_file = write_tables_file(
        tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "crash-bucket"}
    )
    spec = load_tables_file(tables_file).tables[0]
    partition = partitions_for(spec).get_last_partition_key()
    ddb, s3, glue, fs = aws.client("dynamodb"), aws.client("s3"), aws.client("glue"), aws.arrow_filesystem()

    first = seed_reviews(ddb, count=2000)
    export_partition(spec, partition, dynamodb=ddb, s3=s3)
    build_snapshot(s3, fs, glue, spec, partition, run_id="first")
    verify = blocking_checks_verifier(s3, fs, ddb, spec)
    publish_snapshot(glue, s3, spec, partition, verify=verify)
    before = _keys(aws, partition)
    assert len(before) == len(first) == len(set(before))

    # The table grows; the day's export is redone, then the conversion is killed part-way.
    extra = [{**item, "User": f"new-{i}"} for i, item in enumerate(first[:700])]
    put_items(ddb, "Reviews", extra)
    export_partition(spec, partition, dynamodb=ddb, s3=s3)
    published_dir = list_run_dirs(s3, bucket="crash-bucket", partition_prefix=spec.parquet_partition_prefix(partition))[
        -1
    ]
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offload_assets_tests.reliability.convert_until_killed",
            emulator.endpoint_url,
            str(tables_file),
            partition,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    killed_with_files = False
    while time.monotonic() < deadline and child.poll() is None:
        run_dirs = list_run_dirs(s3, bucket="crash-bucket", partition_prefix=spec.parquet_partition_prefix(partition))
        new = [d for d in run_dirs if d != published_dir]
        if new and s3.list_objects_v2(Bucket="crash-bucket", Prefix=new[-1] + "/part-").get("KeyCount", 0):
            child.send_signal(signal.SIGKILL)
            killed_with_files = True
            break
        time.sleep(0.05)
    child.wait(timeout=60)
    assert killed_with_files, f"the child finished before part files appeared: {child.stderr.read().decode()[-2000:]}"
    assert child.returncode == -signal.SIGKILL

    # Killed mid-run: nothing is published, SQL answers exactly as before.
    assert _keys(aws, partition) == before

    # Re-run and publish: the new exact row set, each key once, the killed run's files removed
    # (the replaced snapshot stays until the next commit of the day).
    build_snapshot(s3, fs, glue, spec, partition, run_id="rerun")
    published = publish_snapshot(glue, s3, spec, partition, verify=verify)
    after = _keys(aws, partition)
    expected = sorted({(i["User"], i["Book"]) for i in first + extra})
    assert after == expected and len(after) == len(first) + len(extra)
    assert list_run_dirs(s3, bucket="crash-bucket", partition_prefix=spec.parquet_partition_prefix(partition)) == [
        published_dir,
        published.snapshot.run_dir,
    ]
