"""Apply everything waiting in the stream: steps until caught up, conflicts retried, gaps re-bootstrapped.

What ``offload-assets cdc run`` and the Dagster change-capture asset both do:

* capture steps (:func:`~offload_assets.cdc.capture.capture_step`) until the stream is read to its
  end, each one commit of changes + position;
* a commit that loses the optimistic race to another writer (the nightly partition, a second
  capture) raises :class:`~offload_assets.cdc.capture.CommitConflict`: nothing of ours landed, so
  the step is redone from the table's new current snapshot (which may be the nightly snapshot:
  its export time then says where to restart). Retried with backoff, never dropped;
* lost continuity (:class:`~offload_assets.cdc.reader.ContinuityLost`: trimmed records, iterators
  that keep expiring, a re-enabled stream) and a table never bootstrapped are answered with a full
  snapshot from ``take_snapshot`` (a new native export), loaded as the table's new state with the
  position of its export time minus the overlap. The gap is recorded, never silently skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from offload_assets.cdc.capture import (
    CaptureSettings,
    CaptureStep,
    ChangeTarget,
    CommitConflict,
    NotBootstrapped,
    bootstrap_properties,
    capture_step,
)
from offload_assets.cdc.reader import ContinuityLost
from offload_assets.cdc.source import StreamSource
from offload_assets.iceberg.publish import commit_retrying


@dataclass(frozen=True)
class FullSnapshot:
    """The whole table at ``taken_at`` (a native export), as DynamoDB-JSON items."""

    items: list[dict]
    taken_at: dt.datetime
    origin: str  # e.g. "native export 0170...", shown in the run's metadata


@dataclass(frozen=True)
class Rebootstrap:
    reason: str  # bootstrap | trimmed | expired_iterator | new_stream | stream_off | unread_parent
    message: str
    origin: str
    items: int
    counts: dict


@dataclass
class CaptureRun:
    """One run's facts: its steps, the gaps it found and the re-bootstraps that closed them."""

    steps: list[CaptureStep] = field(default_factory=list)
    rebootstraps: list[Rebootstrap] = field(default_factory=list)
    conflicts_retried: int = 0

    @property
    def continuity_lost(self) -> list[Rebootstrap]:
        return [r for r in self.rebootstraps if r.reason != "bootstrap"]

    @property
    def caught_up(self) -> bool:
        return bool(self.steps) and self.steps[-1].read.caught_up

    def facts(self) -> dict:
        total = {k: 0 for k in ("records", "inserts", "updates", "deletes", "ttl_deletes")}
        for step in self.steps:
            for k in total:
                total[k] += step.batch.facts()[k]
        last = self.steps[-1] if self.steps else None
        return {
            "records_read": total["records"],
            "inserts": total["inserts"],
            "updates": total["updates"],
            "deletes": total["deletes"],
            "ttl_deletes": total["ttl_deletes"],
            "commits": sum(s.committed for s in self.steps),
            "shards": last.read.shards_total if last else 0,
            "shards_read": sum(s.read.shards_read for s in self.steps),
            "iterators_renewed": sum(s.read.iterators_renewed for s in self.steps),
            "lag_seconds": round(last.lag_seconds, 3) if last else 0.0,
            "caught_up": self.caught_up,
            "conflicts_retried": self.conflicts_retried,
            "rebootstraps": len(self.rebootstraps),
            "continuity_lost": [f"{r.reason}: {r.message}" for r in self.continuity_lost],
        }


def rebootstrap(
    source: StreamSource, target: ChangeTarget, settings: CaptureSettings, snapshot: FullSnapshot, reason: str
) -> dict:
    """Load ``snapshot`` as the table's state, with the position of its export time (minus the overlap)."""
    properties = bootstrap_properties(source, settings, snapshot.taken_at, reason)
    return target.load_full_export(snapshot.items, properties)


def apply_waiting(
    source: StreamSource,
    target: ChangeTarget,
    settings: CaptureSettings,
    *,
    take_snapshot: Callable[[], FullSnapshot],
    max_steps: int = 100,
    max_rebootstraps: int = 2,
    conflict_attempts: int = 8,
    on_step: Callable[[CaptureStep], None] | None = None,
    before_commit: Callable | None = None,
) -> CaptureRun:
    """Steps until caught up (or ``max_steps``); see the module docstring for conflicts and gaps."""
    run = CaptureRun()

    def before_retry(_state) -> None:
        run.conflicts_retried += 1

    retrying = commit_retrying((CommitConflict,), conflict_attempts, before_sleep=before_retry)
    while len(run.steps) < max_steps:
        try:
            step = retrying(capture_step, source, target, settings, before_commit=before_commit)
        except (ContinuityLost, NotBootstrapped) as gap:
            if len(run.rebootstraps) >= max_rebootstraps:
                raise
            reason = gap.reason if isinstance(gap, ContinuityLost) else "bootstrap"
            snapshot = take_snapshot()
            counts = retrying(rebootstrap, source, target, settings, snapshot, reason)
            run.rebootstraps.append(Rebootstrap(reason, str(gap), snapshot.origin, len(snapshot.items), counts))
            continue
        run.steps.append(step)
        if on_step is not None:
            on_step(step)
        if step.read.caught_up:
            break
    return run
