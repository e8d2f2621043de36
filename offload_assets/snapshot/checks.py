"""What the asset checks verify, without Dagster: row counts, primary keys, schema drift, freshness.

Each function returns a :class:`CheckOutcome` (passed, severity, a sentence for the UI and
plain metadata); :mod:`offload_assets.defs.checks` turns it into an ``AssetCheckResult``.

- Row-count parity: the export manifest's item count, the rows actually present in the
  snapshot's Parquet files (read from their footers, so a deleted or truncated file shows)
  and, once published, the SQL count of the partition must all be equal.
- Primary keys: no two rows of a snapshot share the table's key (from DescribeTable), and
  no row lacks a key attribute.
- Schema drift: columns the previous published partition did not have, columns whose type
  changed, values rescued into ``_rescued_data`` (they did not fit their column's type).
- Freshness: the newest partition registered in the catalog is not older than allowed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from offload_assets.catalog.glue_tables import ORIGINAL_NAME_KEY, get_catalog_table, list_partitions
from offload_assets.catalog.glue_types import arrow_to_glue
from offload_assets.export.layout import latest_completed_export, parse_export_time
from offload_assets.snapshot.build import CHANGES_KIND, SnapshotManifest, read_snapshot_manifest
from offload_assets.table_spec import PARTITION_COLUMN, TableSpec

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient
    from types_boto3_s3 import S3Client

ERROR, WARN = "ERROR", "WARN"
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    severity: str = ERROR
    metadata: dict[str, Any] = field(default_factory=dict)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# --------------------------------------------------------------------------- row counts


@dataclass(frozen=True)
class ParquetRows:
    """Rows per Parquet file actually present in a snapshot directory (from the footers)."""

    files: dict[str, int]  # file name -> rows
    unreadable: dict[str, str]  # file name -> error

    @property
    def rows(self) -> int:
        return sum(self.files.values())


def snapshot_parquet_rows(filesystem: pafs.FileSystem, snapshot: SnapshotManifest) -> ParquetRows:
    """Count the rows of every ``.parquet`` file in the snapshot's run directory (not ``_*`` side files)."""
    base = f"{snapshot.bucket}/{snapshot.run_dir}"
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    files, unreadable = {}, {}
    for info in sorted(infos, key=lambda i: i.path):
        relative = info.path[len(base) + 1 :]
        if (
            info.type != pafs.FileType.File
            or not relative.endswith(".parquet")
            or any(p.startswith("_") for p in relative.split("/"))
        ):
            continue
        try:
            files[relative] = pq.read_metadata(info.path, filesystem=filesystem).num_rows
        except (OSError, pa.ArrowInvalid) as err:
            unreadable[relative] = str(err)[:300]
    return ParquetRows(files=files, unreadable=unreadable)


def _listed_files(snapshot: SnapshotManifest) -> dict[str, int]:
    return {str(f.get("path", "")).rsplit("/", 1)[-1]: int(f.get("rows", 0)) for f in snapshot.files}


