"""DynamoDB's own export to S3 (ExportTableToPointInTime), polled to completion.

It reads no table capacity at all and can export any instant of the point-in-time recovery
window (at most 35 days). This module only calls DescribeTable, DescribeContinuousBackups,
ExportTableToPointInTime and DescribeExport on DynamoDB: never Scan, Query or GetItem.

On AWS the export writes its own manifests and DescribeExport names them (``ExportManifest``).
The local emulator writes the data files but no manifests: then the export directory it created
is found (the one that was not there before the request), its data files are read to count their
lines and checksum them, and the manifests are written here, last, as DynamoDB would.

The request carries a ``ClientToken`` derived from the table, destination and times, so a re-run
of a partition whose run died (or timed out) while DynamoDB was still exporting gets the same
export back instead of paying for a second one (AWS keeps a token for 8 hours).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from offload_assets.aws.s3_writes import native_export_kwargs
from offload_assets.export.errors import ExportDeadline, ExportFailedError, ExportRefusedError
from offload_assets.export.layout import (
    ExportManifest,
    describe_data_file,
    export_dir_key,
    list_export_ids,
    read_export_manifest,
    utc_iso,
    write_export_manifests,
)

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_s3 import S3Client

PITR_MAX_DAYS = 35  # DynamoDB's longest point-in-time recovery period
MIN_INCREMENTAL_WINDOW = dt.timedelta(minutes=15)
MAX_INCREMENTAL_WINDOW = dt.timedelta(hours=24)


def enable_pitr_command(table_name: str) -> str:
    return (
        f"aws dynamodb update-continuous-backups --table-name {table_name} "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true"
    )


def _local_hint(dynamodb: DynamoDBClient, table_name: str) -> str:
    """On the project's local emulator (a loopback endpoint), how to give a table PITR history."""
    endpoint = str(getattr(getattr(dynamodb, "meta", None), "endpoint_url", "") or "")
    if endpoint.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        return (
            f" Locally, `offload-assets local pitr {table_name} --days 8` gives the emulator's table 8 days of history."
        )
    return ""


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def check_point_in_time_window(
    dynamodb: DynamoDBClient,
    table_name: str,
    instants: list[dt.datetime],
    *,
    now: dt.datetime | None = None,
    method: str = "native",
) -> dict[str, Any]:
    """Refuse (with what to do) unless PITR is on and every instant lies inside its recovery window.

    Returns the table's ``PointInTimeRecoveryDescription``.
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        backups = dynamodb.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("TableNotFoundException", "ResourceNotFoundException"):
            raise ExportRefusedError(f"DynamoDB table {table_name!r} does not exist (export_method {method})") from None
        raise
    pitr = backups.get("PointInTimeRecoveryDescription") or {}
    status = pitr.get("PointInTimeRecoveryStatus", "DISABLED")
    if status != "ENABLED":
        raise ExportRefusedError(
            f"DynamoDB table {table_name!r} has point-in-time recovery {status}: export_method {method!r} exports "
            f"from it. Enable it with `{enable_pitr_command(table_name)}` (snapshots from that moment on become "
            "exportable), or use export_method: scan." + _local_hint(dynamodb, table_name)
        )
    earliest = _aware(pitr.get("EarliestRestorableDateTime"))
    window_days = int(pitr.get("RecoveryPeriodInDays") or PITR_MAX_DAYS)
    oldest_allowed = now - dt.timedelta(days=min(window_days, PITR_MAX_DAYS))
    for instant in instants:
        if instant > now:
            raise ExportRefusedError(
                f"DynamoDB table {table_name!r}: {utc_iso(instant)} is in the future (now {utc_iso(now)}); "
                "a point-in-time export can only read the past. Materialize this partition after its export time."
            )
        if instant < oldest_allowed:
            raise ExportRefusedError(
                f"DynamoDB table {table_name!r}: {utc_iso(instant)} is outside the {min(window_days, PITR_MAX_DAYS)}-day "
                f"point-in-time recovery window (oldest exportable instant: {utc_iso(oldest_allowed)}). That snapshot "
                "cannot be produced any more: DynamoDB keeps no older history."
            )
        if earliest is not None and instant < earliest:
            raise ExportRefusedError(
                f"DynamoDB table {table_name!r}: {utc_iso(instant)} is before the table's earliest restorable time "
                f"{utc_iso(earliest)} (when point-in-time recovery was enabled or the table was created); "
                "only later snapshots can be exported." + _local_hint(dynamodb, table_name)
            )
    return pitr


def client_token(*parts: Any) -> str:
    """Idempotency token for one logical export request (same inputs, same export)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PointInTimeExport:
    manifest: ExportManifest
    export_arn: str
    export_time: str
    item_count: int
    billed_size_bytes: int | None
    duration_seconds: float
    data_bytes: int
    manifests_written_by: str  # "dynamodb", or "offload_assets" when the emulator wrote none
    description: dict[str, Any]


