"""Where change records come from: DynamoDB Streams, behind one small interface.

:class:`StreamSource` is the four calls a consumer needs (find the table's stream, describe it,
get a shard iterator, get records). :class:`Boto3StreamSource` implements it over boto3's
``dynamodbstreams`` client (real AWS, and the local emulator, which serves one shard per stream);
:class:`offload_assets.cdc.scripted.ScriptedStreamSource` implements it in memory for what the
emulator cannot do (shard splits, trimming, expired iterators, a re-enabled stream).

Both raise the same errors: :class:`TrimmedDataAccess` and :class:`ExpiredIterator`, so the
consumer's continuity rules are written once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

#: ``userIdentity`` of a stream record written by DynamoDB's TTL process (AWS documents this pair).
TTL_PRINCIPAL = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


class StreamReadError(RuntimeError):
    """A stream call failed in a way that breaks continuity (the subclass says how)."""


class TrimmedDataAccess(StreamReadError):
    """The records asked for are beyond the stream's retention (24 h on AWS): they are gone."""


class ExpiredIterator(StreamReadError):
    """A shard iterator was used more than 15 minutes after it was issued."""


class StreamNotFound(StreamReadError):
    """The stream ARN does not exist (any more)."""


@dataclass(frozen=True)
class Shard:
    """One shard of a stream; ``ending_sequence`` is set once the shard is closed."""

    shard_id: str
    parent_shard_id: str | None
    starting_sequence: str | None
    ending_sequence: str | None = None

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None


@dataclass(frozen=True)
class StreamDescription:
    stream_arn: str
    status: str  # ENABLING | ENABLED | DISABLING | DISABLED
    view_type: str | None
    key_names: tuple[str, ...]  # hash key first
    created: dt.datetime | None
    shards: tuple[Shard, ...]


@dataclass(frozen=True)
class StreamRecord:
    """One change, as DynamoDB Streams delivers it (images in DynamoDB JSON)."""

    event_name: str  # INSERT | MODIFY | REMOVE
    sequence_number: str
    keys: dict[str, dict]
    new_image: dict[str, dict] | None
    old_image: dict[str, dict] | None
    created: dt.datetime | None
    user_identity: dict | None = None
    size_bytes: int = 0

    @property
    def sequence(self) -> int:
        """Sequence numbers are decimal strings of up to 40 digits: compare them as integers."""
        return int(self.sequence_number)

    @property
    def is_ttl_expiry(self) -> bool:
        identity = self.user_identity or {}
        return self.event_name == "REMOVE" and all(identity.get(k) == v for k, v in TTL_PRINCIPAL.items())


@dataclass(frozen=True)
class RecordsPage:
    records: tuple[StreamRecord, ...]
    next_iterator: str | None  # None: the shard is closed and read to its end


class StreamSource(Protocol):
    """The DynamoDB Streams calls a change-capture consumer makes."""

    def latest_stream_arn(self, table_name: str) -> str | None:
        """The table's current stream (``None``: streams are off)."""

    def describe_stream(self, stream_arn: str) -> StreamDescription:
        """The stream with all its shards (paged through)."""

    def get_shard_iterator(self, stream_arn: str, shard_id: str, after_sequence: str | None) -> str:
        """An iterator just after ``after_sequence``, or at the shard's trim horizon when ``None``."""

    def get_records(self, iterator: str, limit: int) -> RecordsPage:
        """At most ``limit`` records from ``iterator``; raises :class:`TrimmedDataAccess` / :class:`ExpiredIterator`."""


def record_from_wire(raw: dict[str, Any]) -> StreamRecord:
    """A record of a ``GetRecords`` answer as a :class:`StreamRecord`."""
    body = raw["dynamodb"]
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, (int, float)):
        created = dt.datetime.fromtimestamp(created, dt.UTC)
    elif isinstance(created, dt.datetime) and created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return StreamRecord(
        event_name=raw["eventName"],
        sequence_number=body["SequenceNumber"],
        keys=body.get("Keys") or {},
        new_image=body.get("NewImage") or None,
        old_image=body.get("OldImage") or None,
        created=created,
        user_identity=raw.get("userIdentity"),
        size_bytes=int(body.get("SizeBytes") or 0),
    )


_ERRORS = {
    "TrimmedDataAccessException": TrimmedDataAccess,
    "ExpiredIteratorException": ExpiredIterator,
    "ResourceNotFoundException": StreamNotFound,
}


def _translated(err: ClientError) -> Exception:
    code = err.response.get("Error", {}).get("Code", "")
    cls = _ERRORS.get(code)
    return cls(f"{code}: {err.response.get('Error', {}).get('Message', '')}") if cls else err


class Boto3StreamSource:
    """:class:`StreamSource` over boto3's ``dynamodbstreams`` client (retries are the client's)."""

    def __init__(self, streams_client: Any):
        self._client = streams_client

    def latest_stream_arn(self, table_name: str) -> str | None:
        streams: list[dict] = []
        kwargs: dict[str, Any] = {"TableName": table_name}
        while True:
            page = self._client.list_streams(**kwargs)
            streams += page.get("Streams", [])
            if not page.get("LastEvaluatedStreamArn"):
                break
            kwargs["ExclusiveStartStreamArn"] = page["LastEvaluatedStreamArn"]
        # Labels are creation timestamps; a disabled stream stays listed for 24 h beside the new one.
        for stream in sorted(streams, key=lambda s: s.get("StreamLabel", ""), reverse=True):
            status = self.describe_stream(stream["StreamArn"]).status
            if status in ("ENABLED", "ENABLING"):
                return stream["StreamArn"]
        return None

    def describe_stream(self, stream_arn: str) -> StreamDescription:
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": stream_arn}
        while True:
            try:
                desc = self._client.describe_stream(**kwargs)["StreamDescription"]
            except ClientError as err:
                raise _translated(err) from err
            for s in desc.get("Shards", []):
                seq = s.get("SequenceNumberRange", {})
                shards.append(
                    Shard(
                        shard_id=s["ShardId"],
                        parent_shard_id=s.get("ParentShardId"),
                        starting_sequence=seq.get("StartingSequenceNumber"),
                        ending_sequence=seq.get("EndingSequenceNumber"),
                    )
                )
            if not desc.get("LastEvaluatedShardId"):
                break
            kwargs["ExclusiveStartShardId"] = desc["LastEvaluatedShardId"]
        keys = sorted(desc.get("KeySchema", []), key=lambda k: k["KeyType"] != "HASH")
        created = desc.get("CreationRequestDateTime")
        if isinstance(created, dt.datetime) and created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        return StreamDescription(
            stream_arn=desc["StreamArn"],
            status=desc.get("StreamStatus", "ENABLED"),
            view_type=desc.get("StreamViewType"),
            key_names=tuple(k["AttributeName"] for k in keys),
            created=created,
            shards=tuple(shards),
        )

    def get_shard_iterator(self, stream_arn: str, shard_id: str, after_sequence: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id}
        if after_sequence is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after_sequence)
        try:
            return self._client.get_shard_iterator(**kwargs)["ShardIterator"]
        except ClientError as err:
            raise _translated(err) from err

    def get_records(self, iterator: str, limit: int) -> RecordsPage:
        try:
            answer = self._client.get_records(ShardIterator=iterator, Limit=limit)
        except ClientError as err:
            raise _translated(err) from err
        return RecordsPage(
            records=tuple(record_from_wire(r) for r in answer.get("Records", [])),
            next_iterator=answer.get("NextShardIterator"),
        )