def row_count_parity(
    spec: TableSpec, snapshot: SnapshotManifest, present: ParquetRows, *, export_items: int | None
) -> CheckOutcome:
    """Export items = rows the snapshot claims = rows in its Parquet files (and every listed file is there)."""
    if snapshot.kind == CHANGES_KIND:
        return change_row_parity(spec, snapshot, present, export_items=export_items)
    where = f"table {spec.dynamodb_table!r}, partition {snapshot.partition_key}"
    listed = _listed_files(snapshot)
    present_names = {name.rsplit("/", 1)[-1] for name in present.files}
    missing = sorted(set(listed) - present_names - set(present.unreadable))
    metadata: dict[str, Any] = {
        "export_item_count": export_items,
        "snapshot_rows": snapshot.rows,
        "parquet_rows": present.rows,
        "parquet_files": len(present.files),
        "export_id": snapshot.export_id,
        "snapshot_uri": snapshot.s3_uri,
    }
    problems = []
    if export_items is None:
        problems.append("the export's item count is unknown")
    elif export_items != present.rows:
        problems.append(f"the export has {export_items:,} items but the Parquet files hold {present.rows:,} rows")
    if snapshot.rows != present.rows:
        problems.append(f"the snapshot manifest claims {snapshot.rows:,} rows, its files hold {present.rows:,}")
    if missing:
        problems.append(f"missing Parquet file(s): {', '.join(missing[:MAX_EXAMPLES])}")
        metadata["missing_files"] = missing
    if present.unreadable:
        problems.append(f"unreadable Parquet file(s): {', '.join(sorted(present.unreadable)[:MAX_EXAMPLES])}")
        metadata["unreadable_files"] = present.unreadable
    quarantined = int(snapshot.extra.get("quarantined_lines") or 0)
    if quarantined:
        problems.append(f"{quarantined:,} export line(s) were quarantined instead of converted")
        metadata["quarantined_lines"] = quarantined
    if problems:
        return CheckOutcome(False, f"{where}: " + "; ".join(problems) + f" ({snapshot.s3_uri}).", metadata=metadata)
    return CheckOutcome(
        True,
        f"{where}: {present.rows:,} rows in the export and in {len(present.files)} Parquet file(s).",
        metadata=metadata,
    )


def change_row_parity(
    spec: TableSpec, snapshot: SnapshotManifest, present: ParquetRows, *, export_items: int | None
) -> CheckOutcome:
    """Row parity of a change snapshot (a day staged from an incremental export for an Iceberg table).

    previous rows + inserted - deleted = the day's merged export items (the rows the table must
    hold after the commit); the staged files hold exactly the inserted + updated items, every listed
    file is there and readable, and the staged delete keys are the deleted ones plus those of items
    the table did not hold.
    """
    where = f"table {spec.dynamodb_table!r}, partition {snapshot.partition_key}"
    extra = snapshot.extra
    previous, inserted, updated, deleted = (
        int(extra.get(k, 0)) for k in ("previous_rows", "inserted", "updated", "deleted")
    )
    absent, delete_keys = int(extra.get("deletes_of_absent_items", 0)), int(extra.get("delete_keys", 0))
    listed = _listed_files(snapshot)
    missing = sorted(set(listed) - {n.rsplit("/", 1)[-1] for n in present.files} - set(present.unreadable))
    metadata: dict[str, Any] = {
        "export_item_count": export_items,
        "previous_rows": previous,
        "inserted": inserted,
        "updated": updated,
        "deleted": deleted,
        "staged_rows": present.rows,
        "staged_delete_keys": delete_keys,
        "export_id": snapshot.export_id,
        "snapshot_uri": snapshot.s3_uri,
    }
    problems = []
    if export_items is None:
        problems.append("the export's item count is unknown")
    elif previous + inserted - deleted != export_items:
        problems.append(
            f"previous rows {previous:,} + inserted {inserted:,} - deleted {deleted:,} = "
            f"{previous + inserted - deleted:,}, the export has {export_items:,} items"
        )
    if inserted + updated != present.rows or snapshot.rows != present.rows:
        problems.append(
            f"{inserted:,} inserted + {updated:,} updated items, the snapshot claims {snapshot.rows:,} rows, "
            f"its files hold {present.rows:,}"
        )
    if deleted + absent != delete_keys:
        problems.append(
            f"{deleted:,} deleted + {absent:,} absent = {deleted + absent:,}, {delete_keys:,} delete keys staged"
        )
    if missing:
        problems.append(f"missing Parquet file(s): {', '.join(missing[:MAX_EXAMPLES])}")
    if present.unreadable:
        problems.append(f"unreadable Parquet file(s): {', '.join(sorted(present.unreadable)[:MAX_EXAMPLES])}")
    if problems:
        return CheckOutcome(False, f"{where}: " + "; ".join(problems) + f" ({snapshot.s3_uri}).", metadata=metadata)
    return CheckOutcome(
        True,
        f"{where}: {previous:,} previous rows + {inserted:,} inserted - {deleted:,} deleted = {export_items:,} "
        f"exported items; {present.rows:,} changed items staged (not the whole table), {delete_keys:,} delete keys.",
        metadata=metadata,
    )


