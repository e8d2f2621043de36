"""Export a DynamoDB table with a throttled, resumable parallel Scan into the native-export layout.

Each segment is scanned in its own thread with eventually consistent reads; its items are written
as ``{"Item": {...}}`` DynamoDB-JSON lines (binary values base64, as DynamoDB's own export does)
into gzip data files. Every page's read units (``ReturnConsumedCapacity``, or an estimate from the
item sizes where the reported figure is missing or fake) go through one shared limiter, so the
whole scan stays within its budget: a fraction of the provisioned read capacity, or a fixed
RCU/s on on-demand tables.

Every ``checkpoint_seconds`` a segment closes its data file and records it, with where to continue,
in a checkpoint (see :mod:`offload_assets.export.scan_checkpoints`); a later run of the same partition
continues from there. The manifests are written last, so a run that dies leaves an incomplete
export nobody reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from offload_assets.export.errors import ExportDeadline, ExportOwnershipError, ExportTimeoutError
from offload_assets.export.export_lease import (
    DEFAULT_HEARTBEAT_SECONDS,
    ExportLease,
    LeaseKeeper,
    create_owned_plan,
    new_owner_id,
    take_over_unfinished_export,
)
from offload_assets.export.layout import (
    DataFileWriter,
    ExportManifest,
    export_dir_key,
    new_export_id,
    utc_iso,
    write_export_manifests,
)
from offload_assets.export.rate_limiter import (
    PageCapacity,
    ReadCapacityLimiter,
    estimate_read_units,
    page_limit_for,
    read_rate_limit,
)
from offload_assets.export.scan_checkpoints import (
    ScanPlan,
    SegmentCheckpoint,
    delete_checkpoints,
    delete_unrecorded_data_files,
    find_resumable_scan,
    read_segment_checkpoints,
    table_created_text,
    write_segment_checkpoint,
)
from offload_assets.table_spec import PARTITION_COLUMN

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_dynamodb.type_defs import TableDescriptionTypeDef
    from types_boto3_s3 import S3Client

__all__ = ["ExportTimeoutError", "ScanExportResult", "ScanProgress", "export_table_scan", "encode_export_line"]

SEGMENT_TARGET_BYTES = 2 * 1024**3  # one segment per ~2 GiB of table, as AWS Glue's DynamoDB reader does
MAX_SEGMENTS = 64
MAX_WORKERS = 16
DEFAULT_CHECKPOINT_SECONDS = 120.0
THROTTLE_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})
MAX_THROTTLE_RETRIES = 20


@dataclass(frozen=True)
class ScanProgress:
    """A progress report, sent after every page."""

    items: int  # items in the export so far, including those a resumed run had already written
    consumed_capacity: float  # read units consumed by this run
    elapsed_seconds: float
    estimated_total_items: int  # DescribeTable's ItemCount (AWS refreshes it about every 6 hours)
    items_this_run: int = 0
    rate_limit: float | None = None
    page_units: float = 0.0
    at: float = 0.0  # time.monotonic() when the page arrived

    @property
    def items_per_second(self) -> float:
        return self.items_this_run / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def capacity_per_second(self) -> float:
        return self.consumed_capacity / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        left = self.estimated_total_items - self.items
        if left <= 0 or self.items_per_second <= 0:
            return None
        return left / self.items_per_second

    def describe(self, table_name: str) -> str:
        """One log line: items, read units and rate against the budget, items/s, ETA."""
        eta = "unknown" if self.eta_seconds is None else f"{self.eta_seconds / 60:,.1f} min"
        budget = f" (budget {self.rate_limit:,.1f})" if self.rate_limit else " (no budget)"
        return (
            f"{table_name}: {self.items:,}/~{self.estimated_total_items:,} items, {self.consumed_capacity:,.1f} RCU "
            f"consumed, {self.capacity_per_second:,.1f} RCU/s{budget}, {self.items_per_second:,.0f} items/s, ETA {eta}"
        )


@dataclass(frozen=True)
class ScanExportResult:
    manifest: ExportManifest
    items: int  # items in the export
    consumed_capacity: float  # read units this run consumed (reported, or estimated where they were fake)
    duration_seconds: float
    segments: int
    data_bytes: int
    items_scanned: int = 0  # items this run read (fewer than ``items`` when it resumed)
    resumed: bool = False
    rate_limit: float | None = None
    capacity_source: str = "reported"
    reported_capacity: float = 0.0
    estimated_capacity: float = 0.0
    throttled_requests: int = 0
    limiter_wait_seconds: float = 0.0
    removed_unrecorded_files: int = 0
    owner: str = ""  # the run id that owned (and finished) the export


def _json_default(value: Any) -> str:
    # botocore decodes B and BS values to bytes; the export format carries them as base64.
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} in an export line")


def encode_export_line(item: dict[str, Any]) -> str:
    """One native-export line for a low-level (typed) DynamoDB item."""
    return json.dumps({"Item": item}, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def choose_segment_count(table_size_bytes: int, item_count: int) -> int:
    # TableSizeBytes lags by hours on AWS and is 0 on emulators: fall back to ~1 KB per item.
    size = table_size_bytes or item_count * 1024
    return max(1, min(MAX_SEGMENTS, math.ceil(size / SEGMENT_TARGET_BYTES)))


class _Cancelled(Exception):
    """Another segment failed; this one stops at its next page."""


def _scan_page(
    dynamodb: DynamoDBClient,
    kwargs: dict[str, Any],
    limiter: ReadCapacityLimiter,
    deadline: ExportDeadline,
    counters: dict,
    lock: threading.Lock,
) -> dict[str, Any]:
    """One Scan call; throttling that outlives botocore's own retries pauses every segment and retries."""
    for attempt in range(MAX_THROTTLE_RETRIES + 1):
        try:
            return dynamodb.scan(**kwargs)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in THROTTLE_CODES or attempt == MAX_THROTTLE_RETRIES:
                raise
            delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
            with lock:
                counters["throttled"] += 1
            limiter.pause(delay)
            time.sleep(min(delay, max(0.0, deadline.remaining())))
            deadline.check()
    raise AssertionError("unreachable")


