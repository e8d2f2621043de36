"""One owner per scan export (issue 14, point 2): a live owner is never taken over, a finished export
never resumed, and of two resumers of a dead owner's export exactly one wins; the loser is refused
with a message naming the table, the partition and the owner."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from offload_assets.export.errors import ExportOwnershipError, ExportTimeoutError
from offload_assets.export.export_lease import read_lease
from offload_assets.export.layout import latest_completed_export, list_export_ids
from offload_assets.export.scan import export_table_scan
from offload_assets.export.scan_checkpoints import read_segment_checkpoints
from offload_assets_tests.conftest import seed_reviews_table
from offload_assets_tests.export.conftest import BUCKET, export_items, keys_of, list_keys

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "lease/ddb_export_timestamp=2026-11-27"
EXPORT_TIME = "2026-11-27T00:00:00.000Z"
WHERE = "table 'Leased', partition 2026-11-27"


@pytest.fixture()
def leased(aws):
    return seed_reviews_table(aws, "Leased", 1500, seed=7, bucket=BUCKET)


def _scan(ddb, s3, **kwargs):
    return export_table_scan(
        ddb, s3, table_name="Leased", bucket=BUCKET, export_prefix=PREFIX, export_time=EXPORT_TIME, **kwargs
    )


def _recorded(s3) -> int:
    ids = list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX)
    if not ids:
        return 0
    return sum(
        cp.items for cp in read_segment_checkpoints(s3, bucket=BUCKET, export_prefix=PREFIX, export_id=ids[-1]).values()
    )


def _data_files(s3) -> set[str]:
    return {k for k in list_keys(s3, PREFIX + "/") if "/data/" in k}


def test_a_live_owner_is_not_taken_over_and_a_released_one_is_at_once(leased):
    ddb, s3, items = leased
    outcome: dict = {}

    def owner_a():
        try:
            _scan(
                ddb,
                s3,
                owner="run-A",
                heartbeat_seconds=0.2,
                total_segments=2,
                page_limit=50,
                rate_limit=2,  # ~37 RCU of items: ~18 s, far past its 4 s timeout
                capacity_source="estimated",
                checkpoint_seconds=0,
                timeout_seconds=4,
            )
        except ExportTimeoutError as err:
            outcome["a"] = err

    a = threading.Thread(target=owner_a)
    a.start()
    while not _recorded(s3):
        time.sleep(0.05)
    with pytest.raises(ExportOwnershipError) as refused:
        _scan(ddb, s3, owner="run-B", resume_lease_seconds=1.0)
    message = str(refused.value)
    assert WHERE in message and "owned by run run-A, which is still alive" in message
    assert "another run is still writing scan export" in message
    a.join()
    assert isinstance(outcome.get("a"), ExportTimeoutError)
    export_id = list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX)[-1]
    assert read_lease(s3, bucket=BUCKET, export_prefix=PREFIX, export_id=export_id).released  # A said goodbye
    # Released: the next run takes over without waiting out the (default, minutes-long) lease.
    started = time.monotonic()
    result = _scan(ddb, s3, owner="run-C")
    assert time.monotonic() - started < 60
    assert result.resumed and result.owner == "run-C" and result.manifest.export_id == export_id
    assert result.items == len(items) == result.manifest.item_count


def test_a_staggered_second_run_never_deletes_a_finished_export(leased):
    """Repro: run B finds A's in-progress plan while A finishes; B must not delete A's data and rescan."""
    ddb, s3, items = leased
    results: dict = {}

    def owner_a():
        results["a"] = _scan(
            ddb,
            s3,
            owner="run-A",
            heartbeat_seconds=0.2,
            total_segments=2,
            page_limit=100,
            rate_limit=20,  # ~2 s: B starts while A is still writing
            capacity_source="estimated",
            checkpoint_seconds=0,
        )

    a = threading.Thread(target=owner_a)
    a.start()
    while not _recorded(s3) and a.is_alive():
        time.sleep(0.02)
    with pytest.raises(ExportOwnershipError) as refused:
        _scan(ddb, s3, owner="run-B", resume_lease_seconds=1.0)
    a.join()
    assert WHERE in str(refused.value) and "run-A" in str(refused.value)
    manifest = results["a"].manifest
    assert latest_completed_export(s3, bucket=BUCKET, export_prefix=PREFIX).export_id == manifest.export_id
    assert {f.key for f in manifest.data_files} <= _data_files(s3)  # not one data file of A's export deleted
    assert len(export_items(s3, manifest)) == len(items) == manifest.item_count
    assert list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX) == [manifest.export_id]


def test_two_resumers_of_a_sigkilled_owner_one_wins(leased, emulator):
    ddb, s3, items = leased
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offload_assets_tests.export.scan_until_killed",
            emulator.endpoint_url,
            "Leased",
            BUCKET,
            PREFIX,
            EXPORT_TIME,
            "8",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None and _recorded(s3) < len(items) * 0.2:
            time.sleep(0.1)
        assert child.poll() is None, "the scan finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    export_id = list_export_ids(s3, bucket=BUCKET, export_prefix=PREFIX)[-1]
    dead_owner = read_lease(s3, bucket=BUCKET, export_prefix=PREFIX, export_id=export_id).owner
    time.sleep(0.6)  # the dead owner's heartbeat is older than the resumers' lease

    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def resumer(name: str):
        barrier.wait()
        try:
            results[name] = _scan(ddb, s3, owner=name, resume_lease_seconds=0.5, heartbeat_seconds=0.1, page_limit=100)
        except ExportOwnershipError as err:
            results[name] = err

    threads = [threading.Thread(target=resumer, args=(n,)) for n in ("resumer-1", "resumer-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = {n: r for n, r in results.items() if not isinstance(r, Exception)}
    lost = {n: r for n, r in results.items() if isinstance(r, ExportOwnershipError)}
    assert len(won) == 1 and len(lost) == 1, results
    (winner, result), (_, refusal) = next(iter(won.items())), next(iter(lost.items()))
    message = str(refusal)
    assert WHERE in message and export_id in message
    assert winner in message or dead_owner in message or "still alive" in message
    assert result.resumed and result.manifest.export_id == export_id and result.owner == winner
    counts = Counter(keys_of(export_items(s3, result.manifest)))
    assert max(counts.values()) == 1 and len(counts) == len(items) == result.manifest.item_count
    # No orphan data files: every data file of the partition is in the manifest.
    assert _data_files(s3) == {f.key for f in result.manifest.data_files}