def sql_count_statement(spec: TableSpec, partition_key: str) -> str:
    """The SQL (Athena dialect, also run locally) counting one partition's rows through the catalog."""
    return (
        f"SELECT count(*) AS row_count FROM {_quoted(spec.catalog_database)}.{_quoted(spec.catalog_table)} "
        f"WHERE {PARTITION_COLUMN} = {_sql_string(partition_key)}"
    )


def sql_row_count_parity(
    spec: TableSpec, partition_key: str, *, sql_rows: int, published: SnapshotManifest | None, export_items: int | None
) -> CheckOutcome:
    """What SQL counts in the partition = the published snapshot's rows = the export's items."""
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    metadata: dict[str, Any] = {"sql_rows": sql_rows, "export_item_count": export_items}
    if published is None:
        return CheckOutcome(
            False,
            f"{where}: no published snapshot (the catalog partition is missing or points at nothing).",
            metadata=metadata,
        )
    metadata.update(snapshot_rows=published.rows, export_id=published.export_id, snapshot_uri=published.s3_uri)
    problems = []
    if sql_rows != published.rows:
        problems.append(f"SQL counts {sql_rows:,} rows but the published snapshot has {published.rows:,}")
    if export_items is not None and sql_rows != export_items:
        problems.append(f"SQL counts {sql_rows:,} rows but the export has {export_items:,} items")
    if problems:
        return CheckOutcome(False, f"{where}: " + "; ".join(problems) + f" ({published.s3_uri}).", metadata=metadata)
    return CheckOutcome(
        True, f"{where}: SQL counts {sql_rows:,} rows, as many as the export has items.", metadata=metadata
    )


def published_snapshot(glue: GlueClient, s3: S3Client, spec: TableSpec, partition_key: str) -> SnapshotManifest | None:
    """The snapshot the catalog partition points at (None when the partition is not registered)."""
    expression = f"{PARTITION_COLUMN} = {_sql_string(partition_key)}"
    try:
        parts = list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table, expression=expression)
    except glue.exceptions.EntityNotFoundException:
        return None
    for part in parts:
        if part.value == partition_key:
            return snapshot_at(s3, part.location)
    return None


def snapshot_at(s3: S3Client, location: str) -> SnapshotManifest | None:
    bucket, _, run_dir = location.removeprefix("s3://").partition("/")
    if not bucket or not run_dir.strip("/"):
        return None
    return read_snapshot_manifest(s3, bucket=bucket, run_dir=run_dir.rstrip("/"))


# --------------------------------------------------------------------------- primary keys


def key_columns(
    schema: pa.Schema, attributes: list[str], renamed: dict[str, str] | None = None
) -> dict[str, str | None]:
    """The snapshot column holding each key attribute (None when there is none)."""
    from offload_assets.conversion import safe_column_name

    by_original = {
        (f.metadata or {}).get(ORIGINAL_NAME_KEY, b"").decode(): f.name
        for f in schema
        if (f.metadata or {}).get(ORIGINAL_NAME_KEY)
    }
    names = set(schema.names)
    out: dict[str, str | None] = {}
    for attr in attributes:
        candidates = [by_original.get(attr), (renamed or {}).get(attr), attr, safe_column_name(attr)]
        out[attr] = next((c for c in candidates if c and c in names), None)
    return out


