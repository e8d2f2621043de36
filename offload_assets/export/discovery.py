"""Find completed DynamoDB exports that Dagster did not start, and make them a partition's raw export.

Exports started outside Dagster (the console, the CLI, AWS Backup, a job in another account)
land in S3 in DynamoDB's layout (see :mod:`offload_assets.export.layout`). Two places are
watched per table:

- the table's own export root ``<s3_prefix>/exports/<table>/``: an export given that root as
  its ``S3Prefix`` lands in ``AWSDynamoDB/<id>/`` right below it (the *landing* area), one given
  ``.../ddb_export_timestamp=<date>`` lands directly in that partition;
- every ``external_export_prefixes`` entry of the table (e.g. AWS Backup's destination);
  ``s3://bucket/`` (or ``s3://bucket/AWSDynamoDB``) watches the bucket root, where DynamoDB
  writes ``AWSDynamoDB/<id>/`` when an export is requested without an S3 prefix.

An export whose summary is there but whose manifests cannot be used (not JSON, counts or
checksum files that disagree, data files missing) is skipped with the reason, which the
sensors put in their tick's log and status: never silently.

Only complete exports count: ``manifest-summary.json`` is written last, so an export without
it (still being written, or failed) is never picked up. A found export belongs to a partition
by its directory when it sits in one, else by its ``exportTime`` (partition D holds the
table as of D at ``export_hour`` in ``timezone``, so an export at time t belongs to the
partition whose window contains t). Adopting it copies it into that partition's export
prefix (moving it when it came from our own landing area) and removes the partition's other
exports, exactly as re-running the raw export would.

The sensor's cursor (:class:`ExportCursor`) is JSON: the export ids already handled and a
time horizon before which summaries are not looked at again. Notifications (SQS messages,
possibly wrapping SNS, S3 event or DescribeExport documents; see
:mod:`offload_assets.export.sqs_notifications`) only say where to look: the export's own
manifest is always what is trusted.

No Dagster here: the sensors in :mod:`offload_assets.defs.sensors` call these functions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from offload_assets.aws.s3_objects import delete_prefix, ensure_bucket
from offload_assets.aws.s3_writes import enforce_s3_settings, s3_put_kwargs
from offload_assets.export.layout import (
    EXPORT_DIR,
    MANIFEST_FILES,
    MANIFEST_SUMMARY,
    STARTED_MARKER,
    ExportDataFile,
    ExportManifest,
    ExportManifestError,
    delete_other_exports,
    export_dir_key,
    export_side_files,
    list_export_objects,
    manifest_problems,
    parse_export_time,
    read_export_manifest,
    write_export_manifests,
)
from offload_assets.table_spec import PARTITION_COLUMN, TableSpec

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

CURSOR_VERSION = 1
#: On the first tick (no cursor), summaries older than this are history, not news.
INITIAL_LOOKBACK = dt.timedelta(hours=48)
#: Handled ids are remembered this long before the newest summary seen, so a summary that
#: becomes visible late (written slightly before a newer one) is still found.
KEEP_WINDOW = dt.timedelta(days=1)
#: Adoptions per tick: copying is server-side but not free; the rest waits for the next tick.
MAX_EXPORTS_PER_TICK = 10

SUMMARY_KEY_RE = re.compile(rf"^(?:(?P<prefix>.*)/)?{EXPORT_DIR}/(?P<id>[^/]+)/{re.escape(MANIFEST_SUMMARY)}$")
_PARTITION_DIR_RE = re.compile(rf"^{PARTITION_COLUMN}=(\d{{4}}-\d{{2}}-\d{{2}})$")


# --------------------------------------------------------------------------- where to look


@dataclass(frozen=True)
class WatchedLocation:
    """A bucket and key prefix (no trailing '/'; empty for the bucket root) searched for exports."""

    bucket: str
    prefix: str
    owned: bool  # inside the table's export root: adopted exports are moved out of it, not copied

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"

    @property
    def list_prefix(self) -> str:
        """What to list: ``<prefix>/``, or ``AWSDynamoDB/`` at the bucket root (not the whole bucket)."""
        return f"{self.prefix}/" if self.prefix else f"{EXPORT_DIR}/"


def watched_locations(spec: TableSpec) -> list[WatchedLocation]:
    """The table's export root, then each configured extra prefix (``.../AWSDynamoDB`` means its parent)."""
    locations = [WatchedLocation(spec.s3_bucket, spec.export_prefix_root, owned=True)]
    for entry in spec.external_export_prefixes:
        if entry.startswith("s3://"):
            bucket, _, prefix = entry.removeprefix("s3://").partition("/")
        else:
            bucket, prefix = spec.s3_bucket, entry
        prefix = prefix.strip("/")
        if prefix == EXPORT_DIR or prefix.endswith("/" + EXPORT_DIR):
            prefix = prefix.removesuffix(EXPORT_DIR).rstrip("/")
        location = WatchedLocation(bucket, prefix, owned=False)
        if location not in locations:
            locations.append(location)
    return locations


