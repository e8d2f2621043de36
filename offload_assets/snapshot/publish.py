"""Publishing a partition's Parquet snapshot: one commit point, then the catalog follows it.

Each partition has a commit marker, ``<parquet_root>/ddb_export_timestamp=<date>/_commit.json``,
naming the one run directory SQL must read. Publishing switches it by compare-and-swap (S3
``If-Match`` / ``If-None-Match``) to the newest snapshot whose blocking checks passed (their
verdict is in the snapshot, :mod:`offload_assets.snapshot.verdict`); a publisher that loses the
race re-reads and decides again, and the marker only moves forward. Glue is then written to show
what the marker says, and only after that are older run directories removed (never the committed
one, the one it replaced, or the one Glue points at). See ``docs/publish-protocol.md``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from offload_assets.aws.s3_conditional import VersionedJson, put_json_if, read_json
from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.aws.s3_writes import enforce_s3_settings
from offload_assets.catalog.crawler import CrawlerFailedError, CrawlerTimeoutError, CrawlOutcome, run_crawler
from offload_assets.catalog.glue_tables import (
    CatalogTable,
    SchemaConflictError,
    get_catalog_table,
    list_partitions,
    merge_table_schema,
    register_partition,
    register_table,
    sync_partition_columns,
)
from offload_assets.catalog.latest_view import LatestViewOutcome, latest_view_name, publish_latest_view
from offload_assets.catalog.projection import projection_parameters
from offload_assets.catalog.retention import (
    RetentionOutcome,
    RetentionRefusedError,
    apply_retention,
    check_retention_admits,
)
from offload_assets.snapshot.build import (
    MissingSnapshotError,
    SnapshotManifest,
    list_run_dirs,
    read_snapshot_manifest,
)
from offload_assets.snapshot.verdict import SnapshotVerifier, read_check_verdict
from offload_assets.table_spec import TableSpec

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient
    from types_boto3_s3 import S3Client

_PUBLISH_ATTEMPTS = 5


class UnpublishableSnapshotError(RuntimeError):
    """Every snapshot newer than the committed one failed a blocking check: nothing may be published."""


#: Errors that re-running cannot fix (a schema conflict, retention refusing the date, a crawler
#: that did not finish): the Dagster skin fails the run without retries.
PublishRefusedErrors = (
    SchemaConflictError,
    RetentionRefusedError,
    CrawlerTimeoutError,
    CrawlerFailedError,
    UnpublishableSnapshotError,
)


@dataclass(frozen=True)
class PublishResult:
    snapshot: SnapshotManifest
    table_change: str
    partition_change: str
    removed_run_dirs: tuple[str, ...]
    location: str
    partitions_resynced: int = 0
    latest_view: LatestViewOutcome | None = None
    retention: RetentionOutcome | None = None
    crawl: CrawlOutcome | None = None
    committed: bool = False  # this publish switched the commit marker
    generation: int = 0  # the commit marker's generation after this publish
    refused_run_dirs: tuple[tuple[str, str], ...] = ()  # newer run dirs not publishable, and why
    lost_races: int = 0  # compare-and-swaps of the marker another publisher won (each followed by a re-decision)


def table_facts(
    spec: TableSpec, snapshot: SnapshotManifest, partition_key: str, current: dict[str, str]
) -> dict[str, str]:
    """Table parameters: what the table is, and the facts of its newest snapshot.

    Publishing an older partition (a backfill) keeps the newest snapshot's facts.
    """
    facts = {
        "offload_assets.source_table": spec.dynamodb_table,
        "offload_assets.export_method": spec.export_method,
        "offload_assets.catalog.latest_view": latest_view_name(spec.catalog_table),
        "offload_assets.retention_snapshots": str(spec.retention_snapshots or "all"),
    }
    newest = current.get("offload_assets.latest_partition", "")
    if newest > partition_key:
        facts.update(
            {
                k: v
                for k, v in current.items()
                if k.startswith("offload_assets.latest_") and k != "offload_assets.catalog.latest_view"
            }
        )
    else:
        facts.update(
            {
                "offload_assets.latest_partition": partition_key,
                "offload_assets.latest_export_id": snapshot.export_id,
                "offload_assets.latest_item_count": str(snapshot.rows),
                "offload_assets.latest_export_time": spec.export_time(partition_key).isoformat(),
            }
        )
    if spec.partition_projection:
        facts.update(projection_parameters(spec))
    return facts


def partition_facts(snapshot: SnapshotManifest) -> dict[str, str]:
    """Partition parameters: the snapshot's own facts (the same snapshot always gives the same facts)."""
    return {
        "offload_assets.export_id": snapshot.export_id,
        "offload_assets.rows": str(snapshot.rows),
        "offload_assets.files": str(len(snapshot.files)),
        "offload_assets.bytes": str(snapshot.total_bytes),
        "offload_assets.run_dir": snapshot.run_dir.rsplit("/", 1)[-1],
        "offload_assets.snapshot_created": snapshot.created,
    }


