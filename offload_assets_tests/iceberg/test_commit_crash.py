"""SIGKILL mid-commit: the Iceberg table stays readable at its previous snapshot; the re-run converges exactly."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time

from offload_assets.export.partition_export import export_partition
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.maintenance import maintain_table, referenced_files
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.snapshot.build import build_snapshot
from offload_assets.sql.query import run_query
from offload_assets_tests.iceberg.pipeline import (
    dynamodb_state,
    make_spec,
    publish_partition,
    review,
    run_partition,
    seed,
)


def _state(table):
    rows = table.scan().to_arrow().to_pylist()
    state = {(r["user"], r["book"]): (r["author"], r["rating"]) for r in rows}
    assert len(state) == len(rows)
    return state


def _unreferenced(aws, spec, table):
    bucket, _, prefix = iceberg_location(spec).location.removeprefix("s3://").partition("/")
    listed = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    refs = referenced_files(table)
    return [o["Key"] for o in listed if f"s3://{bucket}/{o['Key']}" not in refs]


def test_sigkill_between_data_write_and_catalog_commit(aws, emulator, tmp_path):
    spec = make_spec()
    ddb = seed(aws, spec, 80)
    day1 = run_partition(aws, spec, "2026-11-20")
    before = _state(load_table(connect_catalog(aws), iceberg_location(spec)))
    for n in (1, 2):
        item = review(n, author="Changed")
        ddb.put_item(
            TableName=spec.dynamodb_table,
            Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in item.items()},
        )
    ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": {"S": "user-0005"}, "Book": {"S": "book-5"}})
    s3 = aws.client("s3")
    export_partition(
        spec, "2026-11-21", dynamodb=ddb, s3=s3, now=spec.export_time("2026-11-21") + dt.timedelta(minutes=5)
    )
    build_snapshot(s3, aws.arrow_filesystem(), aws.client("glue"), spec, "2026-11-21", run_id="killed")

    marker = tmp_path / "committing"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offload_assets_tests.iceberg.commit_until_killed",
            emulator.endpoint_url,
            "2026-11-21",
            str(marker),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), child.communicate(timeout=5) if child.poll() is not None else "child never committed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    table = load_table(connect_catalog(aws), iceberg_location(spec))
    assert table.current_snapshot().snapshot_id == day1.snapshot_id  # readable at its previous snapshot
    assert _state(table) == before
    sql = 'SELECT count(*) FROM "dynamodb-exports"."reviews"'
    assert run_query(sql, connection=aws).scalar() == 80
    orphans = _unreferenced(aws, spec, table)
    assert any("/data/" in k for k in orphans)  # the killed commit had written its data files

    rerun = publish_partition(aws, spec, "2026-11-21")
    assert rerun.change == "committed"
    assert rerun.counts == {"inserted": 0, "updated": 2, "deleted": 1, "unchanged": 77, "previous-rows": 80}
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    assert _state(table) == dynamodb_state(ddb, spec.dynamodb_table)  # the exact state
    assert publish_partition(aws, spec, "2026-11-21").change == "already committed"
    assert run_query(sql, connection=aws).scalar() == 79

    # maintenance removes what the killed commit left, and nothing the table reads
    maintain_table(
        table,
        s3,
        retention_snapshots=None,
        retention_days=None,
        target_bytes=1,
        now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    assert _unreferenced(aws, spec, table) == []
    assert _state(table) == dynamodb_state(ddb, spec.dynamodb_table)