def _inside(key: str, prefix: str) -> bool:
    return bool(prefix.strip("/")) and key.startswith(prefix.rstrip("/") + "/")


def location_for(spec: TableSpec, bucket: str, export_prefix: str) -> WatchedLocation:
    """The watched location an export prefix belongs to (or an ad-hoc one, e.g. from a notification)."""
    for location in watched_locations(spec):
        if location.bucket == bucket and (export_prefix == location.prefix or _inside(export_prefix, location.prefix)):
            return location
    return WatchedLocation(bucket, export_prefix.strip("/"), owned=False)


@dataclass(frozen=True)
class SummaryObject:
    """A ``manifest-summary.json`` seen in S3: the completion marker of one export."""

    bucket: str
    key: str
    last_modified: dt.datetime

    @property
    def export_prefix(self) -> str:
        return parse_summary_key(self.key)[0]

    @property
    def export_id(self) -> str:
        return parse_summary_key(self.key)[1]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_summary_key(key: str) -> tuple[str, str]:
    """``<prefix>/AWSDynamoDB/<id>/manifest-summary.json`` -> (prefix, id); ValueError otherwise."""
    match = SUMMARY_KEY_RE.match(key)
    if not match:
        raise ValueError(
            f"{key!r} is not an export's {MANIFEST_SUMMARY} (expected <prefix>/{EXPORT_DIR}/<id>/{MANIFEST_SUMMARY})"
        )
    return (match.group("prefix") or "").rstrip("/"), match.group("id")


def list_export_summaries(
    s3: S3Client, location: WatchedLocation, *, modified_since: dt.datetime | None = None
) -> list[SummaryObject]:
    """Every export summary below a location (oldest first), skipping those older than ``modified_since``."""
    found = []
    paginator = s3.get_paginator("list_objects_v2")
    try:
        pages = list(paginator.paginate(Bucket=location.bucket, Prefix=location.list_prefix))
    except s3.exceptions.NoSuchBucket:
        return []
    for page in pages:
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/" + MANIFEST_SUMMARY) or not SUMMARY_KEY_RE.match(obj["Key"]):
                continue
            modified = obj["LastModified"].astimezone(dt.UTC)
            if modified_since is None or modified >= modified_since:
                found.append(SummaryObject(location.bucket, obj["Key"], modified))
    return sorted(found, key=lambda s: (s.last_modified, s.key))


def summary_object(s3: S3Client, bucket: str, key: str) -> SummaryObject | None:
    """The summary at ``bucket/key`` if it exists (the export is complete), else None."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return None
        raise
    return SummaryObject(bucket, key, head["LastModified"].astimezone(dt.UTC))


# --------------------------------------------------------------------------- which partition


def partition_for_export_time(spec: TableSpec, export_time: dt.datetime) -> str:
    """The daily partition whose window contains ``export_time``.

    Partition D spans [D at export_hour, D+1 at export_hour) in the table's time zone: a
    nightly export started a few minutes after the hour belongs to that day.
    """
    if export_time.tzinfo is None:
        raise ValueError(f"export time {export_time!r} has no time zone")
    local = export_time.astimezone(zoneinfo.ZoneInfo(spec.timezone))
    day = local.date() if local.hour >= spec.export_hour else local.date() - dt.timedelta(days=1)
    return day.isoformat()


def directory_partition(spec: TableSpec, bucket: str, export_prefix: str) -> str | None:
    """The partition an export's directory names, when it sits in ``<export root>/ddb_export_timestamp=<date>``."""
    if bucket != spec.s3_bucket or not _inside(export_prefix, spec.export_prefix_root):
        return None
    rest = export_prefix[len(spec.export_prefix_root) + 1 :]
    match = _PARTITION_DIR_RE.match(rest)
    return match.group(1) if match else None


def table_name_from_arn(arn: str | None) -> str | None:
    """``arn:aws:dynamodb:<region>:<account>:table/<name>[/...]`` -> ``<name>``."""
    if not arn or ":table/" not in arn:
        return None
    return arn.split(":table/", 1)[1].split("/", 1)[0] or None