def _poll(
    dynamodb: DynamoDBClient, export_arn: str, deadline: ExportDeadline, poll_seconds: float, max_poll_seconds: float
) -> dict[str, Any]:
    delay = poll_seconds
    while True:
        deadline.check(
            f"DynamoDB export {export_arn} was still running; DynamoDB finishes it anyway, and re-running the "
            "partition within 8 hours picks that export up instead of starting another"
        )
        description = dynamodb.describe_export(ExportArn=export_arn)["ExportDescription"]
        status = description.get("ExportStatus")
        if status == "COMPLETED":
            return description
        if status == "FAILED":
            raise ExportFailedError(
                f"DynamoDB export {export_arn} failed: {description.get('FailureCode')}: {description.get('FailureMessage')}"
            )
        time.sleep(max(0.0, min(delay, deadline.remaining())))
        delay = min(max_poll_seconds, delay * 1.5)


def _manifest_of_completed(
    s3: S3Client,
    description: dict[str, Any],
    *,
    bucket: str,
    export_prefix: str,
    known_before: set[str],
    export_time: str,
    start_time: str,
    table_arn: str | None,
    export_type: str,
    extra: dict[str, Any],
    put_kwargs: dict[str, Any] | None,
) -> tuple[ExportManifest, str]:
    manifest_key = description.get("ExportManifest")
    if manifest_key:
        export_id = manifest_key.rstrip("/").split("/")[-2]
        manifest = read_export_manifest(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
        if manifest is None:
            raise ExportFailedError(
                f"DynamoDB export {description.get('ExportArn')} is COMPLETED but s3://{bucket}/{manifest_key} cannot be read"
            )
        return manifest, "dynamodb"
    new_dirs = [
        i
        for i in list_export_ids(s3, bucket=bucket, export_prefix=export_prefix)
        if i not in known_before
        and read_export_manifest(s3, bucket=bucket, export_prefix=export_prefix, export_id=i) is None
    ]
    if len(new_dirs) != 1:
        raise ExportFailedError(
            f"DynamoDB export {description.get('ExportArn')} is COMPLETED without naming its manifest, and "
            f"{len(new_dirs)} new export directories appeared under s3://{bucket}/{export_prefix}/AWSDynamoDB/ "
            "(expected exactly one): cannot tell which data files are its own"
        )
    export_id = new_dirs[0]
    data_prefix = f"{export_dir_key(export_prefix, export_id)}/data/"
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=data_prefix)
        for o in page.get("Contents", [])
    ]
    files = [describe_data_file(s3, bucket=bucket, key=k) for k in sorted(keys)]
    counted = sum(f.item_count for f in files)
    reported = description.get("ItemCount")
    if reported is not None and int(reported) != counted:
        raise ExportFailedError(
            f"DynamoDB export {description.get('ExportArn')} reports {reported} items but its data files under "
            f"s3://{bucket}/{data_prefix} hold {counted} lines"
        )
    manifest = write_export_manifests(
        s3,
        bucket=bucket,
        export_prefix=export_prefix,
        export_id=export_id,
        data_files=files,
        table_arn=table_arn,
        export_time=export_time,
        start_time=utc_iso(description["StartTime"]) if description.get("StartTime") else start_time,
        export_arn=description.get("ExportArn"),
        billed_size_bytes=int(description.get("BilledSizeBytes") or 0),
        export_type=export_type,
        extra={**extra, "manifestsWrittenBy": "offload_assets"},
        put_kwargs=put_kwargs,
    )
    return manifest, "offload_assets"


LATEST_RESTORABLE_LAG = dt.timedelta(minutes=5)


def _wait_for_recovery_log(instant: dt.datetime, now: dt.datetime | None, deadline: ExportDeadline) -> None:
    """DynamoDB can export up to about 5 minutes ago: an export asked for right at its time waits that long."""
    now = now or dt.datetime.now(dt.UTC)
    wait = (instant + LATEST_RESTORABLE_LAG - now).total_seconds()
    if wait > 0:
        time.sleep(min(wait, max(0.0, deadline.remaining())))
        deadline.check(f"It was waiting for point-in-time recovery to reach {utc_iso(instant)}")