# --------------------------------------------------------------------------- the commit point

COMMIT_MARKER = "_commit.json"
_COMMIT_ATTEMPTS = 20


@dataclass(frozen=True)
class CommitMarker:
    """What ``<partition>/_commit.json`` says: the one snapshot of the partition SQL must read."""

    generation: int
    run_dir: str
    previous_run_dir: str | None
    export_id: str
    rows: int
    committed_at: str
    publisher: str
    version: VersionedJson

    @classmethod
    def from_json(cls, found: VersionedJson) -> CommitMarker:
        b = found.body
        return cls(
            generation=int(b["generation"]),
            run_dir=b["run_dir"],
            previous_run_dir=b.get("previous_run_dir"),
            export_id=b.get("export_id", ""),
            rows=int(b.get("rows", 0)),
            committed_at=b.get("committed_at", ""),
            publisher=b.get("publisher", ""),
            version=found,
        )


@dataclass(frozen=True)
class Commit:
    marker: CommitMarker
    snapshot: SnapshotManifest
    changed: bool  # this publisher switched the marker (False: the committed snapshot was already the newest)
    refused: tuple[tuple[str, str], ...]  # newer run dirs not publishable, with the reason
    lost_races: int = 0  # marker writes another publisher won before this decision


def commit_marker_key(spec: TableSpec, partition_key: str) -> str:
    return f"{spec.parquet_partition_prefix(partition_key)}/{COMMIT_MARKER}"


def read_commit_marker(s3: S3Client, spec: TableSpec, partition_key: str) -> CommitMarker | None:
    found = read_json(s3, bucket=spec.s3_bucket, key=commit_marker_key(spec, partition_key))
    return CommitMarker.from_json(found) if found else None


def write_commit_marker(
    s3: S3Client,
    spec: TableSpec,
    partition_key: str,
    snapshot: SnapshotManifest,
    *,
    expected: CommitMarker | None,
    publisher: str,
) -> CommitMarker | None:
    """Switch the partition to ``snapshot`` if the marker is still ``expected``; None when another publisher won."""
    body = {
        "generation": (expected.generation + 1) if expected else 1,
        "run_dir": snapshot.run_dir,
        "previous_run_dir": expected.run_dir if expected else None,
        "export_id": snapshot.export_id,
        "rows": snapshot.rows,
        "committed_at": dt.datetime.now(dt.UTC).isoformat(),
        "publisher": publisher,
    }
    written = put_json_if(
        s3,
        bucket=spec.s3_bucket,
        key=commit_marker_key(spec, partition_key),
        body=body,
        expected=expected.version if expected else None,
    )
    return CommitMarker.from_json(written) if written else None


