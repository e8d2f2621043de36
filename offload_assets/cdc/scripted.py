"""A DynamoDB table with a stream, in memory, that a test (or a demo) can script.

It implements :class:`offload_assets.cdc.source.StreamSource` the way DynamoDB Streams behaves,
including what the local emulator cannot do: shard splits with parent/child lineage (the parent
closes with an ending sequence number, writes go to the children by key), trimming (records
older than the trim point are gone, and asking for them raises ``TrimmedDataAccess``), expired
iterators, TTL expiries (``userIdentity`` = DynamoDB's service principal) and a stream disabled
and re-enabled under a new ARN. It keeps the table's items too: ``items()`` is the full scan a
consumer must converge to.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
from dataclasses import dataclass, field

import orjson

from offload_assets.cdc.source import (
    TTL_PRINCIPAL,
    ExpiredIterator,
    RecordsPage,
    Shard,
    StreamDescription,
    StreamNotFound,
    StreamRecord,
    TrimmedDataAccess,
)


@dataclass
class _Shard:
    shard_id: str
    parent_shard_id: str | None
    records: list[StreamRecord] = field(default_factory=list)
    closed_at: str | None = None  # ending sequence number once closed
    starting_sequence: str | None = None


@dataclass
class _Stream:
    arn: str
    created: dt.datetime
    shards: list[_Shard]
    enabled: bool = True
    trimmed_through: int = 0  # records with a sequence <= this are gone

    def open_shards(self) -> list[_Shard]:
        return [s for s in self.shards if s.closed_at is None]


class ScriptedStreamSource:
    """A scriptable table + stream (see the module docstring); key names hash key first."""

    def __init__(
        self,
        table_name: str,
        key_names: tuple[str, ...],
        *,
        view_type: str = "NEW_AND_OLD_IMAGES",
        start: dt.datetime = dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    ):
        self.table_name = table_name
        self.key_names = tuple(key_names)
        self.view_type = view_type
        self.now = start
        self._items: dict[bytes, dict] = {}
        self._sequence = 10**20
        self._epoch = 0
        self._expire_every: int | None = None
        self._calls = 0
        self._shard_count = 0
        self._streams: list[_Stream] = []
        self._new_stream()

    # ------------------------------------------------------------------ the table
    def _key(self, item: dict) -> bytes:
        return orjson.dumps([item[k] for k in self.key_names])

    def items(self) -> list[dict]:
        """Every item as a full scan returns it now."""
        return list(self._items.values())

    def put(self, item: dict) -> None:
        key = self._key(item)
        old = self._items.get(key)
        self._items[key] = item
        self._emit("MODIFY" if old is not None else "INSERT", key, item, old)

    def delete(self, keys: dict, *, ttl: bool = False) -> None:
        key = self._key(keys)
        old = self._items.pop(key, None)
        if old is not None:
            self._emit("REMOVE", key, None, old, TTL_PRINCIPAL if ttl else None)

    def tick(self, seconds: float = 1.0) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def _emit(self, event: str, key: bytes, new: dict | None, old: dict | None, identity=None) -> None:
        self.tick(0.001)
        stream = self._streams[-1]
        if not stream.enabled:
            return
        self._sequence += 1
        image = new if new is not None else old
        open_shards = stream.open_shards()
        shard = open_shards[int(hashlib.md5(key).hexdigest(), 16) % len(open_shards)]
        show_new = self.view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
        show_old = self.view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
        record = StreamRecord(
            event_name=event,
            sequence_number=str(self._sequence),
            keys={k: image[k] for k in self.key_names},
            new_image=new if show_new else None,
            old_image=old if show_old else None,
            created=self.now,
            user_identity=identity,
            size_bytes=len(orjson.dumps(image)),
        )
        if shard.starting_sequence is None:
            shard.starting_sequence = record.sequence_number
        shard.records.append(record)

    # ------------------------------------------------------------------ what happens to the stream
    def _new_shard(self, parent: str | None) -> _Shard:
        self._shard_count += 1
        return _Shard(shard_id=f"shardId-{self._shard_count:05d}-scripted", parent_shard_id=parent)

    def _new_stream(self) -> None:
        self.tick(0.001)
        arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{self.table_name}/stream/{self.now.isoformat()}"
        self._streams.append(_Stream(arn=arn, created=self.now, shards=[self._new_shard(None)]))

    def split_shards(self) -> list[str]:
        """Close every open shard and give each two children; returns the children's ids."""
        stream = self._streams[-1]
        children = []
        for shard in stream.open_shards():
            shard.closed_at = shard.records[-1].sequence_number if shard.records else str(self._sequence)
            for _ in range(2):
                child = self._new_shard(shard.shard_id)
                stream.shards.append(child)
                children.append(child.shard_id)
        return children

    def trim_through(self, sequence_number: str | int) -> None:
        """Drop every record up to ``sequence_number`` (what 24 h of retention does to a slow reader)."""
        for stream in self._streams:
            stream.trimmed_through = max(stream.trimmed_through, int(sequence_number))
            for shard in stream.shards:
                shard.records = [r for r in shard.records if r.sequence > stream.trimmed_through]
            # A closed shard whose records are all gone drops out of DescribeStream.
            stream.shards = [s for s in stream.shards if s.records or s.closed_at is None]

    def trim_all(self) -> None:
        self.trim_through(self._sequence)

    def expire_iterators(self) -> None:
        """Every iterator handed out so far is now older than 15 minutes."""
        self._epoch += 1

    def expire_iterators_every(self, calls: int | None) -> None:
        """From now on, iterators expire after every ``calls`` GetRecords calls (a consumer too slow)."""
        self._expire_every = calls
        self._calls = 0

    def disable_stream(self) -> None:
        self._streams[-1].enabled = False
        for shard in self._streams[-1].open_shards():
            shard.closed_at = shard.records[-1].sequence_number if shard.records else str(self._sequence)

    def reenable_stream(self) -> str:
        """Turn the stream off and on again: a new stream with a new ARN; returns it."""
        if self._streams[-1].enabled:
            self.disable_stream()
        self._new_stream()
        return self._streams[-1].arn

    @property
    def last_sequence(self) -> str:
        return str(self._sequence)

    # ------------------------------------------------------------------ StreamSource
    def _stream(self, arn: str) -> _Stream:
        for stream in self._streams:
            if stream.arn == arn:
                return stream
        raise StreamNotFound(f"ResourceNotFoundException: stream {arn} not found")

    def _shard(self, arn: str, shard_id: str) -> _Shard:
        for shard in self._stream(arn).shards:
            if shard.shard_id == shard_id:
                return shard
        raise StreamNotFound(f"ResourceNotFoundException: shard {shard_id} not found in {arn}")

    def latest_stream_arn(self, table_name: str) -> str | None:
        stream = self._streams[-1]
        return stream.arn if stream.enabled else None

    def describe_stream(self, stream_arn: str) -> StreamDescription:
        stream = self._stream(stream_arn)
        return StreamDescription(
            stream_arn=stream.arn,
            status="ENABLED" if stream.enabled else "DISABLED",
            view_type=self.view_type,
            key_names=self.key_names,
            created=stream.created,
            shards=tuple(
                Shard(s.shard_id, s.parent_shard_id, s.starting_sequence or str(self._sequence + 1), s.closed_at)
                for s in stream.shards
            ),
        )

    def get_shard_iterator(self, stream_arn: str, shard_id: str, after_sequence: str | None) -> str:
        stream = self._stream(stream_arn)
        self._shard(stream_arn, shard_id)  # raises for an unknown shard
        if after_sequence is not None and int(after_sequence) < stream.trimmed_through:
            raise TrimmedDataAccess(
                f"TrimmedDataAccessException: sequence {after_sequence} of {shard_id} is beyond the trim horizon"
            )
        after = int(after_sequence) if after_sequence is not None else -1
        return orjson.dumps([stream_arn, shard_id, str(after), self._epoch]).decode()

    def get_records(self, iterator: str, limit: int) -> RecordsPage:
        arn, shard_id, after_text, epoch = orjson.loads(iterator)
        after = int(after_text)
        self._calls += 1
        if self._expire_every and self._calls % self._expire_every == 0:
            self._epoch += 1
        if epoch != self._epoch:
            raise ExpiredIterator("ExpiredIteratorException: iterator expired")
        stream = self._stream(arn)
        shard = self._shard(arn, shard_id)
        if after >= 0 and after < stream.trimmed_through:
            raise TrimmedDataAccess(f"TrimmedDataAccessException: records after {after} of {shard_id} were trimmed")
        # Records are appended in sequence order: bisect, so reading N records costs N log N, not N^2.
        first = bisect.bisect_right(shard.records, after, key=lambda r: r.sequence)
        page = tuple(shard.records[first : first + limit])
        last = page[-1].sequence if page else after
        if shard.closed_at is not None and len(shard.records) - first <= limit:
            return RecordsPage(records=page, next_iterator=None)
        return RecordsPage(records=page, next_iterator=orjson.dumps([arn, shard_id, str(last), epoch]).decode())