def unique_primary_keys(
    spec: TableSpec,
    filesystem: pafs.FileSystem,
    snapshot: SnapshotManifest,
    attributes: list[str],
    present: ParquetRows,
) -> CheckOutcome:
    """No duplicate and no missing key in the snapshot's Parquet files (DuckDB over the files)."""
    import duckdb
    import pyarrow.dataset as ds

    where = f"table {spec.dynamodb_table!r}, partition {snapshot.partition_key}"
    columns = key_columns(snapshot.schema, attributes, snapshot.extra.get("renamed_columns"))
    metadata: dict[str, Any] = {"key_attributes": attributes, "key_columns": columns, "snapshot_uri": snapshot.s3_uri}
    absent = [a for a, c in columns.items() if c is None]
    if absent:
        return CheckOutcome(
            False, f"{where}: key attribute(s) {', '.join(absent)} have no column in the snapshot.", metadata=metadata
        )
    if not present.files:
        return CheckOutcome(
            present.rows == snapshot.rows == 0, f"{where}: the snapshot has no Parquet file.", metadata=metadata
        )
    paths = [f"{snapshot.bucket}/{snapshot.run_dir}/{name}" for name in present.files]
    dataset = ds.dataset(paths, filesystem=filesystem, format="parquet")
    cols = [_quoted(columns[a]) for a in attributes]
    con = duckdb.connect()
    try:
        con.register("snapshot", dataset)
        null_rows = con.execute(
            f"SELECT count(*) FROM snapshot WHERE {' OR '.join(c + ' IS NULL' for c in cols)}"
        ).fetchone()[0]
        dup_keys, dup_rows = con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM snapshot GROUP BY {', '.join(cols)} HAVING count(*) > 1)"
        ).fetchone()
        examples = con.execute(
            f"SELECT {', '.join(cols)}, count(*) AS n FROM snapshot GROUP BY {', '.join(cols)} HAVING count(*) > 1 "
            f"ORDER BY n DESC LIMIT {MAX_EXAMPLES}"
        ).fetchall()
    finally:
        con.close()
    metadata.update(
        rows=present.rows,
        rows_without_key=int(null_rows),
        duplicate_keys=int(dup_keys),
        rows_with_duplicate_keys=int(dup_rows),
    )
    problems = []
    if dup_keys:
        shown = "; ".join(
            ", ".join(f"{a}={row[i]!r}" for i, a in enumerate(attributes)) + f" ({row[-1]}×)" for row in examples
        )
        problems.append(f"{dup_keys:,} key(s) appear more than once ({dup_rows:,} rows), e.g. {shown}")
        metadata["duplicate_examples"] = [
            {a: str(row[i]) for i, a in enumerate(attributes)} | {"rows": int(row[-1])} for row in examples
        ]
    if null_rows:
        problems.append(f"{null_rows:,} row(s) lack a key attribute")
    if problems:
        return CheckOutcome(False, f"{where}: " + "; ".join(problems) + ".", metadata=metadata)
    return CheckOutcome(
        True, f"{where}: {present.rows:,} rows, every ({', '.join(attributes)}) key once.", metadata=metadata
    )


# --------------------------------------------------------------------------- schema drift


def previous_published_snapshot(
    glue: GlueClient, s3: S3Client, spec: TableSpec, partition_key: str
) -> SnapshotManifest | None:
    """The newest published snapshot of an earlier partition (the baseline for drift)."""
    try:
        parts = list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)
    except glue.exceptions.EntityNotFoundException:
        return None
    for part in reversed(parts):
        if part.value < partition_key:
            snapshot = snapshot_at(s3, part.location)
            if snapshot is not None:
                return snapshot
    return None


