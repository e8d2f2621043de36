"""Maintenance of an Iceberg table with pyiceberg: compaction, snapshot expiry, orphan removal; Athena's SQL."""

from __future__ import annotations

import datetime as dt

from offload_assets.iceberg.changes import apply_changes
from offload_assets.iceberg.maintenance import (
    athena_maintenance_statements,
    maintain_table,
    referenced_files,
    snapshots_to_expire,
)
from offload_assets_tests.conftest import TEST_BUCKET
from offload_assets_tests.iceberg.conftest import reviews


def _objects(s3, prefix):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=TEST_BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return set(keys)


def test_maintenance_compacts_expires_and_removes_exactly_the_orphans(aws, reviews_table):
    for day in range(3):  # three commits of new keys: three small data files
        apply_changes(reviews_table, upserts=reviews(40, start=day * 40), summary={"day": str(day)})
    before = reviews_table.scan().to_arrow().sort_by([("review_id", "ascending")])
    assert len(list(reviews_table.scan().plan_files())) == 3
    s3 = aws.client("s3")
    prefix = "dynamodb-offload/iceberg/reviews/"
    stray = prefix + "data/00000-0-crashed-commit.parquet"  # what a killed commit leaves behind
    s3.put_object(Bucket=TEST_BUCKET, Key=stray, Body=b"PAR1")

    out = maintain_table(
        reviews_table,
        s3,
        retention_snapshots=1,
        retention_days=None,
        target_bytes=1024 * 1024,
        now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),  # everything is past the grace period
    )
    assert (out.files_compacted, out.files_written, out.data_files) == (3, 1, 1)
    assert len(out.expired_snapshots) == 3 and out.snapshots == 1
    after = reviews_table.scan().to_arrow().sort_by([("review_id", "ascending")])
    assert after.equals(before)  # rows unchanged
    left = _objects(s3, prefix)
    assert stray not in left
    referenced = {uri.removeprefix(f"s3://{TEST_BUCKET}/") for uri in referenced_files(reviews_table)}
    assert left == referenced  # exactly the orphans went: 3 old data files, their manifests, lists, the stray
    assert out.orphan_files_removed >= 3 + 1
    assert reviews_table.current_snapshot().summary.additional_properties["offload-assets.maintenance"] == "compaction"


def test_retention_keeps_the_newest_and_the_current_snapshot(reviews_table):
    for day in range(3):
        apply_changes(reviews_table, upserts=reviews(5, start=day * 5))
    snaps = sorted(reviews_table.metadata.snapshots, key=lambda s: s.timestamp_ms)
    now = dt.datetime.now(dt.UTC)
    assert snapshots_to_expire(reviews_table, retention_snapshots=2, retention_days=None, now=now) == [
        snaps[0].snapshot_id
    ]
    assert snapshots_to_expire(reviews_table, retention_snapshots=None, retention_days=None, now=now) == []
    later = now + dt.timedelta(days=30)
    expired = snapshots_to_expire(reviews_table, retention_snapshots=None, retention_days=7, now=later)
    assert set(expired) == {snaps[0].snapshot_id, snaps[1].snapshot_id}  # the current one stays


def test_athena_maintenance_sql():
    statements = athena_maintenance_statements(
        "dynamodb-exports", "reviews", retention_snapshots=3, retention_days=7, target_bytes=128 * 1024 * 1024
    )
    assert statements == [
        'ALTER TABLE "dynamodb-exports"."reviews" SET TBLPROPERTIES ('
        "'write_target_data_file_size_bytes'='134217728', 'vacuum_max_snapshot_age_seconds'='604800', "
        "'vacuum_min_snapshots_to_keep'='3')",
        'OPTIMIZE "dynamodb-exports"."reviews" REWRITE DATA USING BIN_PACK',
        'VACUUM "dynamodb-exports"."reviews"',
    ]