def newest_publishable_snapshot(
    s3: S3Client, spec: TableSpec, partition_key: str, *, newer_than: str | None, verify: SnapshotVerifier | None
) -> tuple[SnapshotManifest | None, list[tuple[str, str]]]:
    """The newest complete snapshot newer than ``newer_than`` whose blocking checks passed.

    A complete snapshot with no verdict yet is checked with ``verify`` (when given). Returns it
    (or None) and the newer run dirs passed over, with why.
    """
    refused: list[tuple[str, str]] = []
    prefix = spec.parquet_partition_prefix(partition_key)
    for run_dir in reversed(list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=prefix)):
        if newer_than is not None and run_dir <= newer_than:
            break
        snapshot = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=run_dir)
        if snapshot is None:
            refused.append((run_dir, "incomplete (no _snapshot.json)"))
            continue
        verdict = read_check_verdict(s3, snapshot)
        if (verdict is None or (verdict.missing and not verdict.failed)) and verify is not None:
            verdict = verify(snapshot)
        if verdict is not None and verdict.publishable:
            return snapshot, refused
        refused.append((run_dir, verdict.describe() if verdict else "not checked (no _checks.json)"))
    return None, refused


def commit_snapshot(
    s3: S3Client, spec: TableSpec, partition_key: str, *, publisher: str, verify: SnapshotVerifier | None = None
) -> Commit:
    """THE commit point: switch ``_commit.json`` to the newest publishable snapshot, by compare-and-swap.

    A publisher that loses the race re-reads the marker and decides again; the marker only ever
    moves to a newer run directory.
    """
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    for lost in range(_COMMIT_ATTEMPTS):
        marker = read_commit_marker(s3, spec, partition_key)
        candidate, refused = newest_publishable_snapshot(
            s3, spec, partition_key, newer_than=marker.run_dir if marker else None, verify=verify
        )
        if candidate is None:
            failed = [(d, why) for d, why in refused if why.startswith("failed")]
            if failed:
                kept = f"the catalog stays on {marker.run_dir}" if marker else "nothing is published"
                raise UnpublishableSnapshotError(
                    f"{where}: the newest snapshot(s) failed their blocking checks, {kept}: "
                    + _listed(failed)
                    + " (re-run the Parquet snapshot asset to build a new one)"
                )
            if marker is None:
                raise MissingSnapshotError(
                    f"{where}: no complete Parquet snapshot whose blocking checks passed under "
                    f"s3://{spec.s3_bucket}/{spec.parquet_partition_prefix(partition_key)}/ "
                    + (f"({_listed(refused)}) " if refused else "")
                    + "(materialize the Parquet snapshot asset for this partition first)"
                )
            committed = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=marker.run_dir)
            if committed is None:
                raise MissingSnapshotError(f"{where}: the committed snapshot {marker.run_dir} has no _snapshot.json")
            return Commit(marker, committed, False, tuple(refused), lost)
        new = write_commit_marker(s3, spec, partition_key, candidate, expected=marker, publisher=publisher)
        if new is not None:
            return Commit(new, candidate, True, tuple(refused), lost)
    raise RuntimeError(
        f"{where}: the commit marker kept changing ({_COMMIT_ATTEMPTS} attempts); re-run the catalog step"
    )


def _listed(run_dirs: list[tuple[str, str]]) -> str:
    return "; ".join(f"{d.rsplit('/', 1)[-1]}: {why}" for d, why in run_dirs[:3])


def clean_up_run_dirs(
    glue: GlueClient, s3: S3Client, spec: TableSpec, partition_key: str, marker: CommitMarker
) -> list[str]:
    """Delete the run dirs older than the committed one: failed, abandoned and superseded snapshots.

    Kept: the committed snapshot, the one it replaced (a publisher that committed it and has not
    written Glue yet may still point the partition there for a moment) and whatever the Glue
    partition points at right now, except with partition projection, where Athena reads every run
    dir of the date (only the committed one is kept). Newer run dirs (being written, or failed)
    wait for a newer commit.
    """
    keep = {marker.run_dir, marker.previous_run_dir, _glue_run_dir(glue, spec, partition_key)}
    if spec.partition_projection:  # Athena then reads the whole date directory: one run only
        keep = {marker.run_dir}
    removed = []
    prefix = spec.parquet_partition_prefix(partition_key)
    for run_dir in list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=prefix):
        if run_dir < marker.run_dir and run_dir not in keep:
            delete_prefix(s3, bucket=spec.s3_bucket, prefix=run_dir + "/")
            removed.append(run_dir)
    return removed