def schema_drift(
    spec: TableSpec, snapshot: SnapshotManifest, *, baseline: pa.Schema | None, baseline_label: str | None
) -> CheckOutcome:
    """New columns, retyped columns and rescued values, as a warning with the details."""
    where = f"table {spec.dynamodb_table!r}, partition {snapshot.partition_key}"
    rescued = {k: int(v) for k, v in snapshot.rescued_counts.items() if int(v)}
    metadata: dict[str, Any] = {
        "columns": len(snapshot.schema),
        "rescued_values": sum(rescued.values()),
        "rescued_counts": rescued,
    }
    renamed = snapshot.extra.get("renamed_columns") or {}
    if renamed:
        metadata["renamed_columns"] = renamed
    problems = []
    if baseline is not None:
        metadata["baseline"] = baseline_label
        before = {f.name: f for f in baseline}
        new = [
            {
                "column": f.name,
                "type": arrow_to_glue(f.type),
                "attribute": (f.metadata or {}).get(ORIGINAL_NAME_KEY, f.name.encode()).decode(),
            }
            for f in snapshot.schema
            if f.name not in before
        ]
        retyped = [
            {"column": f.name, "was": arrow_to_glue(before[f.name].type), "now": arrow_to_glue(f.type)}
            for f in snapshot.schema
            if f.name in before and not f.type.equals(before[f.name].type)
        ]
        metadata.update(new_columns=new, retyped_columns=retyped)
        if new:
            problems.append(
                f"{len(new)} new column(s) since {baseline_label}: "
                + ", ".join(f"{c['column']} {c['type']}" for c in new[:10])
            )
        if retyped:
            problems.append(
                "column type(s) changed: " + ", ".join(f"{c['column']} {c['was']} -> {c['now']}" for c in retyped[:10])
            )
    if rescued:
        problems.append(
            f"{sum(rescued.values()):,} value(s) did not fit their column and were kept as JSON in _rescued_data: "
            + ", ".join(f"{k} ({v:,})" for k, v in sorted(rescued.items(), key=lambda kv: -kv[1])[:10])
        )
    if problems:
        return CheckOutcome(False, f"{where}: " + "; ".join(problems) + ".", severity=WARN, metadata=metadata)
    basis = (
        f"same columns as {baseline_label}"
        if baseline is not None
        else "first published snapshot, nothing to compare with"
    )
    return CheckOutcome(True, f"{where}: {basis}; no rescued values.", severity=WARN, metadata=metadata)


# --------------------------------------------------------------------------- freshness


def newest_registered_partition(glue: GlueClient, spec: TableSpec) -> str | None:
    """The newest partition value registered for the table (what SQL sees), or None."""
    if get_catalog_table(glue, spec.catalog_database, spec.catalog_table) is None:
        return None
    parts = list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table)
    return parts[-1].value if parts else None


def published_export_time(glue: GlueClient, s3: S3Client, spec: TableSpec, partition_key: str) -> dt.datetime | None:
    """When the export behind a published partition was taken: its snapshot's record, else the export's manifest."""
    snapshot = published_snapshot(glue, s3, spec, partition_key)
    recorded = snapshot.extra.get("export_time") if snapshot is not None else None
    if not recorded and snapshot is not None:  # snapshots written before the time was recorded
        export = latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(partition_key))
        recorded = export.export_time if export is not None and export.export_id == snapshot.export_id else None
    try:
        return parse_export_time(recorded)
    except ValueError:
        return None


def freshness(
    spec: TableSpec,
    newest_partition: str | None,
    *,
    now: dt.datetime,
    max_age_hours: float | None = None,
    export_time: dt.datetime | None = None,
) -> CheckOutcome:
    """The newest published partition's export is at most ``max_age_hours`` before ``now``.

    The age runs from ``export_time`` (when the export was taken, e.g. an adopted export's
    ``exportTime``), else from the partition's nominal time (its date at ``export_hour``). A
    table with nothing published yet passes with a note: a freshly added table is not late.
    """
    max_age = spec.freshness_hours if max_age_hours is None else max_age_hours
    where = f"table {spec.dynamodb_table!r}"
    metadata: dict[str, Any] = {"max_age_hours": max_age, "newest_partition": newest_partition}
    if newest_partition is None:
        return CheckOutcome(
            True,
            f"{where}: no partition is published in {spec.catalog_database}.{spec.catalog_table} yet "
            "(nothing to be late: the age is measured from the first published export).",
            metadata={**metadata, "published": False},
        )
    snapshot_time = export_time or spec.export_time(newest_partition)
    age_hours = (now - snapshot_time).total_seconds() / 3600
    metadata.update(
        snapshot_time=snapshot_time.isoformat(),
        age_hours=round(age_hours, 2),
        age_from="export time" if export_time else "partition time",
    )
    if age_hours > max_age:
        return CheckOutcome(
            False,
            f"{where}: newest published partition {newest_partition} is {age_hours:.1f} h old (limit {max_age:g} h); "
            "tonight's export or its conversion did not publish.",
            metadata=metadata,
        )
    return CheckOutcome(
        True,
        f"{where}: newest published partition {newest_partition} is {age_hours:.1f} h old (limit {max_age:g} h).",
        metadata=metadata,
    )