def _where(table_name: str, export_prefix: str, partition_key: str | None) -> str:
    partition = partition_key or next(
        (part.split("=", 1)[1] for part in export_prefix.split("/") if part.startswith(f"{PARTITION_COLUMN}=")),
        export_prefix,
    )
    return f"table {table_name!r}, partition {partition}"


@dataclass(frozen=True)
class ScanSettings:
    """How one scan export runs: everything :func:`export_table_scan` takes besides the clients."""

    table_name: str
    bucket: str
    export_prefix: str
    export_time: str | None = None  # ISO text (UTC); None: the scan's own start time, and no resuming
    total_segments: int | None = None
    read_capacity_fraction: float = 0.5
    on_demand_rcu_budget: float | None = None
    rate_limit: float | None = None
    capacity_source: str = "auto"
    timeout_seconds: float | None = None
    page_limit: int | None = None
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    resume: bool = True
    resume_lease_seconds: float | None = None
    max_workers: int = MAX_WORKERS
    put_kwargs: dict[str, Any] | None = None
    owner: str = ""  # this run's id in the export's lease
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    partition_key: str | None = None

    @property
    def lease_seconds(self) -> float:
        """How long a dead owner's heartbeat must have been still before its export is taken over."""
        if self.resume_lease_seconds is not None:
            return self.resume_lease_seconds
        return max(self.checkpoint_seconds + 60, 3 * self.heartbeat_seconds)

    @property
    def where(self) -> str:
        return _where(self.table_name, self.export_prefix, self.partition_key)


