"""One change-capture step: read what waits in the stream, apply it with its position, in ONE commit.

Exactly once comes from where the position lives: in the summary of the very snapshot that holds
the changes (``offload.cdc.position``). A crash after reading and before the commit leaves the
previous snapshot and position current, so the next step re-reads the same records; records
applied twice would do no harm anyway (upserts and deletes by key, last change per key wins).

Where to start comes from the table's current snapshot:

* a change-capture commit: its position;
* a snapshot written from an export (the nightly partition, or a re-bootstrap) at time T: every
  shard from its trim horizon, skipping records created before T minus the overlap;
* a snapshot with neither (maintenance): the newest ancestor that has one.

Lost continuity raises :class:`~offload_assets.cdc.reader.ContinuityLost`; the caller reports it
and re-bootstraps from a new export (:func:`bootstrap_properties` says what that commit records).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from offload_assets.cdc.changes import ChangeBatch, convert_images, reduce_records
from offload_assets.cdc.positions import CapturePosition
from offload_assets.cdc.reader import ContinuityLost, ReadBatch, oldest_waiting, read_waiting
from offload_assets.cdc.source import StreamSource

POSITION_PROPERTY = "offload.cdc.position"
COMMITTED_AT_PROPERTY = "offload.cdc.committed_at"
#: Summary properties a snapshot written from an export carries (issue 17's nightly path and ours).
EXPORT_TIME_PROPERTIES = (
    "offload-assets.export-time",  # iceberg/publish.py's partition commits
    "offload.export_time",
    "offload.export-time",
    "offload.cdc.snapshot_time",
)
DEFAULT_OVERLAP = dt.timedelta(minutes=5)


class ChangeTarget(Protocol):
    """The table changes are applied to (an Iceberg table: :class:`offload_assets.cdc.iceberg_target.IcebergTarget`)."""

    def summaries(self) -> list[dict[str, str]]:
        """Snapshot summaries from the current snapshot back through its ancestors ([] before the first)."""

    def arrow_schema(self) -> pa.Schema | None:
        """The table's columns as the converter knows them (field metadata: attribute names and types)."""

    def key_columns(self) -> tuple[str, ...]: ...

    def commit(self, upserts: pa.Table | None, deletes: pa.Table | None, properties: dict[str, str]) -> dict:
        """Apply both in ONE atomic commit whose snapshot summary carries ``properties``; returns counts.

        Raises :class:`CommitConflict` when another writer committed first (nothing of ours landed)."""

    def load_full_export(self, items: list[dict], properties: dict[str, str]) -> dict:
        """Make the table exactly ``items`` (a full export) in ONE commit carrying ``properties`` (a (re-)bootstrap)."""


class CommitConflict(RuntimeError):
    """Another writer (the nightly partition, a second capture) committed first: re-read and redo the step."""


class NotBootstrapped(RuntimeError):
    """The table has no snapshot from an export yet: run its partition (or ``cdc bootstrap``) first."""


@dataclass(frozen=True)
class CaptureSettings:
    table_name: str  # the DynamoDB table
    key_names: tuple[str, ...]  # its key attributes, hash key first
    max_records: int = 10_000
    page_limit: int = 1000
    overlap: dt.timedelta = DEFAULT_OVERLAP


@dataclass(frozen=True)
class CaptureStep:
    """What one step read and applied (the facts a Dagster run records)."""

    started_from: str  # "position" | "snapshot"
    position: CapturePosition
    batch: ChangeBatch
    read: ReadBatch
    applied: dict
    lag_seconds: float  # age of the oldest change still waiting after the commit (0: caught up)
    committed: bool

    def facts(self) -> dict:
        return {
            **self.batch.facts(),
            "shards_read": self.read.shards_read,
            "shards": self.read.shards_total,
            "iterators_renewed": self.read.iterators_renewed,
            "overlap_skipped": self.read.skipped_before_since,
            "caught_up": self.read.caught_up,
            "lag_seconds": round(self.lag_seconds, 3),
            "committed": self.committed,
            **{f"applied_{k}": v for k, v in self.applied.items()},
        }


def _parse_time(text: str) -> dt.datetime:
    instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def start_position(
    source: StreamSource, target: ChangeTarget, settings: CaptureSettings
) -> tuple[CapturePosition, str]:
    """Where the next step starts, and from what ("position" or "snapshot"); see the module docstring."""
    for summary in target.summaries():
        if POSITION_PROPERTY in summary:
            return CapturePosition.from_json(summary[POSITION_PROPERTY]), "position"
        for name in EXPORT_TIME_PROPERTIES:
            if summary.get(name):
                return snapshot_position(source, settings, _parse_time(summary[name])), "snapshot"
    raise NotBootstrapped(
        f"{settings.table_name}: the Iceberg table has no snapshot from an export yet; "
        "run a partition (or `offload-assets cdc run` after the demo) first"
    )


