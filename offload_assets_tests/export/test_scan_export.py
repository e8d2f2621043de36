"""Scan export against the local emulator: native layout, manifests, every item exactly once."""

import base64
import gzip
import json

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.export.layout import (
    latest_completed_export,
    list_export_ids,
    md5_base64,
)
from offload_assets.export.scan import export_table_scan
from offload_assets_tests.conftest import seed_reviews_table

BUCKET = "scan-export-test"


def _read_lines(s3, manifest):
    items = []
    for f in manifest.data_files:
        body = s3.get_object(Bucket=BUCKET, Key=f.key)["Body"].read()
        assert md5_base64(body) == f.md5
        lines = gzip.decompress(body).decode().splitlines()
        assert len(lines) == f.item_count
        items.extend(json.loads(line)["Item"] for line in lines)
    return items


def test_parallel_scan_writes_native_layout(aws):
    ddb, s3, source = seed_reviews_table(aws, "ScanMe", 400, seed=7, bucket=BUCKET)

    result = export_table_scan(
        ddb,
        s3,
        table_name="ScanMe",
        bucket=BUCKET,
        export_prefix="p/ddb_export_timestamp=2026-11-27",
        total_segments=3,
        page_limit=50,
    )

    assert result.items == len(source) == result.manifest.item_count
    assert result.segments == 3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="p/")["Contents"]]
    export_dir = f"p/ddb_export_timestamp=2026-11-27/AWSDynamoDB/{result.manifest.export_id}"
    assert f"{export_dir}/manifest-summary.json" in keys and f"{export_dir}/manifest-files.json" in keys
    assert all(k.startswith(f"{export_dir}/data/") and k.endswith(".json.gz") for k in keys if "/data/" in k)

    items = _read_lines(s3, result.manifest)
    assert sorted((i["User"]["S"], i["Book"]["S"]) for i in items) == sorted((i["User"], i["Book"]) for i in source)
    with_cover = [i for i in items if "CoverThumbnail" in i]
    by_user = {i["User"]: i for i in source}
    for item in with_cover:  # binary values travel as base64, as in DynamoDB's own export
        assert base64.b64decode(item["CoverThumbnail"]["B"]) == by_user[item["User"]["S"]]["CoverThumbnail"]

    found = latest_completed_export(s3, bucket=BUCKET, export_prefix="p/ddb_export_timestamp=2026-11-27")
    assert found.export_id == result.manifest.export_id and found.item_count == len(source)


def test_incomplete_export_is_ignored(aws):
    s3 = aws.client("s3")
    ensure_bucket(s3, BUCKET)
    s3.put_object(
        Bucket=BUCKET, Key="q/AWSDynamoDB/01700000000000-deadbeef/data/x.json.gz", Body=gzip.compress(b'{"Item":{}}\n')
    )
    assert list_export_ids(s3, bucket=BUCKET, export_prefix="q") == ["01700000000000-deadbeef"]
    assert latest_completed_export(s3, bucket=BUCKET, export_prefix="q") is None


def test_budgeted_scan_stays_under_budget_on_estimated_capacity(aws):
    ddb, s3, source = seed_reviews_table(aws, "Budgeted", 1200, seed=3, bucket=BUCKET)
    reports = []

    result = export_table_scan(
        ddb,
        s3,
        table_name="Budgeted",
        bucket=BUCKET,
        export_prefix="b/ddb_export_timestamp=2026-11-27",
        total_segments=3,
        rate_limit=15.0,
        on_progress=reports.append,
    )

    assert result.items == len(source) and result.rate_limit == 15.0
    # moto reports 1.0 per page whatever the page holds: the run noticed and used estimates.
    assert result.capacity_source == "estimated" and result.reported_capacity < result.consumed_capacity
    assert (
        result.estimated_capacity * 0.8 <= result.consumed_capacity <= result.estimated_capacity + 5
    )  # first small pages looked plausible
    rate = result.consumed_capacity / result.duration_seconds
    assert rate <= 15.0 * 1.05, f"{rate:.1f} RCU/s against a budget of 15"
    assert result.duration_seconds >= result.consumed_capacity / 15.0 * 0.9
    assert reports and reports[-1].items == len(source) and reports[-1].rate_limit == 15.0
    assert all(r.consumed_capacity <= 15.0 * r.elapsed_seconds + 15.0 for r in reports)  # never more than 1 s ahead