def export_table_scan(
    dynamodb: DynamoDBClient,
    s3: S3Client,
    *,
    table_name: str,
    bucket: str,
    export_prefix: str,
    export_time: str | dt.datetime | None = None,
    total_segments: int | None = None,
    read_capacity_fraction: float = 0.5,
    on_demand_rcu_budget: float | None = None,
    rate_limit: float | None = None,
    capacity_source: str = "auto",
    timeout_seconds: float | None = None,
    page_limit: int | None = None,
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    resume: bool = True,
    resume_lease_seconds: float | None = None,
    max_workers: int = MAX_WORKERS,
    put_kwargs: dict[str, Any] | None = None,
    on_progress: Callable[[ScanProgress], None] | None = None,
    owner: str | None = None,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    partition_key: str | None = None,
) -> ScanExportResult:
    """Scan ``table_name`` in parallel and write it to ``s3://bucket/export_prefix/AWSDynamoDB/<id>/``.

    The read budget is ``rate_limit`` RCU/s when given, else ``read_capacity_fraction`` of the
    provisioned read capacity, else (on-demand) ``on_demand_rcu_budget``, else unlimited.
    An incomplete export of the same table and export time under ``export_prefix`` is continued
    (``resume=False`` starts over); ``resume_lease_seconds`` (default ``checkpoint_seconds + 60``)
    is how long its owner's heartbeat must have been still before it is taken to be dead.

    The export has one owner at a time (:mod:`offload_assets.export.export_lease`): this run
    (``owner``, a generated id by default) renews its heartbeat every ``heartbeat_seconds``, takes
    over only a dead owner's unfinished export, and raises :class:`ExportOwnershipError` naming the
    table, the partition and the other run when it may not.

    The steps: :func:`plan_scan` (take over a dead owner's export or write a new owned plan),
    :func:`scan_segments` (one thread per segment, each a loop of :func:`_read_page` and
    :func:`_save_checkpoint`, while a :class:`LeaseKeeper` renews the heartbeat), :func:`finish_scan`
    (manifests last, then the checkpoints go).
    """
    settings = ScanSettings(
        table_name=table_name,
        bucket=bucket,
        export_prefix=export_prefix,
        export_time=utc_iso(export_time) if isinstance(export_time, dt.datetime) else export_time,
        total_segments=total_segments,
        read_capacity_fraction=read_capacity_fraction,
        on_demand_rcu_budget=on_demand_rcu_budget,
        rate_limit=rate_limit,
        capacity_source=capacity_source,
        timeout_seconds=timeout_seconds,
        page_limit=page_limit,
        checkpoint_seconds=checkpoint_seconds,
        resume=resume,
        resume_lease_seconds=resume_lease_seconds,
        max_workers=max_workers,
        put_kwargs=put_kwargs,
        owner=owner or new_owner_id(),
        heartbeat_seconds=heartbeat_seconds,
        partition_key=partition_key,
    )
    deadline = ExportDeadline(timeout_seconds, what=f"scan export of DynamoDB table {table_name!r}")
    started = time.monotonic()
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    start = plan_scan(s3, settings, table)
    run = _ScanRun(dynamodb, s3, settings, table, start, deadline, started, on_progress)
    finished = _scan_as_owner(run)
    return finish_scan(run, finished)


def _scan_as_owner(run: _ScanRun) -> list[SegmentCheckpoint]:
    """:func:`scan_segments` while a :class:`LeaseKeeper` renews this run's heartbeat; the lease is
    renewed once more (and must still be ours) before the export may be finished, and released on
    failure so a re-run takes over at once."""
    settings = run.settings
    keeper = LeaseKeeper(
        run.s3,
        bucket=settings.bucket,
        export_prefix=settings.export_prefix,
        lease=run.start.lease,
        on_lost=run.cancelled.set,
        put_kwargs=settings.put_kwargs,
    )

    def lost_lease() -> ExportOwnershipError:
        return ExportOwnershipError(
            f"{settings.where}: run {settings.owner} lost scan export {run.start.plan.export_id} under "
            f"s3://{settings.bucket}/{settings.export_prefix}/ to another run (its heartbeat was late and the "
            "other run took the export over); this run stopped"
        )

    try:
        with keeper:
            try:
                finished = scan_segments(run)
            except BaseException:
                if keeper.lost.is_set():
                    raise lost_lease() from None
                raise
        run.deadline.check(_KEPT)
        if not keeper.renew(strict=True):  # still the owner right before finishing it
            raise lost_lease()
    except BaseException:
        if not keeper.lost.is_set():
            try:  # let a re-run take over at once instead of waiting the lease out
                keeper.renew(released=True)
            except Exception:
                pass
        raise
    return finished


