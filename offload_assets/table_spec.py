"""The tables file: which DynamoDB tables to offload, and how.

A YAML document with a ``tables`` list; each entry becomes one frozen :class:`TableSpec`
and, through the Dagster factory, one asset group. Adding a table is adding an entry.
Validation happens on load and every error names the table and the field.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from offload_assets.partitions.first_seen import FirstSeenDates, current_day, default_partitions_start

DEFAULT_DATABASE = "dynamodb-exports"
PARTITION_COLUMN = "ddb_export_timestamp"

# DynamoDB: 3-255 of [a-zA-Z0-9_.-]. Glue: lower case, 1-255, no dots (Athena cannot quote them away).
_DDB_TABLE_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_GLUE_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_\-]{0,254}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.\-=]+$")
_SNS_TOPIC_RE = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]+:\d{12}:[A-Za-z0-9_\-]{1,256}(\.fifo)?$")
_KMS_KEY_RE = re.compile(r"^(arn:aws[a-z\-]*:kms:[a-z0-9\-]+:\d{12}:(key|alias)/)?(alias/)?[A-Za-z0-9/_\-]{1,256}$")


class TablesFileError(ValueError):
    """The tables file is missing, not YAML, or has an invalid entry (the message says which)."""


class _TableEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dynamodb_table: str = Field(description="Name of the DynamoDB table to offload.")
    catalog_database: str = Field(DEFAULT_DATABASE, description="Glue database of the catalog table.")
    catalog_table: str | None = Field(None, description="Glue table name; default: the DynamoDB name in lower case.")
    s3_bucket: str = Field(description="Bucket receiving the raw export and the Parquet snapshots.")
    s3_prefix: str = Field("dynamodb-offload", description="Key prefix under which this table's data lives.")
    export_method: Literal["scan", "native", "incremental"] = "scan"
    export_hour: int = Field(0, ge=0, le=23, description="Hour of day of the nightly export, in `timezone`.")
    timezone: str = "UTC"
    read_capacity_fraction: float = Field(
        0.5, gt=0, le=1.5, description="Share of provisioned read capacity a scan may use (MaxConsumedReadThroughput)."
    )
    on_demand_rcu_budget: float | None = Field(
        None, gt=0, description="Read units per second a scan may use on an on-demand table."
    )
    scan_segments: int | None = Field(
        None, ge=1, le=1_000_000, description="Parallel Scan segments; default from table size."
    )
    export_timeout_minutes: float = Field(
        360, gt=0, description="A run still exporting after this fails and publishes nothing."
    )
    # --- partitions_start (issue 15): where the daily partitions begin; see offload_assets/partitions/ ---
    partitions_start: dt.date | None = Field(
        None,
        description="First daily partition; default: the day the table was added (scan), or 35 days before it (native, incremental).",
    )
    compression: Literal["zstd", "snappy"] = "zstd"
    retention_snapshots: int | None = Field(
        None, ge=1, description="Keep the newest N snapshots (partitions, Parquet and raw exports); default: keep all."
    )
    partition_projection: bool = Field(
        False, description="Athena partition projection on ddb_export_timestamp (see README: trade-off with re-runs)."
    )
    catalog_mode: Literal["direct", "crawler"] = Field(
        "direct",
        description="'direct': register schema and partitions ourselves; 'crawler': run a Glue crawler (blog parity).",
    )
    crawler_role: str | None = Field(None, description="IAM role ARN the Glue crawler runs as (catalog_mode: crawler).")
    crawler_timeout_minutes: float = Field(30, gt=0, description="A crawl still running after this fails the run.")
    external_export_prefixes: tuple[str, ...] = Field(
        (),
        description="Extra S3 locations (s3://bucket/ for a bucket's root, s3://bucket/prefix, or a prefix in s3_bucket) where exports started outside Dagster land.",
    )
    notification_queue_url: str | None = Field(
        None,
        description="SQS queue receiving export-finished notifications (e.g. from an SNS topic); enables the notification sensor.",
    )
    sensor_interval_seconds: int = Field(
        60, ge=5, le=86_400, description="Seconds between ticks of this table's sensors."
    )
    freshness_hours: float = Field(
        30,
        gt=0,
        description="The newest published partition may be this many hours old (since its export time) before its freshness check fails.",
    )
    engine: Literal["local", "glue"] = Field(
        "local",
        description="Where the export is converted to Parquet: 'local' (in process) or 'glue' (a PySpark job on AWS Glue via Dagster Pipes).",
    )
    glue_job_name: str | None = Field(
        None, description="Glue job running the conversion (engine: glue); default offload-assets-convert-<table>."
    )
    glue_role_arn: str | None = Field(
        None, description="IAM role the Glue job runs as; when set, the project creates/updates the job."
    )
    glue_version: str = Field("5.0", description="Glue version of the job (Spark 3.5, Python 3.11 on 5.0).")
    glue_worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X"] = "G.1X"
    glue_workers: int = Field(2, ge=2, le=1000, description="Glue workers (DPUs for G.1X) of the conversion job.")
    sse_kms_key_id: str | None = Field(
        None, description="KMS key (id, ARN or alias) for SSE-KMS on every S3 write; default: SSE-S3 (AES256)."
    )
    expected_bucket_owner: str | None = Field(
        None,
        description="12-digit account id that must own s3_bucket; sent as ExpectedBucketOwner on every S3 request.",
    )
    # --- deploy: notifications for downstream work (offload_assets/deploy/notifications.py) ---
    notification_topic_arn: str | None = Field(
        None,
        description="SNS topic receiving export_finished / snapshot_published / snapshot_failed messages (see docs/notifications.md).",
    )

    @field_validator("notification_topic_arn")
    @classmethod
    def _topic_arn(cls, v: str | None) -> str | None:
        if v is not None and not _SNS_TOPIC_RE.match(v):
            raise ValueError("must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
        return v

    # --- change capture from DynamoDB Streams (issue 18) ---
    change_capture: Literal["off", "streams"] = Field(
        "off", description="'streams': apply DynamoDB Streams changes to the Iceberg table (table_format: iceberg)."
    )
    change_capture_interval_seconds: int = Field(
        60, ge=5, le=86_400, description="Seconds between change-capture sensor ticks (a run when records wait)."
    )
    change_capture_max_records: int = Field(
        10_000, ge=1, le=1_000_000, description="Upper bound on stream records applied per commit."
    )
    max_lag_minutes: float = Field(
        15, gt=0, description="The change-capture lag check fails when the oldest waiting change is older."
    )

    @model_validator(mode="after")
    def _change_capture_needs_iceberg(self) -> _TableEntry:
        if self.change_capture == "streams" and getattr(self, "table_format", "hive") != "iceberg":
            raise ValueError(
                "change_capture 'streams' needs table_format 'iceberg' (changes are merged into one current table)"
            )
        return self

    # --- Iceberg tables (issue 17): table_format and its maintenance settings
    table_format: Literal["hive", "iceberg"] = Field(
        "hive",
        description="'hive': one Parquet snapshot per day, partitioned (the blog's layout); 'iceberg': one Apache "
        "Iceberg table kept current by merging each day's changes, history by time travel.",
    )
    retention_days: int | None = Field(
        None, ge=1, description="Iceberg: expire snapshots older than this many days (the newest is always kept)."
    )
    compaction_target_mb: int = Field(
        128,
        ge=1,
        le=4096,
        description="Iceberg: maintenance compacts data files smaller than this into files of this size.",
    )
    maintenance_cron: str = Field(
        "0 3 * * 0",
        description="Iceberg: cron schedule (in `timezone`) of the maintenance step (expire, orphans, compact).",
    )

    @field_validator("sse_kms_key_id")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not _KMS_KEY_RE.match(v):
            raise ValueError("must be a KMS key id, key ARN, alias/<name> or alias ARN")
        return v

    @field_validator("expected_bucket_owner")
    @classmethod
    def _bucket_owner(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{12}", v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("external_export_prefixes")
    @classmethod
    def _external_prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for location in v:
            bucket, _, prefix = (
                location.removeprefix("s3://").partition("/") if location.startswith("s3://") else ("", "", location)
            )
            prefix = prefix.strip("/")
            segments = prefix.split("/")
            if location.startswith("s3://") and (not _BUCKET_RE.match(bucket) or ".." in bucket):
                raise ValueError(f"{location!r}: not a valid S3 bucket name")
            if not prefix and bucket:  # the bucket root: where an export requested without S3Prefix lands
                out.append(f"s3://{bucket}/")
                continue
            if not prefix or any(s in ("", ".", "..") or not _PREFIX_SEGMENT_RE.match(s) for s in segments):
                raise ValueError(
                    f"{location!r}: expected s3://bucket/ (its root), s3://bucket/prefix or a relative key prefix without '..'"
                )
            out.append(f"s3://{bucket}/{prefix}" if bucket else prefix)
        return tuple(out)

    @field_validator("dynamodb_table")
    @classmethod
    def _ddb_name(cls, v: str) -> str:
        if not _DDB_TABLE_RE.match(v):
            raise ValueError("must be 3-255 characters of letters, digits, '_', '-' or '.'")
        return v

    @field_validator("catalog_database", "catalog_table")
    @classmethod
    def _glue_name(cls, v: str | None) -> str | None:
        if v is not None and not _GLUE_NAME_RE.match(v):
            raise ValueError("must be lower case letters, digits, '_' or '-' (a valid Glue name)")
        return v

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET_RE.match(v) or ".." in v:
            raise ValueError("must be a valid S3 bucket name (3-63 lower case letters, digits, '.', '-')")
        return v

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        segments = v.split("/")
        if not v or any(s in ("", ".", "..") or not _PREFIX_SEGMENT_RE.match(s) for s in segments):
            raise ValueError(
                "must be a relative key prefix of letters, digits, '_', '-', '.', '=' and '/' without '..'"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'UTC' or 'Europe/Paris')") from None
        return v

    @model_validator(mode="after")
    def _crawler_settings(self) -> _TableEntry:
        if self.catalog_mode == "crawler" and not self.crawler_role:
            raise ValueError("catalog_mode 'crawler' needs crawler_role (the IAM role ARN the crawler runs as)")
        if self.catalog_mode == "crawler" and self.partition_projection:
            raise ValueError(
                "partition_projection needs catalog_mode 'direct' (a crawler rewrites the table's properties)"
            )
        return self

    @model_validator(mode="after")
    def _iceberg_settings(self) -> _TableEntry:
        if self.table_format == "iceberg" and self.engine == "glue":
            raise ValueError(
                "table_format 'iceberg' needs engine 'local': the Glue Spark job writes Hive snapshots only "
                "(the Iceberg commit diffs the converted export in process)"
            )
        if self.table_format == "iceberg" and self.catalog_mode == "crawler":
            raise ValueError(
                "table_format 'iceberg' needs catalog_mode 'direct' (a crawler cannot maintain an Iceberg table)"
            )
        if self.table_format == "iceberg" and self.partition_projection:
            raise ValueError(
                "partition_projection applies to table_format 'hive' only (an Iceberg table has no date partitions)"
            )
        return self

    @model_validator(mode="after")
    def _derived_name(self) -> _TableEntry:
        if self.catalog_table is None:
            derived = re.sub(r"[^a-z0-9_]", "_", self.dynamodb_table.lower())
            object.__setattr__(self, "catalog_table", derived)
        return self


@dataclass(frozen=True)
class TableSpec:
    """One DynamoDB table to offload: static facts, read from the tables file."""

    dynamodb_table: str
    catalog_database: str
    catalog_table: str
    s3_bucket: str
    s3_prefix: str
    export_method: str
    export_hour: int
    timezone: str
    read_capacity_fraction: float
    on_demand_rcu_budget: float | None
    scan_segments: int | None
    export_timeout_minutes: float
    partitions_start: dt.date
    compression: str
    retention_snapshots: int | None = None
    partition_projection: bool = False
    catalog_mode: str = "direct"
    crawler_role: str | None = None
    crawler_timeout_minutes: float = 30.0
    external_export_prefixes: tuple[str, ...] = ()
    notification_queue_url: str | None = None
    sensor_interval_seconds: int = 60
    freshness_hours: float = 30.0
    engine: str = "local"
    glue_job_name: str | None = None
    glue_role_arn: str | None = None
    glue_version: str = "5.0"
    glue_worker_type: str = "G.1X"
    glue_workers: int = 2
    sse_kms_key_id: str | None = None
    expected_bucket_owner: str | None = None
    # change capture from DynamoDB Streams (issue 18)
    change_capture: str = "off"
    change_capture_interval_seconds: int = 60
    change_capture_max_records: int = 10_000
    max_lag_minutes: float = 15.0
    # deploy: notifications for downstream work
    notification_topic_arn: str | None = None
    # --- Iceberg tables (issue 17)
    table_format: str = "hive"
    retention_days: int | None = None
    compaction_target_mb: int = 128
    maintenance_cron: str = "0 3 * * 0"

    @property
    def name(self) -> str:
        """Identifier used for asset groups, job names and asset keys."""
        return re.sub(r"[^a-z0-9_]", "_", self.catalog_table)

    @property
    def export_prefix_root(self) -> str:
        return f"{self.s3_prefix}/exports/{self.catalog_table}"

    @property
    def parquet_root(self) -> str:
        return f"{self.s3_prefix}/parquet/{self.catalog_table}"

    def export_prefix(self, partition_key: str) -> str:
        """Key prefix handed to the export (ours or DynamoDB's): ``AWSDynamoDB/<id>/`` goes below it."""
        return f"{self.export_prefix_root}/{PARTITION_COLUMN}={partition_key}"

    def parquet_partition_prefix(self, partition_key: str) -> str:
        return f"{self.parquet_root}/{PARTITION_COLUMN}={partition_key}"

    def export_time(self, partition_key: str) -> dt.datetime:
        """The instant a partition's snapshot represents: its date at ``export_hour`` in ``timezone``."""
        day = dt.date.fromisoformat(partition_key)
        local = dt.datetime.combine(day, dt.time(self.export_hour), tzinfo=zoneinfo.ZoneInfo(self.timezone))
        return local.astimezone(dt.UTC)


@dataclass(frozen=True)
class TablesFile:
    path: Path
    tables: tuple[TableSpec, ...]

    def table(self, name: str) -> TableSpec:
        for spec in self.tables:
            if name in (spec.dynamodb_table, spec.catalog_table, spec.name):
                return spec
        known = ", ".join(s.dynamodb_table for s in self.tables) or "none"
        raise KeyError(f"no table {name!r} in {self.path} (configured: {known})")


def _format_validation_error(path: Path, label: str, err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(entry)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (typo?)"
        problems.append(f"{field}: {msg}")
    return f"{path}: {label}: " + "; ".join(problems)


def parse_tables(
    document: Any, path: Path, first_seen: Callable[[dict[str, dt.date]], dict[str, dt.date]] | None = None
) -> TablesFile:
    """Validate a tables document. ``first_seen`` (``database.table`` -> its current day, in; the day
    it was added, out: :class:`~offload_assets.partitions.first_seen.FirstSeenDates`) gives the
    ``partitions_start`` of entries that set none; without it that day is the current one."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), list):
        raise TablesFileError(f"{path}: expected a mapping with a 'tables' list")
    extra = set(document) - {"tables", "defaults"}
    if extra:
        raise TablesFileError(f"{path}: unknown top-level key(s): {', '.join(sorted(map(str, extra)))}")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise TablesFileError(f"{path}: 'defaults' must be a mapping of field: value")
    specs: list[TableSpec] = []
    entries: list[_TableEntry] = []
    for index, raw in enumerate(document["tables"]):
        if not isinstance(raw, dict):
            raise TablesFileError(f"{path}: table #{index + 1}: expected a mapping, got {type(raw).__name__}")
        label = f"table {raw.get('dynamodb_table', f'#{index + 1}')!r}"
        try:
            entry = _TableEntry(**{**defaults, **raw})
        except ValidationError as err:
            raise TablesFileError(_format_validation_error(path, label, err)) from None
        except TypeError as err:  # non-string keys
            raise TablesFileError(f"{path}: {label}: {err}") from None
        entries.append(entry)
    current = {
        _first_seen_key(e): current_day(e.timezone, e.export_hour) for e in entries if e.partitions_start is None
    }
    added = first_seen(current) if first_seen and current else current
    for entry in entries:
        fields = entry.model_dump()
        if entry.partitions_start is None:
            # Never after the table's current day: a day recorded under an earlier export_hour or
            # time zone (or by another tables file naming the same catalog table) may be the next
            # day, which would put the current partition before the start and every export in it aside.
            key = _first_seen_key(entry)
            fields["partitions_start"] = default_partitions_start(entry.export_method, min(added[key], current[key]))
        specs.append(TableSpec(**fields))
    seen: dict[str, str] = {}
    for spec in specs:
        for key in (
            f"dynamodb:{spec.dynamodb_table}",
            f"catalog:{spec.catalog_database}.{spec.catalog_table}",
            f"name:{spec.name}",
        ):
            if key in seen:
                raise TablesFileError(
                    f"{path}: table {spec.dynamodb_table!r}: {key.split(':')[0]} name {key.split(':', 1)[1]!r} "
                    f"is already used by table {seen[key]!r}"
                )
            seen[key] = spec.dynamodb_table
    return TablesFile(path=path, tables=tuple(specs))


def _first_seen_key(entry: _TableEntry) -> str:
    return f"{entry.catalog_database}.{entry.catalog_table}"


TABLES_FILE_ENV_VAR = "OFFLOAD_ASSETS_TABLES"
#: The checkout's own tables file (absent when the package is installed from a wheel).
CHECKOUT_TABLES_FILE = Path(__file__).resolve().parents[1] / "tables.yaml"


def default_tables_file() -> Path:
    """The tables file Dagster and the command line use when none is named.

    ``$OFFLOAD_ASSETS_TABLES`` when set (a deployment installed from a wheel points it at its own
    file); else the checkout's ``tables.yaml``; else ``tables.yaml`` in the working directory.
    """
    explicit = os.environ.get(TABLES_FILE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    if CHECKOUT_TABLES_FILE.is_file():
        return CHECKOUT_TABLES_FILE
    return Path.cwd() / "tables.yaml"


def load_tables_file(path: str | Path) -> TablesFile:
    """Read and validate a tables file; raises :class:`TablesFileError` naming table and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TablesFileError(f"{path}: tables file not found") from None
    except UnicodeDecodeError as err:
        raise TablesFileError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TablesFileError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise TablesFileError(f"{path}: not a tables file: nested too deeply") from None
    from offload_assets.local.emulator import default_state_dir

    return parse_tables(document, path, first_seen=FirstSeenDates(default_state_dir()).resolve)