# --------------------------------------------------------------------------- what was found


@dataclass(frozen=True)
class FoundExport:
    """A complete export of the configured table, mapped to its partition."""

    summary: SummaryObject
    manifest: ExportManifest
    partition_key: str
    location: WatchedLocation
    in_partition_directory: bool  # already sits in <export root>/ddb_export_timestamp=<partition_key>/

    @property
    def export_id(self) -> str:
        return self.manifest.export_id

    @property
    def uri(self) -> str:
        return self.manifest.s3_uri


@dataclass(frozen=True)
class SkippedExport:
    """A complete export that will never be adopted, and why (the sensor logs it once)."""

    summary: SummaryObject
    reason: str
    other_table: bool = False  # an export of another DynamoDB table (a shared queue may have a reader for it)
    unusable: bool = False  # of this table, but its manifests cannot be used: a warning, not a routine skip

    def describe(self) -> str:
        return f"{self.summary.uri}: {self.reason}"


@dataclass(frozen=True)
class PendingExport:
    """A summary whose export cannot be read yet (looked at again next tick), and why."""

    summary: SummaryObject
    reason: str

    def describe(self) -> str:
        return f"{self.summary.uri}: {self.reason}"


def inspect_export(
    s3: S3Client, spec: TableSpec, summary: SummaryObject, *, now: dt.datetime
) -> FoundExport | SkippedExport | PendingExport:
    """Read one export's manifests and decide: adoptable, skipped for good, or pending (not readable yet)."""
    try:
        manifest = read_export_manifest(
            s3, bucket=summary.bucket, export_prefix=summary.export_prefix, export_id=summary.export_id
        )
    except ExportManifestError as err:
        return SkippedExport(summary, f"manifests cannot be used: {err}", unusable=True)
    if manifest is None:  # summary present but manifest-files.json not (yet) readable
        return PendingExport(
            summary,
            f"{MANIFEST_FILES} ({manifest_files_key(summary)}) is not readable yet; looking again next tick",
        )
    table = table_name_from_arn(manifest.summary.get("tableArn"))
    if table is not None and table != spec.dynamodb_table:
        return SkippedExport(summary, f"export of table {table!r}, not {spec.dynamodb_table!r}", other_table=True)
    if manifest.export_type != "FULL_EXPORT":
        return SkippedExport(
            summary, f"{manifest.export_type} is not a full snapshot (only FULL_EXPORT exports become partitions)"
        )
    if manifest.output_format != "DYNAMODB_JSON":
        return SkippedExport(summary, f"output format {manifest.output_format} (only DYNAMODB_JSON is converted)")
    in_directory = directory_partition(spec, summary.bucket, summary.export_prefix)
    if in_directory is not None:
        partition_key = in_directory
    else:
        try:
            export_time = parse_export_time(manifest.export_time)
        except ValueError:
            export_time = None
        if export_time is None:
            return SkippedExport(
                summary, f"exportTime {manifest.export_time!r} missing or not a timestamp: cannot tell its partition"
            )
        partition_key = partition_for_export_time(spec, export_time)
    if dt.date.fromisoformat(partition_key) < spec.partitions_start:
        return SkippedExport(summary, f"partition {partition_key} is before partitions_start {spec.partitions_start}")
    if partition_key > partition_for_export_time(spec, now):
        return SkippedExport(summary, f"partition {partition_key} is in the future")
    problems = manifest_problems(s3, manifest, list_export_objects(s3, manifest))
    if problems:
        return SkippedExport(summary, "manifests are inconsistent: " + "; ".join(problems), unusable=True)
    return FoundExport(
        summary=summary,
        manifest=manifest,
        partition_key=partition_key,
        location=location_for(spec, summary.bucket, summary.export_prefix),
        in_partition_directory=in_directory is not None,
    )


def manifest_files_key(summary: SummaryObject) -> str:
    return f"s3://{summary.bucket}/{export_dir_key(summary.export_prefix, summary.export_id)}/{MANIFEST_FILES}"


# --------------------------------------------------------------------------- the cursor


