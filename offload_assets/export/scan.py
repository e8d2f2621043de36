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
from typing import Any

from botocore.exceptions import ClientError

from offload_assets.export.errors import ExportDeadline, ExportOwnershipError, ExportTimeoutError
from offload_assets.export.export_lease import (
    DEFAULT_HEARTBEAT_SECONDS,
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
    dynamodb: Any,
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


def export_table_scan(
    dynamodb: Any,
    s3: Any,
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
    """
    deadline = ExportDeadline(timeout_seconds, what=f"scan export of DynamoDB table {table_name!r}")
    started = time.monotonic()
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    if isinstance(export_time, dt.datetime):
        export_time = utc_iso(export_time)
    found = None
    if resume and export_time:  # without an export time there is no partition to match a dead run to
        found = find_resumable_scan(
            s3,
            bucket=bucket,
            export_prefix=export_prefix,
            table=table,
            export_time=export_time,
            total_segments=total_segments,
        )
    owner = owner or new_owner_id()
    where = _where(table_name, export_prefix, partition_key)
    removed: list[str] = []
    if found is not None:
        lease_seconds = (
            max(checkpoint_seconds + 60, 3 * heartbeat_seconds)
            if resume_lease_seconds is None
            else resume_lease_seconds
        )
        lease = take_over_unfinished_export(
            s3,
            bucket=bucket,
            export_prefix=export_prefix,
            export_id=found.plan.export_id,
            owner=owner,
            lease_seconds=lease_seconds,
            heartbeat_seconds=heartbeat_seconds,
            where=where,
            put_kwargs=put_kwargs,
        )
        # Only the owner reads the checkpoints it continues from and removes what they do not name.
        plan = lease.plan
        checkpoints = read_segment_checkpoints(s3, bucket=bucket, export_prefix=export_prefix, export_id=plan.export_id)
        recorded = {f.key for cp in checkpoints.values() for f in cp.files}
        removed = delete_unrecorded_data_files(
            s3, bucket=bucket, export_prefix=export_prefix, export_id=plan.export_id, recorded=recorded
        )
    else:
        start_time = utc_iso()
        plan = ScanPlan(
            export_id=new_export_id(),
            table_name=table_name,
            table_arn=table.get("TableArn"),
            table_created=table_created_text(table),
            total_segments=total_segments
            or choose_segment_count(table.get("TableSizeBytes", 0), table.get("ItemCount", 0)),
            export_time=export_time or start_time,
            start_time=start_time,
        )
        lease = create_owned_plan(
            s3,
            bucket=bucket,
            export_prefix=export_prefix,
            plan=plan,
            owner=owner,
            heartbeat_seconds=heartbeat_seconds,
            put_kwargs=put_kwargs,
        )
        checkpoints = {}
    export_id, segments = plan.export_id, plan.total_segments
    data_prefix = f"{export_dir_key(export_prefix, export_id)}/data"
    budget = (
        rate_limit if rate_limit is not None else read_rate_limit(table, read_capacity_fraction, on_demand_rcu_budget)
    )
    limiter = ReadCapacityLimiter(budget)
    capacity = PageCapacity(capacity_source)
    resumed_items = sum(cp.items for cp in checkpoints.values())
    counters = {"items": 0, "capacity": 0.0, "throttled": 0}
    lock = threading.Lock()
    cancelled = threading.Event()
    estimated_total = int(table.get("ItemCount") or 0)

    def scan_segment(segment: int, tmpdir: str) -> SegmentCheckpoint:
        cp = checkpoints.get(segment) or SegmentCheckpoint(segment=segment)
        if cp.done:
            return cp
        writer = DataFileWriter(
            s3,
            bucket=bucket,
            data_prefix=data_prefix,
            tmpdir=tmpdir,
            name_prefix=f"s{segment:05d}-",
            put_kwargs=put_kwargs,
        )
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "Segment": segment,
            "TotalSegments": segments,
            "ConsistentRead": False,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if cp.exclusive_start_key:
            kwargs["ExclusiveStartKey"] = cp.exclusive_start_key
        units_per_item: float | None = None
        last_units = 0.5
        last_checkpoint = time.monotonic()
        pending_items, pending_units = 0, 0.0
        try:
            while True:
                if cancelled.is_set():
                    raise _Cancelled()
                deadline.check("Its checkpoints are kept: re-running the partition continues where it stopped")
                limit = page_limit or page_limit_for(budget, segments, units_per_item)
                if limit:
                    kwargs["Limit"] = limit
                expected = max(0.5, units_per_item * limit) if (units_per_item and limit) else last_units
                limiter.acquire(expected)
                page = _scan_page(dynamodb, kwargs, limiter, deadline, counters, lock)
                items = page.get("Items", [])
                for item in items:
                    writer.write_line(encode_export_line(item).encode("utf-8"))
                estimated = estimate_read_units(items)
                reported = (page.get("ConsumedCapacity") or {}).get("CapacityUnits")
                units = capacity.units(None if reported is None else float(reported), estimated)
                limiter.settle(units, expected)
                last_units = units
                if items:
                    units_per_item = estimated / len(items)
                pending_items += len(items)
                pending_units += units
                now = time.monotonic()
                with lock:
                    counters["items"] += len(items)
                    counters["capacity"] += units
                    progress = ScanProgress(
                        items=resumed_items + counters["items"],
                        consumed_capacity=counters["capacity"],
                        elapsed_seconds=now - started,
                        estimated_total_items=estimated_total,
                        items_this_run=counters["items"],
                        rate_limit=budget,
                        page_units=units,
                        at=now,
                    )
                if on_progress:
                    on_progress(progress)
                last_key = page.get("LastEvaluatedKey")
                if last_key is None or writer.full or now - last_checkpoint >= checkpoint_seconds:
                    uploaded = writer.roll()
                    if uploaded:
                        cp.files.append(uploaded)
                    cp.exclusive_start_key, cp.done = last_key, last_key is None
                    cp.items += pending_items
                    cp.consumed_capacity += pending_units
                    pending_items, pending_units = 0, 0.0
                    if cancelled.is_set():  # the lease was lost: the new owner decides what is recorded
                        raise _Cancelled()
                    write_segment_checkpoint(
                        s3,
                        bucket=bucket,
                        export_prefix=export_prefix,
                        export_id=export_id,
                        checkpoint=cp,
                        put_kwargs=put_kwargs,
                    )
                    last_checkpoint = time.monotonic()
                if last_key is None:
                    return cp
                kwargs["ExclusiveStartKey"] = last_key
        finally:
            writer.discard()

    keeper = LeaseKeeper(
        s3, bucket=bucket, export_prefix=export_prefix, lease=lease, on_lost=cancelled.set, put_kwargs=put_kwargs
    )

    def lost_lease() -> ExportOwnershipError:
        return ExportOwnershipError(
            f"{where}: run {owner} lost scan export {export_id} under s3://{bucket}/{export_prefix}/ to another "
            "run (its heartbeat was late and the other run took the export over); this run stopped"
        )

    try:
        with keeper:
            with tempfile.TemporaryDirectory(prefix="offload-scan-") as tmpdir:
                with ThreadPoolExecutor(
                    max_workers=max(1, min(segments, max_workers)), thread_name_prefix="scan-segment"
                ) as pool:
                    futures = [pool.submit(scan_segment, seg, tmpdir) for seg in range(segments)]
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    errors = [f.exception() for f in done if f.exception() is not None]
                    if errors:
                        cancelled.set()
                        wait(futures)
                        if keeper.lost.is_set():
                            raise lost_lease()
                        raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
                    finished = sorted((f.result() for f in futures), key=lambda cp: cp.segment)
        deadline.check("Its checkpoints are kept: re-running the partition continues where it stopped")
        if not keeper.renew(strict=True):  # still the owner right before finishing it
            raise lost_lease()
    except BaseException:
        if not keeper.lost.is_set():
            try:  # let a re-run take over at once instead of waiting the lease out
                keeper.renew(released=True)
            except Exception:
                pass
        raise
    files = [f for cp in finished for f in cp.files]
    consumed_total = sum(cp.consumed_capacity for cp in finished)
    manifest = write_export_manifests(
        s3,
        bucket=bucket,
        export_prefix=export_prefix,
        export_id=export_id,
        data_files=files,
        table_arn=table.get("TableArn"),
        export_time=plan.export_time,
        start_time=plan.start_time,
        extra={
            "exportMethod": "scan",
            "totalSegments": segments,
            "consumedReadCapacityUnits": consumed_total,
            "readCapacityBudget": budget,
            "resumed": found is not None,
        },
        put_kwargs=put_kwargs,
    )
    delete_checkpoints(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
    return ScanExportResult(
        manifest=manifest,
        items=manifest.item_count,
        consumed_capacity=counters["capacity"],
        duration_seconds=time.monotonic() - started,
        segments=segments,
        data_bytes=sum(f.size_bytes or 0 for f in files),
        items_scanned=counters["items"],
        resumed=found is not None,
        rate_limit=budget,
        capacity_source=capacity.using,
        reported_capacity=capacity.reported_total,
        estimated_capacity=capacity.estimated_total,
        throttled_requests=counters["throttled"],
        limiter_wait_seconds=limiter.waited_seconds,
        removed_unrecorded_files=len(removed),
        owner=owner,
    )
