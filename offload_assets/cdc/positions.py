"""Where change capture stands in a stream, and the order shards must be read in.

A :class:`CapturePosition` is what is committed with the data (as JSON in the Iceberg snapshot's
summary): the stream ARN, per shard the last sequence number applied, the closed shards read to
their end, and ``since``, the instant the table's snapshot was taken minus the overlap (records
older than it are already in the table; a bootstrap reads shards from their trim horizon and skips
them). Applying a record twice is harmless (upserts and deletes by key), so the overlap is safe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson

from offload_assets.cdc.source import Shard


@dataclass(frozen=True)
class CapturePosition:
    stream_arn: str
    since: dt.datetime | None = None
    shards: dict[str, str] = field(default_factory=dict)  # shard id -> last applied sequence number
    finished: frozenset[str] = frozenset()  # closed shards read to their end

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "stream_arn": self.stream_arn,
                "since": self.since.isoformat() if self.since else None,
                "shards": dict(sorted(self.shards.items())),
                "finished": sorted(self.finished),
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> CapturePosition:
        doc = orjson.loads(text)
        since = doc.get("since")
        return cls(
            stream_arn=doc["stream_arn"],
            since=dt.datetime.fromisoformat(since) if since else None,
            shards=dict(doc.get("shards") or {}),
            finished=frozenset(doc.get("finished") or ()),
        )

    def advanced(self, shard_id: str, sequence_number: str | None, finished: bool) -> CapturePosition:
        shards = dict(self.shards)
        if sequence_number is not None:
            shards[shard_id] = sequence_number
        return replace(self, shards=shards, finished=self.finished | ({shard_id} if finished else set()))

    def pruned(self, described: Iterable[Shard]) -> CapturePosition:
        """Forget shards the stream no longer lists, except parents of listed shards (lineage proof)."""
        described = list(described)
        keep = {s.shard_id for s in described} | {s.parent_shard_id for s in described if s.parent_shard_id}
        return replace(
            self,
            shards={k: v for k, v in self.shards.items() if k in keep},
            finished=frozenset(k for k in self.finished if k in keep),
        )


def lineage_order(shards: Iterable[Shard]) -> list[Shard]:
    """Shards with every parent before its children; siblings and roots by starting sequence."""
    shards = list(shards)
    by_id = {s.shard_id: s for s in shards}
    children: dict[str | None, list[Shard]] = {}
    for s in shards:
        parent = s.parent_shard_id if s.parent_shard_id in by_id else None
        children.setdefault(parent, []).append(s)

    def start(s: Shard) -> int:
        return int(s.starting_sequence) if s.starting_sequence else 0

    ordered: list[Shard] = []
    frontier = sorted(children.get(None, []), key=start)
    while frontier:  # breadth first: a whole generation before the next, each parent before its children
        ordered += frontier
        frontier = sorted((c for p in frontier for c in children.get(p.shard_id, [])), key=start)
    return ordered
