"""apply_waiting on the scripted stream: the first bootstrap, gaps re-bootstrapped automatically, conflicts retried."""

from __future__ import annotations

import pytest

from offload_assets.cdc.capture import CaptureSettings, CommitConflict
from offload_assets.cdc.catch_up import FullSnapshot, apply_waiting
from offload_assets.cdc.reader import ContinuityLost
from offload_assets.cdc.scripted import ScriptedStreamSource

from .memory_target import MemoryTarget, scan_state
from .test_capture_core import KEYS, key, review


def _snapshot_of(stream: ScriptedStreamSource):
    taken = []

    def take() -> FullSnapshot:
        stream.tick(1)
        taken.append(stream.now)
        return FullSnapshot(items=stream.items(), taken_at=stream.now, origin=f"scripted export {len(taken)}")

    return take, taken


def _converged(stream, target) -> bool:
    return target.state() == scan_state(stream.items(), target.schema)


def test_the_first_run_bootstraps_from_a_full_snapshot_then_applies_the_stream():
    stream = ScriptedStreamSource("Reviews", KEYS)
    for i in range(10):
        stream.put(review(i, 1))
    take, taken = _snapshot_of(stream)
    target = MemoryTarget(KEYS)
    run = apply_waiting(stream, target, CaptureSettings("Reviews", KEYS), take_snapshot=take)
    assert [r.reason for r in run.rebootstraps] == ["bootstrap"] and len(taken) == 1
    assert not run.continuity_lost and run.caught_up
    stream.put(review(1, 1, rating=5))
    stream.delete(key(2, 1))
    again = apply_waiting(stream, target, CaptureSettings("Reviews", KEYS), take_snapshot=take)
    assert not again.rebootstraps and again.facts()["updates"] == 1 and again.facts()["deletes"] == 1
    assert _converged(stream, target) and len(target.rows) == 9


def test_a_shard_split_is_followed_in_lineage_order_and_reported_in_the_shard_count():
    stream = ScriptedStreamSource("Reviews", KEYS)
    take, _ = _snapshot_of(stream)
    target = MemoryTarget(KEYS)
    settings = CaptureSettings("Reviews", KEYS, max_records=4, page_limit=4)
    apply_waiting(stream, target, settings, take_snapshot=take)
    for i in range(6):
        stream.put(review(i, 1))
    stream.split_shards()
    for i in range(6):
        stream.put(review(i, 1, rating=1))
    run = apply_waiting(stream, target, settings, take_snapshot=take)
    assert run.facts()["shards"] == 3 and not run.rebootstraps  # a split is no gap
    assert run.facts()["commits"] >= 3 and run.caught_up
    assert _converged(stream, target) and {r["rating"] for r in target.rows.values()} == {1}


def test_trimmed_records_are_reported_and_rebootstrapped_automatically():
    stream = ScriptedStreamSource("Reviews", KEYS)
    take, taken = _snapshot_of(stream)
    target = MemoryTarget(KEYS)
    settings = CaptureSettings("Reviews", KEYS)
    apply_waiting(stream, target, settings, take_snapshot=take)
    stream.put(review(1, 1))
    apply_waiting(stream, target, settings, take_snapshot=take)  # the position now knows the shard
    stream.put(review(2, 1))
    stream.put(review(3, 1))
    stream.trim_through(stream.last_sequence)  # both gone before they were read
    stream.put(review(4, 1))
    run = apply_waiting(stream, target, settings, take_snapshot=take)
    assert [r.reason for r in run.continuity_lost] == ["trimmed"]
    assert "TrimmedDataAccessException" in run.facts()["continuity_lost"][0]
    assert len(taken) == 2 and run.caught_up
    assert _converged(stream, target) and len(target.rows) == 4
    assert [s.get("offload.cdc.bootstrap_reason") for s in target.snapshots if "offload.cdc.bootstrap_reason" in s] == [
        "bootstrap",
        "trimmed",
    ]


def test_a_reenabled_stream_is_reported_and_the_rebootstrap_follows_the_new_stream():
    stream = ScriptedStreamSource("Reviews", KEYS)
    take, _ = _snapshot_of(stream)
    target = MemoryTarget(KEYS)
    settings = CaptureSettings("Reviews", KEYS)
    apply_waiting(stream, target, settings, take_snapshot=take)
    stream.put(review(1, 1))
    stream.disable_stream()
    stream.put(review(2, 1))  # in no stream at all
    new_arn = stream.reenable_stream()
    stream.put(review(3, 1))
    run = apply_waiting(stream, target, settings, take_snapshot=take)
    assert [r.reason for r in run.continuity_lost] == ["new_stream"]
    assert run.steps[-1].position.stream_arn == new_arn
    stream.put(review(4, 1))
    apply_waiting(stream, target, settings, take_snapshot=take)
    assert _converged(stream, target) and len(target.rows) == 4


def test_iterators_that_keep_expiring_are_a_gap_closed_by_a_rebootstrap_or_a_visible_failure():
    stream = ScriptedStreamSource("Reviews", KEYS)
    take, _ = _snapshot_of(stream)
    target = MemoryTarget(KEYS)
    settings = CaptureSettings("Reviews", KEYS)
    apply_waiting(stream, target, settings, take_snapshot=take)
    stream.put(review(1, 1))
    stream.expire_iterators_every(1)
    with pytest.raises(ContinuityLost, match="renewed 3 times"):  # still lost after re-bootstrapping: fail, loudly
        apply_waiting(stream, target, settings, take_snapshot=take, max_rebootstraps=1)

    def take_then_recover() -> FullSnapshot:
        stream.expire_iterators_every(None)  # e.g. the reader got the capacity it lacked
        return take()

    run = apply_waiting(stream, target, settings, take_snapshot=take_then_recover)
    assert [r.reason for r in run.continuity_lost] == ["expired_iterator"] and run.caught_up
    assert _converged(stream, target)


class _LosesTheFirstRace(MemoryTarget):
    """Another writer commits just before our first commit: ours fails as pyiceberg's would."""

    def __init__(self, keys, rival_rows: list[dict]):
        super().__init__(keys)
        self.rival_rows = rival_rows
        self.raced = True  # armed by the test

    def commit(self, upserts, deletes, properties):
        if not self.raced and "offload.cdc.committed_at" in properties:
            self.raced = True
            self.load_full_export(self.rival_rows, {"offload-assets.partition": "2026-12-03"})
            raise CommitConflict("branch main has changed")
        return super().commit(upserts, deletes, properties)


def test_a_commit_conflict_is_retried_from_the_new_current_snapshot_and_nothing_is_lost():
    stream = ScriptedStreamSource("Reviews", KEYS)
    for i in range(5):
        stream.put(review(i, 1))
    take, _ = _snapshot_of(stream)
    target = _LosesTheFirstRace(KEYS, rival_rows=[])
    settings = CaptureSettings("Reviews", KEYS)
    apply_waiting(stream, target, settings, take_snapshot=take)
    target.rival_rows, target.raced = stream.items(), False  # the nightly export: the state before the next change
    stream.put(review(9, 9))
    run = apply_waiting(stream, target, settings, take_snapshot=take)
    assert run.conflicts_retried == 1 and run.caught_up
    assert target.snapshots[-2].get("offload-assets.partition") == "2026-12-03"
    assert _converged(stream, target) and len(target.rows) == 6