_KEPT = "Its checkpoints are kept: re-running the partition continues where it stopped"


# --------------------------------------------------------------------------- step 1: plan


@dataclass(frozen=True)
class ScanStart:
    """The export a run writes: a dead run's plan and checkpoints to continue, or a new plan."""

    plan: ScanPlan
    checkpoints: dict[int, SegmentCheckpoint]
    lease: ExportLease
    resumed: bool
    removed_unrecorded_files: int = 0


def plan_scan(s3: S3Client, settings: ScanSettings, table: TableDescriptionTypeDef) -> ScanStart:
    """Continue the incomplete export of this table and export time nobody is writing, else write a new plan."""
    found = None
    if settings.resume and settings.export_time:  # without an export time there is no partition to match a dead run to
        found = find_resumable_scan(
            s3,
            bucket=settings.bucket,
            export_prefix=settings.export_prefix,
            table=table,
            export_time=settings.export_time,
            total_segments=settings.total_segments,
        )
    owner, where = settings.owner, settings.where
    if found is not None:
        lease = take_over_unfinished_export(
            s3,
            bucket=settings.bucket,
            export_prefix=settings.export_prefix,
            export_id=found.plan.export_id,
            owner=owner,
            lease_seconds=settings.lease_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            where=where,
            put_kwargs=settings.put_kwargs,
        )
        # Only the owner reads the checkpoints it continues from and removes what they do not name.
        plan = lease.plan
        checkpoints = read_segment_checkpoints(
            s3, bucket=settings.bucket, export_prefix=settings.export_prefix, export_id=plan.export_id
        )
        recorded = {f.key for cp in checkpoints.values() for f in cp.files}
        removed = delete_unrecorded_data_files(
            s3,
            bucket=settings.bucket,
            export_prefix=settings.export_prefix,
            export_id=plan.export_id,
            recorded=recorded,
        )
        return ScanStart(plan, checkpoints, lease, resumed=True, removed_unrecorded_files=len(removed))
    start_time = utc_iso()
    plan = ScanPlan(
        export_id=new_export_id(),
        table_name=settings.table_name,
        table_arn=table.get("TableArn"),
        table_created=table_created_text(table),
        total_segments=settings.total_segments
        or choose_segment_count(table.get("TableSizeBytes", 0), table.get("ItemCount", 0)),
        export_time=settings.export_time or start_time,
        start_time=start_time,
    )
    lease = create_owned_plan(
        s3,
        bucket=settings.bucket,
        export_prefix=settings.export_prefix,
        plan=plan,
        owner=owner,
        heartbeat_seconds=settings.heartbeat_seconds,
        put_kwargs=settings.put_kwargs,
    )
    return ScanStart(plan, {}, lease, resumed=False)


# --------------------------------------------------------------------------- step 2: scan the segments


