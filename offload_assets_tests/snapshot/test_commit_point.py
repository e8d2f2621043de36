"""Issue 14's publishing repros, run as tests: nothing that failed its checks is published, and a
paused publisher racing a second one re-reads and re-decides instead of registering a deleted directory."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading

import dagster as dg
import pyarrow as pa

from offload_assets.catalog.glue_tables import list_partitions
from offload_assets.catalog.latest_view import latest_view_name
from offload_assets.export.layout import ExportDataFile, md5_base64, utc_iso, write_export_manifests
from offload_assets.local.demo_data import put_items, to_low_level
from offload_assets.snapshot.build import list_run_dirs, read_snapshot_manifest
from offload_assets.snapshot.checks import CheckOutcome
from offload_assets.snapshot.publish import publish_snapshot, read_commit_marker
from offload_assets.snapshot.verdict import BLOCKING_CHECKS, read_check_verdict, record_check_results
from offload_assets.sql.query import run_query
from offload_assets_tests.catalog.conftest import field, write_snapshot
from offload_assets_tests.defs.conftest import Project, reviews


def _latest_count(aws, spec) -> int:
    sql = f'SELECT count(*) FROM "{spec.catalog_database}"."{latest_view_name(spec.catalog_table)}"'
    return run_query(sql, connection=aws).scalar()


def _export_missing_one_line(s3, spec, partition_key: str, items: list[dict]) -> tuple[str, bytes, bytes]:
    """A complete export of ``items`` whose data file lacks its last line while the manifest still says all.

    Returns the data file's key, its full body and its truncated body (to restore it later).
    """
    export_id = f"{int(dt.datetime.now().timestamp() * 1000):014d}-dropline"
    prefix = spec.export_prefix(partition_key)
    key = f"{prefix}/AWSDynamoDB/{export_id}/data/only.json.gz"
    lines = [b'{"Item":' + json.dumps(to_low_level(i)).encode() + b"}\n" for i in items]
    full, short = gzip.compress(b"".join(lines)), gzip.compress(b"".join(lines[:-1]))
    s3.put_object(Bucket=spec.s3_bucket, Key=key, Body=short)
    now = utc_iso()
    write_export_manifests(
        s3,
        bucket=spec.s3_bucket,
        export_prefix=prefix,
        export_id=export_id,
        data_files=[ExportDataFile(key=key, item_count=len(items), md5=md5_base64(short), size_bytes=len(short))],
        table_arn=None,
        export_time=now,
        start_time=now,
    )
    return key, full, short


def test_a_snapshot_that_failed_its_checks_is_never_published_by_a_catalog_only_run(project: Project, aws):
    s3 = aws.client("s3")
    first = reviews(100)
    project.seed(first)
    project.job().execute_in_process(partition_key=project.today, instance=project.instance)
    assert _latest_count(aws, project.spec) == 100
    committed = read_commit_marker(s3, project.spec, project.today)

    more = reviews(20, start=100)
    put_items(aws.client("dynamodb"), project.spec.dynamodb_table, more)
    key, full, _ = _export_missing_one_line(s3, project.spec, project.today, first + more)
    broken = project.convert(project.today, raise_on_error=False)
    assert not broken.success  # parity fails (or the conversion refuses the count): publishing blocked
    assert _latest_count(aws, project.spec) == 100
    newer = [
        d
        for d in list_run_dirs(
            s3, bucket=project.spec.s3_bucket, partition_prefix=project.spec.parquet_partition_prefix(project.today)
        )
        if d > committed.run_dir
    ]
    for run_dir in newer:  # a complete snapshot of the broken export carries its failed verdict
        snapshot = read_snapshot_manifest(s3, bucket=project.spec.s3_bucket, run_dir=run_dir)
        if snapshot is not None:
            verdict = read_check_verdict(s3, snapshot)
            assert verdict is not None and verdict.failed == ["row_count_parity"]

    # Restore the data file, then materialize only the Glue table: the failed snapshot stays unpublished.
    s3.put_object(Bucket=project.spec.s3_bucket, Key=key, Body=full)
    project.run_selection(dg.AssetSelection.assets(project.keys["catalog"]), project.today)
    assert _latest_count(aws, project.spec) == 100  # the previous snapshot, never N-1
    assert read_commit_marker(s3, project.spec, project.today).run_dir == committed.run_dir
    assert read_snapshot_manifest(s3, bucket=project.spec.s3_bucket, run_dir=committed.run_dir) is not None
    [part] = list_partitions(
        aws.client("glue"), database=project.spec.catalog_database, table=project.spec.catalog_table
    )
    assert part.location.rstrip("/").endswith(committed.run_dir)


def test_a_paused_publisher_racing_a_second_one_re_decides(aws, spec):
    """Repro: P1 chooses a snapshot, P2 commits a newer one and cleans up, P1 must not register the deleted one."""
    glue, s3 = aws.client("glue"), aws.client("s3")
    schema = pa.schema([field("user", pa.string(), "User", "S")])
    older = write_snapshot(aws, spec, "2026-11-25", [{"user": f"u{i}"} for i in range(5)], schema, checks_passed=None)
    chosen, resume = threading.Event(), threading.Event()

    def slow_verify(snapshot):  # P1's checks of the unchecked snapshot: it is paused right after choosing it
        chosen.set()
        assert resume.wait(60)
        ok = CheckOutcome(True, "checked by the paused publisher")
        return record_check_results(s3, snapshot, dict.fromkeys(BLOCKING_CHECKS, ok))

    results: dict = {}
    p1 = threading.Thread(
        target=lambda: results.setdefault(
            "p1", publish_snapshot(glue, s3, spec, "2026-11-25", verify=slow_verify, publisher="P1")
        )
    )
    p1.start()
    assert chosen.wait(60)
    newer = write_snapshot(aws, spec, "2026-11-25", [{"user": f"u{i}"} for i in range(8)], schema)
    p2 = publish_snapshot(glue, s3, spec, "2026-11-25", publisher="P2")
    assert p2.committed and p2.snapshot.run_dir == newer.run_dir
    resume.set()
    p1.join(60)

    p1_result = results["p1"]
    assert not p1_result.committed and p1_result.snapshot.run_dir == newer.run_dir  # re-read, re-decided
    assert p1_result.lost_races == 1  # its compare-and-swap lost once, then it followed P2's commit
    marker = read_commit_marker(s3, spec, "2026-11-25")
    assert marker.run_dir == newer.run_dir and marker.publisher == "P2" and marker.generation == 1
    [part] = list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)
    assert part.location == newer.s3_uri
    assert read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=newer.run_dir) is not None  # Glue's dir exists
    assert _latest_count(aws, spec) == 8
    assert older.run_dir != newer.run_dir