@dataclass(frozen=True)
class ExportCursor:
    """What the export sensor has handled: ids (with their summary's time) and a horizon."""

    horizon: dt.datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)  # export id -> summary LastModified (ISO)

    @classmethod
    def from_json(
        cls, text: str | None, *, now: dt.datetime, initial_lookback: dt.timedelta = INITIAL_LOOKBACK
    ) -> ExportCursor:
        """Parse a cursor; a missing one starts ``initial_lookback`` before ``now``."""
        if not text:
            return cls(horizon=now - initial_lookback)
        try:
            body = json.loads(text)
            if body.get("version") != CURSOR_VERSION:
                raise ValueError(f"cursor version {body.get('version')!r}, expected {CURSOR_VERSION}")
            horizon = dt.datetime.fromisoformat(body["horizon"]) if body.get("horizon") else None
            seen = {str(k): str(v) for k, v in dict(body.get("seen", {})).items()}
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(
                f"export sensor cursor is not valid JSON of this sensor ({err}); reset the sensor's cursor"
            ) from None
        return cls(horizon=horizon, seen=seen)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "horizon": self.horizon.isoformat() if self.horizon else None,
                "seen": dict(sorted(self.seen.items())),
            },
            separators=(",", ":"),
        )

    def is_new(self, summary: SummaryObject) -> bool:
        if summary.export_id in self.seen:
            return False
        return self.horizon is None or summary.last_modified >= self.horizon

    def advanced(
        self,
        done: Iterable[SummaryObject],
        pending: Iterable[SummaryObject] = (),
        *,
        keep_window: dt.timedelta = KEEP_WINDOW,
    ) -> ExportCursor:
        """Remember ``done``; move the horizon up to ``keep_window`` before the newest id, never past ``pending``."""
        seen = dict(self.seen)
        for summary in done:
            seen[summary.export_id] = summary.last_modified.isoformat()
        horizon = self.horizon
        if seen:
            newest = max(dt.datetime.fromisoformat(v) for v in seen.values())
            candidate = newest - keep_window
            horizon = candidate if horizon is None else max(horizon, candidate)
        waiting = [s.last_modified for s in pending]
        if waiting and horizon is not None:
            horizon = min(horizon, min(waiting))
        if horizon is not None:
            seen = {k: v for k, v in seen.items() if dt.datetime.fromisoformat(v) >= horizon}
        return ExportCursor(horizon=horizon, seen=seen)


@dataclass(frozen=True)
class Discovery:
    """One look at the watched locations: exports to handle now, ones skipped for good, ones to retry."""

    found: list[FoundExport]
    skipped: list[SkippedExport]
    later: list[SummaryObject]  # not readable yet, or over this tick's budget
    pending: list[PendingExport] = field(default_factory=list)  # the not-readable-yet ones, with why


def discover_exports(
    s3: S3Client, spec: TableSpec, cursor: ExportCursor, *, now: dt.datetime, max_exports: int = MAX_EXPORTS_PER_TICK
) -> Discovery:
    """Complete exports of ``spec``'s table in its watched locations that the cursor has not handled."""
    candidates: list[SummaryObject] = []
    for location in watched_locations(spec):
        candidates.extend(
            s for s in list_export_summaries(s3, location, modified_since=cursor.horizon) if cursor.is_new(s)
        )
    candidates.sort(key=lambda s: (s.last_modified, s.key))
    found: list[FoundExport] = []
    skipped: list[SkippedExport] = []
    later: list[SummaryObject] = []
    pending: list[PendingExport] = []
    ids: set[str] = set()
    for summary in candidates:
        if len(found) >= max_exports:
            later.append(summary)
            continue
        outcome = inspect_export(s3, spec, summary, now=now)
        if isinstance(outcome, PendingExport):
            later.append(summary)
            pending.append(outcome)
        elif isinstance(outcome, SkippedExport):
            skipped.append(outcome)
        elif outcome.export_id in ids:
            # The same export in two places (e.g. the original and an earlier adoption's copy).
            skipped.append(SkippedExport(summary, f"export {outcome.export_id} was also found elsewhere in this tick"))
        else:
            ids.add(outcome.export_id)
            found.append(outcome)
    return Discovery(found=found, skipped=skipped, later=later, pending=pending)


# --------------------------------------------------------------------------- adopting


