"""Resumable scan: a run really SIGKILLed mid-scan, then re-run; every item exactly once, fewer reads."""

import gzip
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from offload_assets.export.errors import ExportTimeoutError
from offload_assets.export.layout import latest_completed_export, list_export_ids
from offload_assets.export.scan import export_table_scan
from offload_assets.export.scan_checkpoints import read_segment_checkpoints
from offload_assets_tests.conftest import seed_reviews_table
from offload_assets_tests.export.conftest import BUCKET, export_items, keys_of, list_keys

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "resume/ddb_export_timestamp=2026-11-27"
EXPORT_TIME = "2026-11-27T00:00:00.000Z"


@pytest.fixture()
def table_1500(aws):
    return seed_reviews_table(aws, "Resumable", 1500, seed=5, bucket=BUCKET)


def _scan(ddb, s3, **options):
    """This file's scan export of ``Resumable`` into ``PREFIX`` for ``EXPORT_TIME``, with ``options``."""
    return export_table_scan(
        ddb, s3, table_name="Resumable", bucket=BUCKET, export_prefix=PREFIX, export_time=EXPORT_TIME, **options
    )


def _slow_scan(ddb, s3, *, timeout_seconds: float) -> None:
    """A run that checkpoints every page at 20 RCU/s and times out, leaving its checkpoints behind."""
    _scan(
        ddb,
        s3,
        total_segments=2,
        page_limit=50,
        rate_limit=20,
        capacity_source="estimated",
        checkpoint_seconds=0,
        timeout_seconds=timeout_seconds,
    )


def _recorded_items(s3) -> tuple[str | None, int]:
    ids = list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX)
    if not ids:
        return None, 0
    cps = read_segment_checkpoints(s3, bucket=BUCKET, export_prefix=PREFIX, export_id=ids[-1])
    return ids[-1], sum(cp.items for cp in cps.values())


def test_sigkilled_scan_resumes_and_holds_every_item_exactly_once(table_1500, emulator):
    ddb, s3, items = table_1500
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offload_assets_tests.export.scan_until_killed",
            emulator.endpoint_url,
            "Resumable",
            BUCKET,
            PREFIX,
            EXPORT_TIME,
            "8",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        export_id, recorded = None, 0
        while time.monotonic() < deadline and child.poll() is None:
            export_id, recorded = _recorded_items(s3)
            if recorded >= len(items) * 0.3:
                break
            time.sleep(0.1)
        assert child.poll() is None, f"the scan finished before it could be killed: {child.communicate()}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    export_id, recorded = _recorded_items(s3)
    assert 0 < recorded < len(items)
    assert latest_completed_export(s3, bucket=BUCKET, export_prefix=PREFIX) is None  # nothing published
    # A file uploaded by the dead run but never recorded (it died between the two): must not count.
    orphan = f"{PREFIX}/AWSDynamoDB/{export_id}/data/s00000-unrecorded.json.gz"
    s3.put_object(
        Bucket=BUCKET, Key=orphan, Body=gzip.compress(b'{"Item":{"User":{"S":"Alice"},"Book":{"S":"dup"}}}\n')
    )

    result = _scan(
        ddb,
        s3,
        page_limit=100,
        resume_lease_seconds=0,
    )

    assert result.resumed and result.manifest.export_id == export_id and result.segments == 4
    assert result.removed_unrecorded_files >= 1 and orphan not in list_keys(s3, PREFIX + "/")
    assert result.items == len(items) == result.manifest.item_count
    assert 0 < result.items_scanned <= len(items) - recorded < len(items)  # the re-run read fewer items
    exported = export_items(s3, result.manifest)
    counts = Counter(keys_of(exported))
    assert max(counts.values()) == 1
    assert sorted(counts) == sorted((i["User"], i["Book"]) for i in items)
    assert not [k for k in list_keys(s3, PREFIX + "/") if "/_checkpoints/" in k]
    assert list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX) == [export_id]


def test_timed_out_scan_publishes_nothing_and_a_rerun_finishes_it(table_1500):
    ddb, s3, items = table_1500
    with pytest.raises(ExportTimeoutError, match="'Resumable' exceeded its timeout.*nothing was published.*continues"):
        _slow_scan(ddb, s3, timeout_seconds=1.0)
    assert latest_completed_export(s3, bucket=BUCKET, export_prefix=PREFIX) is None
    assert [k for k in list_keys(s3, PREFIX + "/") if "/_checkpoints/segment-" in k]

    result = _scan(
        ddb,
        s3,
        total_segments=2,
        page_limit=200,
        resume_lease_seconds=0,
    )
    assert result.resumed and result.items == len(items) and result.items_scanned < len(items)
    assert sorted(keys_of(export_items(s3, result.manifest))) == sorted((i["User"], i["Book"]) for i in items)


def test_a_different_export_time_or_segment_count_starts_over(table_1500):
    ddb, s3, items = table_1500
    with pytest.raises(ExportTimeoutError):
        _slow_scan(ddb, s3, timeout_seconds=0.5)
    stale = list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX)
    result = _scan(
        ddb,
        s3,
        total_segments=3,
        resume_lease_seconds=0,
    )
    assert not result.resumed and result.manifest.export_id not in stale
    assert result.items_scanned == result.items == len(items)
