"""Export a DynamoDB table with a parallel Scan into the native-export layout.

Each segment is scanned in its own thread with eventually consistent reads, its items
written as ``{"Item": {...}}`` DynamoDB-JSON lines (binary values base64, as DynamoDB's own
export does) into gzip data files, which are uploaded as they fill. The manifests are
written last, so a run that dies leaves an incomplete export nobody reads.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from offload_assets.export_layout import (
    ExportDataFile,
    ExportManifest,
    export_dir_key,
    md5_base64,
    new_export_id,
    utc_iso,
    write_export_manifests,
)

DATA_FILE_MAX_BYTES = 128 * 1024 * 1024  # compressed size at which a segment starts a new data file
SEGMENT_TARGET_BYTES = 2 * 1024**3  # one segment per ~2 GiB of table, as AWS Glue's DynamoDB reader does
MAX_SEGMENTS = 64


class ExportTimeoutError(TimeoutError):
    """The export ran past its configured limit; nothing was published."""


@dataclass(frozen=True)
class ScanProgress:
    items: int
    consumed_capacity: float
    elapsed_seconds: float
    estimated_total_items: int


@dataclass(frozen=True)
class ScanExportResult:
    manifest: ExportManifest
    items: int
    consumed_capacity: float
    duration_seconds: float
    segments: int
    data_bytes: int


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


def read_rate_limit(table: dict[str, Any], fraction: float, on_demand_budget: float | None) -> float | None:
    """Read units per second the scan may consume, or None for no limit."""
    provisioned = (table.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits") or 0
    on_demand = (table.get("BillingModeSummary") or {}).get("BillingMode") == "PAY_PER_REQUEST" or not provisioned
    if on_demand:
        return on_demand_budget
    return provisioned * fraction


class CapacityLimiter:
    """Keeps average consumed read units per second at or under ``rate`` (shared by all segments)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._consumed = 0.0

    def consume(self, units: float) -> None:
        if not self.rate:
            return
        with self._lock:
            self._consumed += units
            wait = self._consumed / self.rate - (time.monotonic() - self._start)
        if wait > 0:
            time.sleep(wait)


class _SegmentWriter:
    def __init__(self, s3: Any, bucket: str, data_prefix: str, tmpdir: str, put_kwargs: dict[str, Any]) -> None:
        self.s3, self.bucket, self.data_prefix, self.tmpdir, self.put_kwargs = s3, bucket, data_prefix, tmpdir, put_kwargs
        self.files: list[ExportDataFile] = []
        self._open()

    def _open(self) -> None:
        self.path = os.path.join(self.tmpdir, f"{uuid.uuid4().hex}.json.gz")
        self.raw = open(self.path, "wb")
        self.gz = gzip.GzipFile(fileobj=self.raw, mode="wb", compresslevel=6)
        self.count = 0

    def write(self, item: dict[str, Any]) -> None:
        self.gz.write(encode_export_line(item).encode("utf-8"))
        self.gz.write(b"\n")
        self.count += 1
        if self.raw.tell() >= DATA_FILE_MAX_BYTES:
            self.flush()
            self._open()

    def flush(self) -> None:
        self.gz.close()
        self.raw.close()
        if self.count:
            with open(self.path, "rb") as fh:
                data = fh.read()
            key = f"{self.data_prefix}/{os.path.basename(self.path)}"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5_base64(data), **self.put_kwargs)
            self.files.append(ExportDataFile(key=key, item_count=self.count, md5=md5_base64(data), size_bytes=len(data)))
        os.unlink(self.path)
        self.count = 0


def export_table_scan(
    dynamodb: Any,
    s3: Any,
    *,
    table_name: str,
    bucket: str,
    export_prefix: str,
    export_time: str | None = None,
    total_segments: int | None = None,
    read_capacity_fraction: float = 0.5,
    on_demand_rcu_budget: float | None = None,
    timeout_seconds: float | None = None,
    page_limit: int | None = None,
    put_kwargs: dict[str, Any] | None = None,
    on_progress: Callable[[ScanProgress], None] | None = None,
) -> ScanExportResult:
    """Scan ``table_name`` in parallel and write it to ``s3://bucket/export_prefix/AWSDynamoDB/<id>/``."""
    started = time.monotonic()
    start_time = utc_iso()
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    segments = total_segments or choose_segment_count(table.get("TableSizeBytes", 0), table.get("ItemCount", 0))
    limiter = CapacityLimiter(read_rate_limit(table, read_capacity_fraction, on_demand_rcu_budget))
    export_id = new_export_id()
    data_prefix = f"{export_dir_key(export_prefix, export_id)}/data"
    put_kwargs = put_kwargs or {}
    counters = {"items": 0, "capacity": 0.0}
    lock = threading.Lock()
    cancelled = threading.Event()

    def scan_segment(segment: int, tmpdir: str) -> list[ExportDataFile]:
        writer = _SegmentWriter(s3, bucket, data_prefix, tmpdir, put_kwargs)
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "Segment": segment,
            "TotalSegments": segments,
            "ConsistentRead": False,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if page_limit:
            kwargs["Limit"] = page_limit
        while True:
            if cancelled.is_set():
                raise ExportTimeoutError("cancelled")
            if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
                cancelled.set()
                raise ExportTimeoutError(
                    f"export of DynamoDB table {table_name!r} exceeded its timeout of {timeout_seconds:.0f} s; nothing was published"
                )
            page = dynamodb.scan(**kwargs)
            for item in page.get("Items", []):
                writer.write(item)
            units = float((page.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
            with lock:
                counters["items"] += len(page.get("Items", []))
                counters["capacity"] += units
            limiter.consume(units)
            if on_progress:
                on_progress(ScanProgress(counters["items"], counters["capacity"], time.monotonic() - started, table.get("ItemCount", 0)))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        writer.flush()
        return writer.files

    with tempfile.TemporaryDirectory(prefix="offload-scan-") as tmpdir:
        with ThreadPoolExecutor(max_workers=min(segments, 16), thread_name_prefix="scan-segment") as pool:
            futures = [pool.submit(scan_segment, seg, tmpdir) for seg in range(segments)]
            try:
                files = [f for fut in futures for f in fut.result()]
            except BaseException:
                cancelled.set()
                raise
    manifest = write_export_manifests(
        s3,
        bucket=bucket,
        export_prefix=export_prefix,
        export_id=export_id,
        data_files=files,
        table_arn=table.get("TableArn"),
        export_time=export_time or start_time,
        start_time=start_time,
        extra={"exportMethod": "scan", "totalSegments": segments, "consumedReadCapacityUnits": counters["capacity"]},
        put_kwargs=put_kwargs,
    )
    return ScanExportResult(
        manifest=manifest,
        items=counters["items"],
        consumed_capacity=counters["capacity"],
        duration_seconds=time.monotonic() - started,
        segments=segments,
        data_bytes=sum(f.size_bytes or 0 for f in files),
    )