class _ScanRun:
    """What the segments of one run share: clients, the read budget and limiter, counters, cancellation."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        s3: S3Client,
        settings: ScanSettings,
        table: TableDescriptionTypeDef,
        start: ScanStart,
        deadline: ExportDeadline,
        started: float,
        on_progress: Callable[[ScanProgress], None] | None,
    ) -> None:
        self.dynamodb, self.s3, self.settings, self.table, self.start = dynamodb, s3, settings, table, start
        self.deadline, self.started, self.on_progress = deadline, started, on_progress
        self.segments = start.plan.total_segments
        self.data_prefix = f"{export_dir_key(settings.export_prefix, start.plan.export_id)}/data"
        self.budget = (
            settings.rate_limit
            if settings.rate_limit is not None
            else read_rate_limit(table, settings.read_capacity_fraction, settings.on_demand_rcu_budget)
        )
        self.limiter = ReadCapacityLimiter(self.budget)
        self.capacity = PageCapacity(settings.capacity_source)
        self.resumed_items = sum(cp.items for cp in start.checkpoints.values())
        self.estimated_total = int(table.get("ItemCount") or 0)
        self.counters = {"items": 0, "capacity": 0.0, "throttled": 0}
        self.lock = threading.Lock()
        self.cancelled = threading.Event()

    def count_page(self, items: int, units: float, now: float) -> ScanProgress:
        """Add one page to the run's totals; the progress report for it."""
        with self.lock:
            self.counters["items"] += items
            self.counters["capacity"] += units
            return ScanProgress(
                items=self.resumed_items + self.counters["items"],
                consumed_capacity=self.counters["capacity"],
                elapsed_seconds=now - self.started,
                estimated_total_items=self.estimated_total,
                items_this_run=self.counters["items"],
                rate_limit=self.budget,
                page_units=units,
                at=now,
            )


def scan_segments(run: _ScanRun) -> list[SegmentCheckpoint]:
    """Every segment in its own thread; the first failure cancels the others and is raised."""
    with tempfile.TemporaryDirectory(prefix="offload-scan-") as tmpdir:
        workers = max(1, min(run.segments, run.settings.max_workers))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan-segment") as pool:
            futures = [pool.submit(_scan_segment, run, seg, tmpdir) for seg in range(run.segments)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in done if f.exception() is not None]
            if errors:
                run.cancelled.set()
                wait(futures)
                raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
            return sorted((f.result() for f in futures), key=lambda cp: cp.segment)


@dataclass
class _PageSizing:
    """What a segment learnt of its pages' cost, to size the next page and its read-unit reservation."""

    units_per_item: float | None = None
    last_units: float = 0.5


def _scan_segment(run: _ScanRun, segment: int, tmpdir: str) -> SegmentCheckpoint:
    """Scan one segment from its checkpoint to its end, saving a checkpoint every ``checkpoint_seconds``."""
    cp = run.start.checkpoints.get(segment) or SegmentCheckpoint(segment=segment)
    if cp.done:
        return cp
    writer = DataFileWriter(
        run.s3,
        bucket=run.settings.bucket,
        data_prefix=run.data_prefix,
        tmpdir=tmpdir,
        name_prefix=f"s{segment:05d}-",
        put_kwargs=run.settings.put_kwargs,
    )
    kwargs: dict[str, Any] = {
        "TableName": run.settings.table_name,
        "Segment": segment,
        "TotalSegments": run.segments,
        "ConsistentRead": False,
        "ReturnConsumedCapacity": "TOTAL",
    }
    if cp.exclusive_start_key:
        kwargs["ExclusiveStartKey"] = cp.exclusive_start_key
    sizing = _PageSizing()
    last_checkpoint = time.monotonic()
    pending_items, pending_units = 0, 0.0
    try:
        while True:
            if run.cancelled.is_set():
                raise _Cancelled()
            run.deadline.check(_KEPT)
            page, units = _read_page(run, kwargs, sizing)
            items = page.get("Items", [])
            for item in items:
                writer.write_line(encode_export_line(item).encode("utf-8"))
            pending_items += len(items)
            pending_units += units
            now = time.monotonic()
            progress = run.count_page(len(items), units, now)
            if run.on_progress:
                run.on_progress(progress)
            last_key = page.get("LastEvaluatedKey")
            if last_key is None or writer.full or now - last_checkpoint >= run.settings.checkpoint_seconds:
                _save_checkpoint(run, writer, cp, last_key, pending_items, pending_units)
                pending_items, pending_units = 0, 0.0
                last_checkpoint = time.monotonic()
            if last_key is None:
                return cp
            kwargs["ExclusiveStartKey"] = last_key
    finally:
        writer.discard()