def _glue_run_dir(glue: GlueClient, spec: TableSpec, partition_key: str) -> str | None:
    try:
        part = glue.get_partition(
            DatabaseName=spec.catalog_database, TableName=spec.catalog_table, PartitionValues=[partition_key]
        )["Partition"]
    except glue.exceptions.EntityNotFoundException:
        return None
    location = part.get("StorageDescriptor", {}).get("Location", "")
    return location.removeprefix(f"s3://{spec.s3_bucket}/").rstrip("/") or None


# --------------------------------------------------------------------------- publishing


def publish_snapshot(
    glue: GlueClient,
    s3: S3Client,
    spec: TableSpec,
    partition_key: str,
    *,
    verify: SnapshotVerifier | None = None,
    table_parameters: dict[str, str] | None = None,
    crawler_poll_seconds: float = 10.0,
    publisher: str | None = None,
) -> PublishResult:
    """Commit the newest snapshot of a partition whose blocking checks passed, show it in the catalog, clean up.

    In order: switch the partition's commit marker (:func:`commit_snapshot`; ``verify`` checks a
    complete snapshot that has no verdict yet); refuse a partition retention would delete at once;
    merge the snapshot's schema into the table's (new columns appended, types never changed: a
    conflict is refused); create/update the table, give older partitions the new column list,
    create/update the partition, until Glue shows what the marker says; delete superseded and
    failed run dirs of that day; apply retention; point ``<table>_latest`` at the newest snapshot.
    Every step writes only what changed, so re-publishing changes nothing.
    """
    s3 = enforce_s3_settings(s3, spec)
    publisher = publisher or uuid.uuid4().hex
    if spec.catalog_mode != "crawler" and get_catalog_table(glue, spec.catalog_database, spec.catalog_table):
        registered = list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)
        check_retention_admits(spec, partition_key, [p.value for p in registered])  # before committing anything
    commit = commit_snapshot(s3, spec, partition_key, publisher=publisher, verify=verify)
    if spec.catalog_mode == "crawler":
        return _publish_with_crawler(glue, s3, spec, partition_key, commit, crawler_poll_seconds)
    db, name = spec.catalog_database, spec.catalog_table
    marker, snapshot = commit.marker, commit.snapshot
    for _ in range(_PUBLISH_ATTEMPTS):
        table_change, current, schema = _register_table_for(glue, spec, partition_key, snapshot, table_parameters)
        resynced = 0
        if current is not None and [(f.name, f.type) for f in current.schema] != [(f.name, f.type) for f in schema]:
            resynced = sync_partition_columns(glue, database=db, table=name, schema=schema)
        partition_change = register_partition(
            glue,
            database=db,
            table=name,
            value=partition_key,
            location=snapshot.s3_uri,
            schema=schema,
            parameters=partition_facts(snapshot),
        )
        # Glue has no condition on UpdatePartition: a slower publisher of an older commit may have
        # written after us. Follow the marker until Glue shows what it says.
        marker = read_commit_marker(s3, spec, partition_key) or marker
        if marker.run_dir == snapshot.run_dir and _glue_run_dir(glue, spec, partition_key) == marker.run_dir:
            break
        snapshot = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=marker.run_dir) or snapshot
    removed = clean_up_run_dirs(glue, s3, spec, partition_key, marker)
    retention = apply_retention(glue, s3, spec) if spec.retention_snapshots else None
    values = list(retention.kept) if retention else [p.value for p in list_partitions(glue, database=db, table=name)]
    view = publish_latest_view(
        glue, database=db, table=name, schema=schema, partition_values=values, source_table=spec.dynamodb_table
    )
    return PublishResult(
        snapshot=snapshot,
        table_change=table_change,
        partition_change=partition_change,
        removed_run_dirs=tuple(removed),
        location=snapshot.s3_uri,
        partitions_resynced=resynced,
        latest_view=view,
        retention=retention,
        committed=commit.changed,
        generation=marker.generation,
        refused_run_dirs=commit.refused,
        lost_races=commit.lost_races,
    )


