"""Change capture's pure core on the scripted stream: lineage, reduction, exactly once, gaps, re-bootstrap."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from offload_assets.cdc.capture import (
    CaptureSettings,
    NotBootstrapped,
    bootstrap_properties,
    capture_step,
    capture_until_caught_up,
    waiting_lag,
)
from offload_assets.cdc.changes import ChangeRecordError, convert_images, reduce_records
from offload_assets.cdc.positions import CapturePosition, lineage_order
from offload_assets.cdc.reader import ContinuityLost
from offload_assets.cdc.scripted import ScriptedStreamSource
from offload_assets.cdc.source import TTL_PRINCIPAL, Shard, StreamRecord

from .memory_target import MemoryTarget, scan_state

KEYS = ("user_id", "review_id")


def review(user: int, review_id: int, rating: int = 3, **extra) -> dict:
    item = {"user_id": {"S": f"u{user}"}, "review_id": {"N": str(review_id)}, "rating": {"N": str(rating)}}
    return {**item, **extra}


def key(user: int, review_id: int) -> dict:
    return {"user_id": {"S": f"u{user}"}, "review_id": {"N": str(review_id)}}


@pytest.fixture()
def stream() -> ScriptedStreamSource:
    return ScriptedStreamSource("Reviews", KEYS)


def bootstrapped(stream: ScriptedStreamSource, settings: CaptureSettings, reason: str = "bootstrap") -> MemoryTarget:
    target = MemoryTarget(KEYS)
    rebootstrap(stream, target, settings, reason)
    return target


def rebootstrap(stream, target, settings, reason) -> None:
    """A new full export at 'now' committed with the bootstrap position (what the Dagster side does)."""
    target.load_full_export(stream.items(), bootstrap_properties(stream, settings, stream.now, reason))


def assert_converged(stream: ScriptedStreamSource, target: MemoryTarget) -> None:
    assert target.state() == scan_state(stream.items(), target.schema)


def committed_records(target: MemoryTarget) -> int:
    return sum(int(s.get("offload.cdc.records", 0)) for s in target.snapshots)


# ------------------------------------------------------------------ lineage and reduction


def test_lineage_order_puts_parents_before_children_and_roots_by_start():
    shards = [
        Shard("c2", "p1", "30"),
        Shard("g1", "c1", "50"),
        Shard("p1", None, "10", "29"),
        Shard("c1", "p1", "31"),
        Shard("orphan", "trimmed-away", "5"),
    ]
    order = [s.shard_id for s in lineage_order(shards)]
    assert order.index("p1") < order.index("c1") < order.index("g1")
    assert order.index("p1") < order.index("c2")
    assert order[0] == "orphan"  # its parent is gone: a root, earliest start first


def record(event: str, seq: int, image: dict, *, ttl: bool = False) -> StreamRecord:
    keys = {k: image[k] for k in KEYS}
    return StreamRecord(
        event_name=event,
        sequence_number=str(seq),
        keys=keys,
        new_image=None if event == "REMOVE" else image,
        old_image=image if event == "REMOVE" else None,
        created=None,
        user_identity=TTL_PRINCIPAL if ttl else None,
    )


def test_last_change_per_key_by_sequence_number_wins_and_ttl_is_counted_apart():
    records = [
        record("MODIFY", 105, review(1, 1, rating=5)),
        record("INSERT", 101, review(1, 1, rating=1)),  # out of order on purpose
        record("INSERT", 102, review(2, 1)),
        record("REMOVE", 103, review(2, 1)),
        record("MODIFY", 104, review(3, 1, rating=4)),
        record("REMOVE", 106, review(4, 1), ttl=True),
        record("INSERT", 107, review(5, 1)),
    ]
    batch = reduce_records(records, KEYS)
    assert batch.facts() == {"records": 7, "keys": 5, "inserts": 2, "updates": 1, "deletes": 1, "ttl_deletes": 1}
    upserts = {v["user_id"]["S"]: v["rating"]["N"] for v in batch.upserts.values()}
    assert upserts == {"u1": "5", "u3": "4", "u5": "3"}
    assert sorted(v["user_id"]["S"] for v in batch.deletes.values()) == ["u2", "u4"]


def test_a_key_only_stream_is_refused_with_the_view_type_needed():
    keys_only = StreamRecord("INSERT", "1", key(1, 1), None, None, None)
    with pytest.raises(ChangeRecordError, match="NEW_IMAGE, NEW_AND_OLD_IMAGES"):
        reduce_records([keys_only], KEYS)


def test_images_are_converted_like_export_items():
    images = [review(1, 7, tags={"SS": ["a", "b"]}, price={"N": "12.50"}, **{"my attr": {"S": "x"}})]
    table = convert_images(images, None)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["review_id"] == "int64" and types["tags"] == "list<element: string>"
    assert types["price"].startswith("decimal128")
    assert "my_attr" in types  # the converter's safe column name
    row = table.to_pylist()[0]
    assert row["price"] == Decimal("12.50") and row["tags"] == ["a", "b"]


# ------------------------------------------------------------------ the step


def test_bootstrap_then_changes_converge_to_a_full_scan(stream):
    settings = CaptureSettings("Reviews", KEYS)
    for i in range(20):
        stream.put(review(i, 1))
    stream.tick(600)  # older than the overlap: already in the snapshot, skipped
    target = bootstrapped(stream, settings)
    stream.put(review(1, 1, rating=5))  # update
    stream.put(review(100, 1))  # insert
    stream.delete(key(2, 1))  # delete
    stream.delete(key(3, 1), ttl=True)  # TTL expiry
    step = capture_step(stream, target, settings)
    assert step.facts()["inserts"] == 1 and step.facts()["updates"] == 1
    assert step.facts()["deletes"] == 1 and step.facts()["ttl_deletes"] == 1
    assert step.read.caught_up and step.lag_seconds == 0
    assert_converged(stream, target)
    assert len(target.rows) == 19
    # nothing waits: no commit
    again = capture_step(stream, target, settings)
    assert not again.committed and len(target.snapshots) == 2
    assert waiting_lag(stream, target, settings) is None


def test_the_overlap_before_the_snapshot_is_skipped_or_reapplied_harmlessly(stream):
    settings = CaptureSettings("Reviews", KEYS, overlap=dt.timedelta(seconds=30))
    stream.put(review(1, 1, rating=1))
    stream.tick(3600)  # an hour before the snapshot: skipped
    stream.put(review(2, 1, rating=2))  # within the overlap: re-applied, harmless
    target = bootstrapped(stream, settings)
    step = capture_step(stream, target, settings)
    assert step.read.skipped_before_since == 1 and step.batch.records == 1
    assert_converged(stream, target)


def test_a_table_without_an_export_snapshot_is_not_bootstrapped(stream):
    with pytest.raises(NotBootstrapped, match="no snapshot from an export"):
        capture_step(stream, MemoryTarget(KEYS), CaptureSettings("Reviews", KEYS))


def test_a_crash_between_read_and_commit_rereads_and_applies_once(stream):
    settings = CaptureSettings("Reviews", KEYS, max_records=3, page_limit=2)
    target = bootstrapped(stream, settings)
    for rating in range(1, 8):  # the same key in consecutive batches
        stream.put(review(1, 1, rating=rating))
        stream.put(review(rating, 2))

    def crash(_read):
        raise SystemExit("killed between read and commit")

    capture_step(stream, target, settings)
    with pytest.raises(SystemExit):
        capture_step(stream, target, settings, before_commit=crash)
    steps = capture_until_caught_up(stream, target, settings)
    assert steps[-1].read.caught_up
    assert_converged(stream, target)
    assert committed_records(target) == 14  # every record in exactly one committed snapshot


def test_shard_split_parents_are_read_before_children_and_to_their_end(stream):
    settings = CaptureSettings("Reviews", KEYS, max_records=5, page_limit=5)
    target = bootstrapped(stream, settings)
    for i in range(8):
        stream.put(review(i, 1))
    children = stream.split_shards()
    for i in range(8):
        stream.put(review(i, 1, rating=5))  # the same keys, now in the children
    stream.split_shards()  # grandchildren
    stream.delete(key(0, 1))
    first = capture_step(stream, target, settings)
    assert not first.read.caught_up and not set(first.position.shards) & set(children)
    steps = capture_until_caught_up(stream, target, settings)
    assert steps[-1].read.caught_up
    assert_converged(stream, target)
    assert {r["rating"] for r in target.rows.values()} == {5}
    assert steps[-1].read.shards_total == 7


def test_trimmed_records_are_detected_and_a_rebootstrap_converges(stream):
    settings = CaptureSettings("Reviews", KEYS)
    target = bootstrapped(stream, settings)
    stream.put(review(1, 1))
    capture_step(stream, target, settings)
    stream.put(review(2, 1))
    stream.put(review(3, 1))
    stream.trim_through(int(stream.last_sequence) - 1)  # review 2's insert is gone before we read it
    stream.put(review(4, 1))
    with pytest.raises(ContinuityLost) as lost:
        capture_step(stream, target, settings)
    assert lost.value.reason == "trimmed" and "TrimmedDataAccessException" in str(lost.value)
    rebootstrap(stream, target, settings, lost.value.reason)
    stream.put(review(5, 1))
    capture_step(stream, target, settings)
    assert_converged(stream, target)
    assert target.snapshots[-2]["offload.cdc.bootstrap_reason"] == "trimmed"


def test_a_trimmed_closed_shard_the_position_knows_is_a_gap(stream):
    settings = CaptureSettings("Reviews", KEYS, max_records=1, page_limit=1)
    target = bootstrapped(stream, settings)
    stream.put(review(1, 1))
    stream.put(review(2, 1))
    capture_step(stream, target, settings)  # one of two records of the first shard
    stream.split_shards()
    stream.put(review(3, 1))
    stream.trim_through(int(stream.last_sequence) - 1)  # the parent disappears with a record unread
    with pytest.raises(ContinuityLost, match="no longer in the stream") as lost:
        capture_step(stream, target, settings)
    assert lost.value.reason == "trimmed"


def test_expired_iterators_are_renewed_from_the_last_sequence_number(stream):
    settings = CaptureSettings("Reviews", KEYS, page_limit=2)
    target = bootstrapped(stream, settings)
    for i in range(10):
        stream.put(review(i, 1))
    stream.expire_iterators_every(2)
    step = capture_step(stream, target, settings)
    assert step.read.iterators_renewed >= 2
    assert_converged(stream, target)
    assert committed_records(target) == 10


def test_iterators_that_keep_expiring_are_a_gap(stream):
    settings = CaptureSettings("Reviews", KEYS)
    target = bootstrapped(stream, settings)
    stream.put(review(1, 1))
    stream.expire_iterators_every(1)
    with pytest.raises(ContinuityLost) as lost:
        capture_step(stream, target, settings)
    assert lost.value.reason == "expired_iterator"


def test_a_reenabled_stream_is_a_gap_and_the_rebootstrap_follows_the_new_arn(stream):
    settings = CaptureSettings("Reviews", KEYS)
    target = bootstrapped(stream, settings)
    old_arn = CapturePosition.from_json(target.snapshots[-1]["offload.cdc.position"]).stream_arn
    stream.put(review(1, 1))
    stream.disable_stream()
    stream.put(review(2, 1))  # in no stream
    new_arn = stream.reenable_stream()
    stream.put(review(3, 1))
    with pytest.raises(ContinuityLost) as lost:
        capture_step(stream, target, settings)
    assert lost.value.reason == "new_stream" and old_arn in str(lost.value) and new_arn in str(lost.value)
    stream.tick(1)
    rebootstrap(stream, target, settings, lost.value.reason)
    stream.put(review(4, 1))
    step = capture_step(stream, target, settings)
    assert step.position.stream_arn == new_arn
    assert_converged(stream, target)


def test_a_snapshot_older_than_the_stream_cannot_bootstrap(stream):
    settings = CaptureSettings("Reviews", KEYS)
    with pytest.raises(ContinuityLost, match="after the table's snapshot") as lost:
        bootstrap_properties(stream, settings, stream.now - dt.timedelta(hours=1))
    assert lost.value.reason == "new_stream"


def test_the_nightly_snapshot_resets_the_start_to_its_export_time(stream):
    settings = CaptureSettings("Reviews", KEYS, overlap=dt.timedelta(seconds=10))
    target = bootstrapped(stream, settings)
    stream.put(review(1, 1, rating=1))
    capture_step(stream, target, settings)
    stream.tick(60)
    export_time = stream.now
    nightly_items = stream.items()
    stream.put(review(1, 1, rating=2))  # after the export: must survive the nightly commit
    target.load_full_export(
        nightly_items, {"offload.partition": "2026-12-01", "offload.export_time": export_time.isoformat()}
    )
    step = capture_step(stream, target, settings)
    assert step.started_from == "snapshot" and step.read.skipped_before_since == 1
    assert_converged(stream, target)
    assert next(iter(target.rows.values()))["rating"] == 2


def test_the_tables_file_refuses_change_capture_without_iceberg(tmp_path):
    from offload_assets.table_spec import TablesFileError, parse_tables

    entry = {"dynamodb_table": "Reviews", "s3_bucket": "my-bucket", "change_capture": "streams"}
    with pytest.raises(TablesFileError, match="change_capture 'streams' needs table_format 'iceberg'"):
        parse_tables({"tables": [entry]}, tmp_path / "tables.yaml")
    spec = parse_tables({"tables": [{**entry, "change_capture": "off"}]}, tmp_path / "t.yaml").tables[0]
    assert spec.change_capture_interval_seconds == 60 and spec.max_lag_minutes == 15


@pytest.mark.parametrize(
    ("stream_spec", "message"),
    [
        (None, "stream is off"),
        ({"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}, "view type is KEYS_ONLY"),
        ({"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}, None),
    ],
)
def test_a_stream_that_cannot_feed_capture_says_which_view_type_is_needed(stream_spec, message):
    from offload_assets.cdc.requirements import stream_problem

    problem = stream_problem({"TableName": "Reviews", "StreamSpecification": stream_spec})
    if message is None:
        assert problem is None
    else:
        assert message in problem and "NEW_AND_OLD_IMAGES" in problem and "update-table" in problem


def test_the_iam_policy_grants_the_stream_reads_for_a_capturing_table():
    from dataclasses import replace

    from offload_assets.aws.iam_policy import build_iam_policy
    from offload_assets.table_spec import parse_tables

    spec = parse_tables({"tables": [{"dynamodb_table": "Reviews", "s3_bucket": "my-bucket"}]}, None).tables[0]
    policy = build_iam_policy([replace(spec, change_capture="streams")], region="us-east-1", account_id="1" * 12)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ChangeCaptureStreams"]["Action"] == [
        "dynamodb:DescribeStream",
        "dynamodb:GetShardIterator",
        "dynamodb:GetRecords",
    ]
    assert by_sid["ChangeCaptureStreams"]["Resource"] == [
        "arn:aws:dynamodb:us-east-1:111111111111:table/Reviews/stream/*"
    ]
    assert "ChangeCaptureStreams" not in {s["Sid"] for s in build_iam_policy([spec])["Statement"]}