def _read_page(run: _ScanRun, kwargs: dict[str, Any], sizing: _PageSizing) -> tuple[dict[str, Any], float]:
    """One page within the read budget: reserve its expected units, scan, settle with what it really cost."""
    limit = run.settings.page_limit or page_limit_for(run.budget, run.segments, sizing.units_per_item)
    if limit:
        kwargs["Limit"] = limit
    expected = max(0.5, sizing.units_per_item * limit) if (sizing.units_per_item and limit) else sizing.last_units
    run.limiter.acquire(expected)
    page = _scan_page(run.dynamodb, kwargs, run.limiter, run.deadline, run.counters, run.lock)
    items = page.get("Items", [])
    estimated = estimate_read_units(items)
    reported = (page.get("ConsumedCapacity") or {}).get("CapacityUnits")
    units = run.capacity.units(None if reported is None else float(reported), estimated)
    run.limiter.settle(units, expected)
    sizing.last_units = units
    if items:
        sizing.units_per_item = estimated / len(items)
    return page, units


def _save_checkpoint(
    run: _ScanRun,
    writer: DataFileWriter,
    cp: SegmentCheckpoint,
    last_key: dict[str, Any] | None,
    items: int,
    units: float,
) -> None:
    """Close the segment's data file and record it, with where to continue, in the segment's checkpoint."""
    uploaded = writer.roll()
    if uploaded:
        cp.files.append(uploaded)
    cp.exclusive_start_key, cp.done = last_key, last_key is None
    cp.items += items
    cp.consumed_capacity += units
    if run.cancelled.is_set():  # the lease was lost: the new owner decides what is recorded
        raise _Cancelled()
    write_segment_checkpoint(
        run.s3,
        bucket=run.settings.bucket,
        export_prefix=run.settings.export_prefix,
        export_id=run.start.plan.export_id,
        checkpoint=cp,
        put_kwargs=run.settings.put_kwargs,
    )


# --------------------------------------------------------------------------- step 3: finish


def finish_scan(run: _ScanRun, finished: list[SegmentCheckpoint]) -> ScanExportResult:
    """Write the manifests (last: only now is the export complete), then delete the checkpoints."""
    settings, plan = run.settings, run.start.plan
    files = [f for cp in finished for f in cp.files]
    manifest = write_export_manifests(
        run.s3,
        bucket=settings.bucket,
        export_prefix=settings.export_prefix,
        export_id=plan.export_id,
        data_files=files,
        table_arn=run.table.get("TableArn"),
        export_time=plan.export_time,
        start_time=plan.start_time,
        extra={
            "exportMethod": "scan",
            "totalSegments": run.segments,
            "consumedReadCapacityUnits": sum(cp.consumed_capacity for cp in finished),
            "readCapacityBudget": run.budget,
            "resumed": run.start.resumed,
        },
        put_kwargs=settings.put_kwargs,
    )
    delete_checkpoints(run.s3, bucket=settings.bucket, export_prefix=settings.export_prefix, export_id=plan.export_id)
    return ScanExportResult(
        manifest=manifest,
        items=manifest.item_count,
        consumed_capacity=run.counters["capacity"],
        duration_seconds=time.monotonic() - run.started,
        segments=run.segments,
        data_bytes=sum(f.size_bytes or 0 for f in files),
        items_scanned=run.counters["items"],
        resumed=run.start.resumed,
        rate_limit=run.budget,
        capacity_source=run.capacity.using,
        reported_capacity=run.capacity.reported_total,
        estimated_capacity=run.capacity.estimated_total,
        throttled_requests=run.counters["throttled"],
        limiter_wait_seconds=run.limiter.waited_seconds,
        removed_unrecorded_files=run.start.removed_unrecorded_files,
        owner=run.settings.owner,
    )