def _register_table_for(
    glue: GlueClient,
    spec: TableSpec,
    partition_key: str,
    snapshot: SnapshotManifest,
    table_parameters: dict[str, str] | None,
) -> tuple[str, CatalogTable | None, pa.Schema]:
    """Merge the snapshot into the table schema and write it, safe against concurrent publishers.

    Two partitions published at once (a backfill) may each add columns. Each update names the
    table version it merged from (AWS refuses a stale one), and afterwards the table is read back:
    if another publisher's write dropped this snapshot's columns, the merge is redone.
    """
    db, name = spec.catalog_database, spec.catalog_table
    for _ in range(_PUBLISH_ATTEMPTS):
        current = get_catalog_table(glue, db, name)
        registered = [p.value for p in list_partitions(glue, database=db, table=name)] if current else []
        check_retention_admits(spec, partition_key, registered)
        schema = merge_table_schema(
            current.schema if current else None, snapshot.schema, where=f"table {db}.{name}, partition {partition_key}"
        )
        try:
            change = register_table(
                glue,
                database=db,
                table=name,
                location=f"s3://{spec.s3_bucket}/{spec.parquet_root}/",
                schema=schema,
                parameters={
                    **table_facts(spec, snapshot, partition_key, current.parameters if current else {}),
                    **(table_parameters or {}),
                },
                description=f"Daily snapshots of DynamoDB table {spec.dynamodb_table}, offloaded by offload_assets",
                expected_version=current.version_id if current else None,
            )
        except (glue.exceptions.ConcurrentModificationException, glue.exceptions.AlreadyExistsException):
            continue
        written = get_catalog_table(glue, db, name)
        if (
            written is not None
            and merge_table_schema(written.schema, snapshot.schema, where=name).names == written.schema.names
        ):
            return change, current, written.schema
    raise RuntimeError(
        f"table {db}.{name}, partition {partition_key}: the Glue table kept changing while publishing "
        f"({_PUBLISH_ATTEMPTS} attempts); re-run the catalog step"
    )


def _publish_with_crawler(
    glue: GlueClient, s3: S3Client, spec: TableSpec, partition_key: str, commit: Commit, poll_seconds: float
) -> PublishResult:
    """Crawler mode: leave only the committed run of the day on S3, let the crawler register it."""
    snapshot = commit.snapshot
    removed = []
    for run_dir in list_run_dirs(
        s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition_key)
    ):
        if run_dir < snapshot.run_dir:
            delete_prefix(s3, bucket=spec.s3_bucket, prefix=run_dir + "/")
            removed.append(run_dir)
    crawl = run_crawler(glue, spec, poll_seconds=poll_seconds)
    table = get_catalog_table(glue, spec.catalog_database, spec.catalog_table)
    if table is None:
        raise MissingSnapshotError(
            f"table {spec.dynamodb_table!r}: crawler {crawl.crawler!r} succeeded but created no table "
            f"{spec.catalog_database}.{spec.catalog_table}"
        )
    values = sorted({p.value for p in list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)})
    view = publish_latest_view(
        glue,
        database=spec.catalog_database,
        table=spec.catalog_table,
        schema=table.schema,
        partition_values=values,
        source_table=spec.dynamodb_table,
    )
    return PublishResult(
        snapshot,
        "crawled",
        "crawled",
        tuple(removed),
        snapshot.s3_uri,
        0,
        view,
        None,
        crawl,
        committed=commit.changed,
        generation=commit.marker.generation,
        refused_run_dirs=commit.refused,
    )
