"""Read what waits in a stream from a committed position, keeping continuity or saying it is lost.

Rules (AWS's for DynamoDB Streams consumers): shards in lineage order, a child only once its
parent is read to its end, closed shards to their end; an expired iterator is renewed from the
last sequence number read; records that are gone (trimmed), a shard the position knows but the
stream no longer lists, a parent nobody read, or a stream replaced by a new ARN mean changes may
be lost: :class:`ContinuityLost` is raised, and the caller re-bootstraps from a new export.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from offload_assets.cdc.positions import CapturePosition, lineage_order
from offload_assets.cdc.source import (
    ExpiredIterator,
    Shard,
    StreamDescription,
    StreamNotFound,
    StreamRecord,
    StreamSource,
    TrimmedDataAccess,
)


class ContinuityLost(RuntimeError):
    """Stream records between the committed position and now may be missing (``reason`` says why)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # trimmed | expired_iterator | new_stream | stream_off | unread_parent


@dataclass(frozen=True)
class ReadBatch:
    records: tuple[StreamRecord, ...]  # in lineage order, ascending per shard
    position: CapturePosition  # where the next read starts once these records are committed
    shards_read: int
    shards_total: int
    iterators_renewed: int
    skipped_before_since: int  # overlap records older than the snapshot's ``since``
    caught_up: bool  # every readable shard was read to its current end


def check_stream(source: StreamSource, table_name: str, position: CapturePosition) -> StreamDescription:
    """The stream the position belongs to, described; raises :class:`ContinuityLost` if it was replaced."""
    current = source.latest_stream_arn(table_name)
    if current is None:
        raise ContinuityLost("stream_off", f"{table_name}: the table's stream is off; changes are not recorded")
    if current != position.stream_arn:
        raise ContinuityLost(
            "new_stream",
            f"{table_name}: the stream was replaced ({position.stream_arn} -> {current}): the stream was disabled "
            "and re-enabled, changes in between are not in any stream",
        )
    try:
        return source.describe_stream(current)
    except StreamNotFound as err:
        raise ContinuityLost("new_stream", f"{table_name}: {err}") from err


def _check_lineage(desc: StreamDescription, position: CapturePosition) -> None:
    listed = {s.shard_id for s in desc.shards}
    known = set(position.shards) | position.finished
    for shard_id in sorted(set(position.shards) - position.finished - listed):
        raise ContinuityLost(
            "trimmed",
            f"shard {shard_id} (read up to {position.shards[shard_id]}) is no longer in the stream: "
            "its remaining records were trimmed (retention is 24 hours)",
        )
    if not known:
        return  # bootstrap: parents trimmed before the snapshot are older than it
    for s in desc.shards:
        if s.parent_shard_id and s.parent_shard_id not in listed and s.parent_shard_id not in known:
            raise ContinuityLost(
                "unread_parent", f"shard {s.shard_id}'s parent {s.parent_shard_id} was trimmed before it was read"
            )


def read_waiting(
    source: StreamSource,
    table_name: str,
    position: CapturePosition,
    *,
    max_records: int = 10_000,
    page_limit: int = 1000,
) -> ReadBatch:
    """Up to about ``max_records`` records waiting after ``position`` (whole pages), and the position after them."""
    desc = check_stream(source, table_name, position)
    _check_lineage(desc, position)
    finished = set(position.finished)
    records: list[StreamRecord] = []
    renewed = skipped = read = 0
    caught_up = True
    for shard in lineage_order(desc.shards):
        if shard.shard_id in finished:
            continue
        if shard.parent_shard_id in {s.shard_id for s in desc.shards} and shard.parent_shard_id not in finished:
            caught_up = False  # its parent still has records: the child waits
            continue
        if len(records) >= max_records:
            caught_up = False
            break
        shard_records, last, done, renewals, shard_skipped, stopped = _read_shard(
            source, desc.stream_arn, shard, position, max_records - len(records), page_limit
        )
        renewed += renewals
        skipped += shard_skipped
        read += 1
        records += shard_records
        position = position.advanced(shard.shard_id, last, done)
        if done:
            finished.add(shard.shard_id)
        if stopped:
            caught_up = False
    return ReadBatch(
        records=tuple(records),
        position=position.pruned(desc.shards),
        shards_read=read,
        shards_total=len(desc.shards),
        iterators_renewed=renewed,
        skipped_before_since=skipped,
        caught_up=caught_up,
    )


def _iterator(source: StreamSource, arn: str, shard: Shard, after: str | None) -> str:
    try:
        return source.get_shard_iterator(arn, shard.shard_id, after)
    except TrimmedDataAccess as err:
        raise ContinuityLost("trimmed", f"shard {shard.shard_id} after {after}: {err}") from err


def _read_shard(source: StreamSource, arn: str, shard: Shard, position: CapturePosition, budget: int, page_limit: int):
    """Records of one shard after the position: (records, last sequence, read to end, renewals, skipped, stopped)."""
    last = position.shards.get(shard.shard_id)
    since = position.since
    iterator = _iterator(source, arn, shard, last)
    out: list[StreamRecord] = []
    renewals = skipped = in_a_row = 0
    while True:
        try:
            page = source.get_records(iterator, min(page_limit, max(budget - len(out), 1)))
        except ExpiredIterator as err:
            if in_a_row >= 3:  # a fresh iterator expiring again and again: the reader cannot keep up
                raise ContinuityLost("expired_iterator", f"shard {shard.shard_id}: {err} (renewed 3 times)") from err
            renewals += 1
            in_a_row += 1
            iterator = _iterator(source, arn, shard, last)
            continue
        except TrimmedDataAccess as err:
            raise ContinuityLost("trimmed", f"shard {shard.shard_id} after {last}: {err}") from err
        in_a_row = 0
        for record in page.records:
            last = record.sequence_number
            if since is not None and record.created is not None and record.created < since:
                skipped += 1
                continue
            out.append(record)
        if page.next_iterator is None:
            return out, last, True, renewals, skipped, False
        if not page.records:
            return out, last, False, renewals, skipped, False  # caught up with an open shard
        if len(out) >= budget:
            return out, last, False, renewals, skipped, True
        iterator = page.next_iterator


def oldest_waiting(source: StreamSource, table_name: str, position: CapturePosition) -> dt.datetime | None:
    """Creation time of the oldest record not yet applied (``None``: nothing waits). Reads one record per shard."""
    desc = check_stream(source, table_name, position)
    _check_lineage(desc, position)
    oldest: dt.datetime | None = None
    for shard in lineage_order(desc.shards):
        if shard.shard_id in position.finished:
            continue
        try:
            page = source.get_records(_iterator(source, desc.stream_arn, shard, position.shards.get(shard.shard_id)), 1)
        except TrimmedDataAccess as err:
            raise ContinuityLost("trimmed", f"shard {shard.shard_id}: {err}") from err
        for record in page.records:
            if record.created is not None and (position.since is None or record.created >= position.since):
                oldest = record.created if oldest is None else min(oldest, record.created)
            elif record.created is not None:
                # An overlap record: something still waits behind it, as old as the overlap at most.
                oldest = position.since if oldest is None else min(oldest, position.since)
    return oldest
