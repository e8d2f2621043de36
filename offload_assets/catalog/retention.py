"""Retention: keep the newest N snapshots of a table, remove older ones whole.

A snapshot is one ``ddb_export_timestamp`` date. Removing one removes, in this order, its Glue
partition (SQL stops seeing it), its Parquet files (every run directory of that date) and its
raw export. Dates older than the oldest kept snapshot that were never registered (a failed or
abandoned run) are removed too, so nothing outside the retained window keeps costing storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.catalog.glue_tables import delete_partitions, get_catalog_table, list_partitions
from offload_assets.table_spec import PARTITION_COLUMN, TableSpec

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient
    from types_boto3_s3 import S3Client

_DATE_DIR = re.compile(rf"^{PARTITION_COLUMN}=(\d{{4}}-\d{{2}}-\d{{2}})$")


class RetentionRefusedError(ValueError):
    """Publishing this partition would be undone at once by retention (the message says what to change)."""


@dataclass(frozen=True)
class RetentionOutcome:
    kept: tuple[str, ...]
    removed_partitions: tuple[str, ...]
    removed_unregistered_dates: tuple[str, ...]
    deleted_objects: int


def expired_partitions(values: list[str], keep: int) -> list[str]:
    """The values beyond the newest ``keep`` (oldest first)."""
    if keep < 1:
        raise ValueError(f"retention must keep at least 1 snapshot, got {keep}")
    ordered = sorted(set(values))
    return ordered[: max(0, len(ordered) - keep)]


def check_retention_admits(spec: TableSpec, partition_key: str, registered: list[str]) -> None:
    """Refuse to publish a partition that retention would delete right away (a backfill too far back)."""
    keep = spec.retention_snapshots
    if keep is None or partition_key in registered:
        return
    if partition_key in expired_partitions([*registered, partition_key], keep):
        newest = sorted(registered)[-keep:]
        raise RetentionRefusedError(
            f"table {spec.dynamodb_table!r}: partition {partition_key} is older than the {keep} newest snapshots "
            f"kept by retention_snapshots={keep} ({newest[0]} .. {newest[-1]}); publishing it would delete it at once. "
            "Raise retention_snapshots in the tables file to keep older snapshots."
        )


def _date_dirs(s3: S3Client, bucket: str, root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    dates = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            m = _DATE_DIR.match(cp["Prefix"][len(prefix) :].rstrip("/"))
            if m:
                dates.append(m.group(1))
    return sorted(dates)


def apply_retention(glue: GlueClient, s3: S3Client, spec: TableSpec, keep: int | None = None) -> RetentionOutcome:
    """Remove every snapshot beyond the newest ``keep`` (default: ``spec.retention_snapshots``)."""
    keep = keep if keep is not None else spec.retention_snapshots
    if get_catalog_table(glue, spec.catalog_database, spec.catalog_table) is None:
        return RetentionOutcome((), (), (), 0)  # nothing published yet: nothing to retain (or remove)
    registered = [p.value for p in list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)]
    if keep is None or not registered:
        return RetentionOutcome(tuple(registered), (), (), 0)
    expired = expired_partitions(registered, keep)
    kept = [v for v in sorted(registered) if v not in expired]
    delete_partitions(glue, database=spec.catalog_database, table=spec.catalog_table, values=expired)
    oldest_kept = kept[0]
    on_disk = set(_date_dirs(s3, spec.s3_bucket, spec.parquet_root)) | set(
        _date_dirs(s3, spec.s3_bucket, spec.export_prefix_root)
    )
    unregistered = sorted(d for d in on_disk if d < oldest_kept and d not in expired)
    deleted = 0
    for value in [*expired, *unregistered]:
        deleted += delete_prefix(s3, bucket=spec.s3_bucket, prefix=spec.parquet_partition_prefix(value) + "/")
        deleted += delete_prefix(s3, bucket=spec.s3_bucket, prefix=spec.export_prefix(value) + "/")
    return RetentionOutcome(tuple(kept), tuple(expired), tuple(unregistered), deleted)