def snapshot_position(source: StreamSource, settings: CaptureSettings, snapshot_time: dt.datetime) -> CapturePosition:
    """The position of a table whose content is the item state at ``snapshot_time``."""
    arn = source.latest_stream_arn(settings.table_name)
    if arn is None:
        raise ContinuityLost("stream_off", f"{settings.table_name}: the table's stream is off")
    created = source.describe_stream(arn).created
    if created is not None and created > snapshot_time:
        raise ContinuityLost(
            "new_stream",
            f"{settings.table_name}: the stream {arn} was created at {created.isoformat()}, after the table's "
            f"snapshot of {snapshot_time.isoformat()}: the changes in between are in no stream",
        )
    return CapturePosition(stream_arn=arn, since=snapshot_time - settings.overlap)


def bootstrap_properties(
    source: StreamSource, settings: CaptureSettings, snapshot_time: dt.datetime, reason: str = "bootstrap"
) -> dict[str, str]:
    """Summary properties for a commit of a full export taken at ``snapshot_time`` (a (re-)bootstrap)."""
    position = snapshot_position(source, settings, snapshot_time)
    return {
        POSITION_PROPERTY: position.to_json(),
        "offload.cdc.snapshot_time": snapshot_time.isoformat(),
        "offload.cdc.bootstrap_reason": reason,
    }


def delete_keys(batch: ChangeBatch, schema: pa.Schema | None, key_columns: tuple[str, ...]) -> pa.Table | None:
    """The deleted keys as a table of the key columns, converted like any item."""
    if not batch.deletes:
        return None
    return convert_images(batch.deletes.values(), schema).select(list(key_columns))


def capture_step(
    source: StreamSource,
    target: ChangeTarget,
    settings: CaptureSettings,
    *,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    before_commit: Callable[[ReadBatch], None] | None = None,
) -> CaptureStep:
    """Read up to ``settings.max_records`` waiting records and commit them with the new position.

    ``before_commit`` runs between the read and the commit (tests kill the process there).
    Nothing waiting: no commit (the position would not move).
    """
    position, started_from = start_position(source, target, settings)
    read = read_waiting(
        source, settings.table_name, position, max_records=settings.max_records, page_limit=settings.page_limit
    )
    batch = reduce_records(read.records, settings.key_names)
    if before_commit is not None:
        before_commit(read)
    moved = read.position != position or started_from == "snapshot"
    applied: dict = {}
    if batch.upserts or batch.deletes or moved:
        schema = target.arrow_schema()
        upserts = convert_images(batch.upserts.values(), schema) if batch.upserts else None
        deletes = delete_keys(batch, schema, target.key_columns())
        properties = {
            POSITION_PROPERTY: read.position.to_json(),
            COMMITTED_AT_PROPERTY: now().isoformat(),
            **{f"offload.cdc.{k}": str(v) for k, v in batch.facts().items()},
        }
        applied = target.commit(upserts, deletes, properties)
    oldest = None if read.caught_up else oldest_waiting(source, settings.table_name, read.position)
    lag = max((now() - oldest).total_seconds(), 0.0) if oldest else 0.0
    return CaptureStep(
        started_from=started_from,
        position=read.position,
        batch=batch,
        read=read,
        applied=applied,
        lag_seconds=lag,
        committed=bool(batch.upserts or batch.deletes or moved),
    )


def waiting_lag(
    source: StreamSource,
    target: ChangeTarget,
    settings: CaptureSettings,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> float | None:
    """Age in seconds of the oldest change not yet applied (``None``: nothing waits). Cheap: one record per shard."""
    position, _ = start_position(source, target, settings)
    oldest = oldest_waiting(source, settings.table_name, position)
    return None if oldest is None else max((now() - oldest).total_seconds(), 0.0)


def capture_until_caught_up(
    source: StreamSource, target: ChangeTarget, settings: CaptureSettings, *, max_steps: int = 100
) -> list[CaptureStep]:
    """Steps until nothing waits (or ``max_steps``): what ``cdc run`` does."""
    steps = []
    for _ in range(max_steps):
        step = capture_step(source, target, settings)
        steps.append(step)
        if step.read.caught_up:
            break
    return steps