def _stored_bytes(s3: S3Client, bucket: str, prefix: str) -> int:
    return sum(
        o["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    )


def run_point_in_time_export(
    dynamodb: DynamoDBClient,
    s3: S3Client,
    *,
    table_name: str,
    bucket: str,
    export_prefix: str,
    deadline: ExportDeadline,
    export_time: dt.datetime | None = None,
    incremental_window: tuple[dt.datetime, dt.datetime] | None = None,
    now: dt.datetime | None = None,
    poll_seconds: float = 2.0,
    max_poll_seconds: float = 30.0,
    put_kwargs: dict[str, Any] | None = None,
) -> PointInTimeExport:
    """A FULL_EXPORT at ``export_time``, or an INCREMENTAL_EXPORT of ``incremental_window`` (from, to).

    Refuses (:class:`ExportRefusedError`) when point-in-time recovery is off or an instant lies
    outside its window; raises :class:`ExportTimeoutError` past ``deadline`` with nothing written
    by us (no manifests), and :class:`ExportFailedError` when DynamoDB reports a failure.
    """
    if (export_time is None) == (incremental_window is None):
        raise ValueError("give exactly one of export_time (full export) or incremental_window (incremental export)")
    started = time.monotonic()
    start_time = utc_iso()
    method = "incremental" if incremental_window else "native"
    instants = list(incremental_window) if incremental_window else [export_time]
    check_point_in_time_window(dynamodb, table_name, instants, now=now, method=method)
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    table_arn = table["TableArn"]
    request: dict[str, Any] = {
        "TableArn": table_arn,
        "S3Bucket": bucket,
        "S3Prefix": export_prefix,
        "ExportFormat": "DYNAMODB_JSON",
    }
    extra: dict[str, Any] = {"exportMethod": method}
    request.update(native_export_kwargs(put_kwargs))
    if incremental_window:
        from_time, to_time = incremental_window
        window = to_time - from_time
        if not MIN_INCREMENTAL_WINDOW <= window <= MAX_INCREMENTAL_WINDOW:
            raise ExportRefusedError(
                f"DynamoDB table {table_name!r}: an incremental export window must last 15 minutes to 24 hours, "
                f"not {window} ({utc_iso(from_time)} to {utc_iso(to_time)})"
            )
        request.update(
            ExportType="INCREMENTAL_EXPORT",
            IncrementalExportSpecification={
                "ExportFromTime": from_time,
                "ExportToTime": to_time,
                "ExportViewType": "NEW_AND_OLD_IMAGES",
            },
        )
        nominal_time = utc_iso(to_time)
        extra.update(
            exportFromTime=utc_iso(from_time), exportToTime=utc_iso(to_time), exportViewType="NEW_AND_OLD_IMAGES"
        )
        token_parts = (table_arn, bucket, export_prefix, "INCREMENTAL_EXPORT", utc_iso(from_time), utc_iso(to_time))
    else:
        request.update(ExportType="FULL_EXPORT", ExportTime=export_time)
        nominal_time = utc_iso(export_time)
        token_parts = (table_arn, bucket, export_prefix, "FULL_EXPORT", nominal_time)
    _wait_for_recovery_log(max(instants), now, deadline)
    salt = ""
    for attempt in (1, 2):
        known_before = set(list_export_ids(s3, bucket=bucket, export_prefix=export_prefix))
        requested_at = dt.datetime.now(dt.UTC)
        token = client_token(*token_parts, salt)
        description = dynamodb.export_table_to_point_in_time(ClientToken=token, **request)["ExportDescription"]
        export_arn = description["ExportArn"]
        # Same token within 8 hours: DynamoDB hands back the export an earlier run started.
        adopted = _aware(description.get("StartTime")) is not None and _aware(
            description["StartTime"]
        ) < requested_at - dt.timedelta(seconds=5)
        try:
            description = _poll(dynamodb, export_arn, deadline, poll_seconds, max_poll_seconds)
            deadline.check(f"DynamoDB export {export_arn} completed too late")
            manifest, written_by = _manifest_of_completed(
                s3,
                description,
                bucket=bucket,
                export_prefix=export_prefix,
                known_before=known_before,
                export_time=utc_iso(description["ExportTime"]) if description.get("ExportTime") else nominal_time,
                start_time=start_time,
                table_arn=table_arn,
                export_type=request["ExportType"],
                extra=extra,
                put_kwargs=put_kwargs,
            )
            break
        except ExportFailedError:
            if not adopted or attempt == 2:
                raise
            salt = f"retry-{utc_iso(requested_at)}"  # the earlier run's export failed or its files are gone: a new one
    return PointInTimeExport(
        manifest=manifest,
        export_arn=export_arn,
        export_time=manifest.export_time or nominal_time,
        item_count=manifest.item_count,
        billed_size_bytes=description.get("BilledSizeBytes"),
        duration_seconds=time.monotonic() - started,
        data_bytes=_stored_bytes(s3, bucket, f"{manifest.export_dir}/data/"),
        manifests_written_by=written_by,
        description=description,
    )