def adopt_export(s3: S3Client, spec: TableSpec, found: FoundExport) -> ExportManifest:
    """Make ``found`` the raw export of its partition and return the partition's manifest.

    Data files are copied server-side into ``spec.export_prefix(partition)/AWSDynamoDB/<id>/``,
    then ``manifest-files.json`` and, last, ``manifest-summary.json`` are written (with the
    original facts and ``adoptedFrom``), so a reader never sees half an adoption. An export
    from the table's own landing area is then deleted there (moved); one from an external
    prefix is left in place. Every other export of the partition is removed.
    """
    s3 = enforce_s3_settings(s3, spec)  # encryption (and bucket owner) on every write to the table's bucket
    target_prefix = spec.export_prefix(found.partition_key)
    source = found.manifest
    if not (found.in_partition_directory and source.bucket == spec.s3_bucket and source.export_prefix == target_prefix):
        ensure_bucket(s3, spec.s3_bucket, prefix=spec.export_prefix_root + "/")
        adopted = read_export_manifest(
            s3, bucket=spec.s3_bucket, export_prefix=target_prefix, export_id=source.export_id
        )
        if adopted is None:
            adopted = _copy_export(s3, spec, source, target_prefix)
        if found.location.owned and source.bucket == spec.s3_bucket and source.export_dir != adopted.export_dir:
            delete_prefix(s3, bucket=source.bucket, prefix=source.export_dir + "/")
        source = adopted
    delete_other_exports(s3, bucket=spec.s3_bucket, export_prefix=target_prefix, keep_export_id=source.export_id)
    return source


def _copy_export(s3: S3Client, spec: TableSpec, source: ExportManifest, target_prefix: str) -> ExportManifest:
    """Copy data files and ``_started``; rewrite the manifests (new keys, ``adoptedFrom``) with checksum files
    of the same kind as the source's, so the adopted export is laid out like the one DynamoDB wrote."""
    target_dir = export_dir_key(target_prefix, source.export_id)
    side_files = export_side_files(source, list_export_objects(s3, source))
    if f"{source.export_dir}/{STARTED_MARKER}" in side_files:
        s3.copy(
            {"Bucket": source.bucket, "Key": f"{source.export_dir}/{STARTED_MARKER}"},
            spec.s3_bucket,
            f"{target_dir}/{STARTED_MARKER}",
        )
    suffix = next((f".{k.rsplit('.', 1)[1]}" for k in side_files if not k.endswith(STARTED_MARKER)), None)
    copied = []
    for data_file in source.data_files:
        relative = (
            data_file.key[len(source.export_dir) + 1 :]
            if _inside(data_file.key, source.export_dir)
            else f"data/{data_file.key.rsplit('/', 1)[-1]}"
        )
        key = f"{target_dir}/{relative}"
        # Managed copy: server-side, multipart above 5 GB.
        s3.copy({"Bucket": source.bucket, "Key": data_file.key}, spec.s3_bucket, key)
        copied.append(
            ExportDataFile(key=key, item_count=data_file.item_count, md5=data_file.md5, size_bytes=data_file.size_bytes)
        )
    kept = {
        k: v for k, v in source.summary.items() if k not in ("s3Bucket", "s3Prefix", "manifestFilesS3Key", "itemCount")
    }
    return write_export_manifests(
        s3,
        bucket=spec.s3_bucket,
        export_prefix=target_prefix,
        export_id=source.export_id,
        data_files=copied,
        table_arn=source.summary.get("tableArn"),
        export_time=source.export_time or "",
        start_time=source.start_time or "",
        extra={**kept, "adoptedFrom": source.s3_uri},
        put_kwargs=s3_put_kwargs(spec),
        checksum_suffix=suffix,
    )


def export_data_bytes(s3: S3Client, manifest: ExportManifest) -> int:
    """Total size of an export's data files (listed, since manifests do not carry sizes)."""
    wanted = {f.key for f in manifest.data_files}
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=manifest.bucket, Prefix=manifest.export_dir + "/"):
        total += sum(o["Size"] for o in page.get("Contents", []) if o["Key"] in wanted)
    return total


def export_facts(manifest: ExportManifest, *, data_bytes: int, found: FoundExport) -> dict[str, Any]:
    """What the UI shows for an adopted export (same keys as the raw export asset's own runs)."""
    start, end = parse_export_time(manifest.start_time), parse_export_time(manifest.end_time)
    facts: dict[str, Any] = {
        "dagster/row_count": manifest.item_count,
        "export_id": manifest.export_id,
        "export_method": "external",
        "export_time": manifest.export_time,
        "export_type": manifest.export_type,
        "s3_uri": manifest.s3_uri,
        "files": len(manifest.data_files),
        "bytes": data_bytes,
        "found_at": found.uri,
    }
    if start and end:
        facts["duration_seconds"] = round((end - start).total_seconds(), 3)
    for key, name in (("exportArn", "export_arn"), ("tableArn", "table_arn"), ("billedSizeBytes", "billed_size_bytes")):
        if manifest.summary.get(key) is not None:
            facts[name] = manifest.summary[key]
    return facts
