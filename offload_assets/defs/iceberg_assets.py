"""The Dagster skin of a table with ``table_format: iceberg`` (issue 17).

The catalog asset commits each partition to the table's Iceberg table (one snapshot of that day's
changes, :mod:`offload_assets.iceberg.publish`). With ``export_method: incremental`` the Parquet
snapshot asset stages only the day's converted changes when it can (:func:`stage_iceberg_changes`,
:mod:`offload_assets.iceberg.incremental`) and the catalog asset applies them directly; its checks read the commits' snapshot summaries
(:mod:`offload_assets.iceberg.checks`); a maintenance asset on the table's own schedule
(``maintenance_cron``) expires snapshots, removes orphan files and compacts small files
(:mod:`offload_assets.iceberg.maintenance`: pyiceberg locally, Athena OPTIMIZE/VACUUM on AWS).
"""

import datetime as dt
import time
import warnings
from typing import Any

import dagster as dg
from pyiceberg.table import Table

from offload_assets.aws.s3_writes import s3_put_kwargs
from offload_assets.conversion.schema_codec import schema_from_text
from offload_assets.defs.notifications import notify_iceberg_committed, notify_snapshot_failed
from offload_assets.defs.resources import AthenaResource, DynamoDBResource, GlueResource, OffloadS3Resource
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.checks import (
    changes_add_up,
    commit_of,
    iceberg_freshness,
    iceberg_row_parity,
    sql_count_of_commit,
)
from offload_assets.iceberg.incremental import (
    APPLIED_FROM,
    StaleChangesError,
    publish_partition,
    stage_incremental_changes,
)
from offload_assets.iceberg.maintenance import athena_maintenance_statements, maintain_table
from offload_assets.iceberg.publish import PartitionOrderError, iceberg_location
from offload_assets.snapshot.build import MissingSnapshotError, key_attributes
from offload_assets.snapshot.checks import CheckOutcome
from offload_assets.snapshot.publish import UnpublishableSnapshotError
from offload_assets.snapshot.verdict import blocking_checks_verifier
from offload_assets.table_spec import TableSpec

CHANGES_CHECK = "iceberg_changes_add_up"


def iceberg_table(spec: TableSpec, s3: OffloadS3Resource, glue: GlueResource) -> Table | None:
    catalog = connect_catalog(s3.connection(), s3_put_kwargs(spec), glue=glue.get_client())
    return load_table(catalog, iceberg_location(spec))


def iceberg_catalog_description(spec: TableSpec) -> str:
    """The catalog asset's description (the asset page) for an Iceberg table."""
    where = iceberg_location(spec)
    return (
        f'Iceberg table `"{spec.catalog_database}"."{spec.catalog_table}"` in Glue (data and metadata under '
        f"`{where.location}/`): the current state of `{spec.dynamodb_table}`, one snapshot per partition holding "
        "that day's inserted, updated and deleted items (counts in the snapshot summary and in this asset's "
        "metadata). Past days by time travel: `FOR TIMESTAMP AS OF TIMESTAMP '...'` or `FOR VERSION AS OF "
        f'<snapshot id>`; history in `"{spec.catalog_table}$snapshots"`. Partitions commit in date order. Query with '
        "Athena, or locally with `offload-assets query`."
    )


def stage_iceberg_changes(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    s3: OffloadS3Resource,
    glue: GlueResource,
    key_attributes: tuple[str, ...],
) -> dg.MaterializeResult | None:
    """The Parquet snapshot asset's body for a day applied from its incremental export (None: convert the full export).

    Stages only the day's changed items (upserts as Parquet, deleted keys beside them); the merged
    full export is not converted.
    """
    from offload_assets.defs.metadata import snapshot_metadata

    started = time.monotonic()
    try:
        snap = stage_incremental_changes(
            s3.get_table_client(spec),
            s3.get_filesystem(),
            iceberg_table(spec, s3, glue),
            spec,
            context.partition_key,
            run_id=context.run.run_id,
            key_names=key_attributes,
        )
    except PartitionOrderError as err:
        raise dg.Failure(description=str(err), allow_retries=False) from None
    if snap is None:
        return None
    extra = snap.extra
    context.log.info(
        f"staged the day's changes only: {snap.rows} upserted items, {extra['delete_keys']} deleted keys "
        f"(incremental export {extra['incremental_export_id']}; the table has {extra['previous_rows']} rows)"
    )
    return dg.MaterializeResult(
        metadata={
            **snapshot_metadata(snap, started),
            "conversion": "changes only (incremental export)",
            "incremental_export_id": extra["incremental_export_id"],
            "base_export_id": extra["base_export_id"],
            "staged_upserts": dg.MetadataValue.int(snap.rows),
            "staged_delete_keys": dg.MetadataValue.int(extra["delete_keys"]),
            **{k: dg.MetadataValue.int(extra[k]) for k in ("inserted", "updated", "deleted", "previous_rows")},
            "already_applied": extra["already_applied"],
        }
    )


def publish_iceberg_partition(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    s3: OffloadS3Resource,
    glue: GlueResource,
    dynamodb: DynamoDBResource,
) -> dg.MaterializeResult:
    """The catalog asset's body for an Iceberg table: commit the partition's changes, report the snapshot."""
    catalog = connect_catalog(s3.connection(), s3_put_kwargs(spec), glue=glue.get_client())
    keys = tuple(key_attributes(dynamodb.get_client(), spec.dynamodb_table))
    client, filesystem = s3.get_table_client(spec), s3.get_filesystem()
    verify = blocking_checks_verifier(client, filesystem, dynamodb.get_client(), spec)
    try:
        out = publish_partition(catalog, client, filesystem, spec, context.partition_key, keys, verify=verify)
    except (PartitionOrderError, MissingSnapshotError, StaleChangesError, UnpublishableSnapshotError) as err:
        notify_snapshot_failed(context, spec, s3, err)
        raise dg.Failure(description=str(err), allow_retries=False) from None
    except Exception as err:
        notify_snapshot_failed(context, spec, s3, err)
        raise
    metadata_location = catalog.load_table(iceberg_location(spec).identifier).metadata_location
    notified = notify_iceberg_committed(context, spec, s3, out, metadata_location)
    return dg.MaterializeResult(
        metadata={
            "dagster/table_name": f"{spec.catalog_database}.{spec.catalog_table}",
            "dagster/row_count": out.rows,
            "table_format": "iceberg",
            "table_change": out.change,
            "applied_from": out.summary.get(APPLIED_FROM, "full-export diff"),
            "snapshot_id": str(out.snapshot_id),
            "export_id": out.export_id,
            **{k.replace("-", "_"): dg.MetadataValue.int(v) for k, v in out.counts.items()},
            "data_files": dg.MetadataValue.int(out.data_files),
            "data_bytes": dg.MetadataValue.int(out.data_bytes),
            "delete_files": dg.MetadataValue.int(out.delete_files),
            "position_deletes_added": out.applied.position_deletes_added if out.applied else 0,
            "files_added": out.applied.files_added if out.applied else 0,
            "files_removed": out.applied.files_removed if out.applied else 0,
            "staging_objects_removed": out.removed_staging,
            "metadata_location": metadata_location,
            **notified,
        }
    )


# --- checks ---------------------------------------------------------------------------------


def iceberg_sql_parity(
    spec: TableSpec, partition_key: str, s3: OffloadS3Resource, glue: GlueResource, athena: AthenaResource
) -> tuple[CheckOutcome, dict[str, Any]]:
    from offload_assets.sql.query import QueryError, run_query

    commit = commit_of(iceberg_table(spec, s3, glue), partition_key)
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    if commit is None:
        return CheckOutcome(False, f"{where}: no Iceberg commit of this partition"), {}
    sql = sql_count_of_commit(spec, commit)
    try:
        result = run_query(
            sql,
            connection=athena.connection(),
            default_database=spec.catalog_database,
            athena_workgroup=athena.workgroup,
            athena_output_location=athena.output_location,
        )
    except QueryError as err:
        return CheckOutcome(False, f"{where}: the SQL count failed: {err}"), {"sql": sql}
    outcome = iceberg_row_parity(spec, partition_key, commit, sql_rows=int(result.scalar()), sql_engine=result.engine)
    return outcome, {"sql": sql, "sql_engine": result.engine, "sql_seconds": round(result.elapsed_seconds, 3)}


def iceberg_table_freshness(
    spec: TableSpec, s3: OffloadS3Resource, glue: GlueResource
) -> tuple[str | None, CheckOutcome]:
    return iceberg_freshness(spec, iceberg_table(spec, s3, glue), now=dt.datetime.now(dt.UTC))


def iceberg_baseline_schema(spec: TableSpec, s3: OffloadS3Resource, glue: GlueResource) -> Any:
    """The Iceberg table's columns (the converter's Arrow schema it records), the schema-drift baseline."""
    table = iceberg_table(spec, s3, glue)
    stored = table.properties.get("offload_assets.arrow_schema") if table is not None else None
    return schema_from_text(stored) if stored else None


def build_changes_check(
    spec: TableSpec, *, catalog_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    from offload_assets.defs.metadata import check_result

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.asset_check(
            asset=catalog_key,
            name=CHANGES_CHECK,
            partitions_def=partitions,
            description="The partition's Iceberg commit adds up: inserted + updated + unchanged = the export's items, "
            "updated + deleted + unchanged = the rows before the commit.",
        )
        def changes_check(
            context: dg.AssetCheckExecutionContext, s3: OffloadS3Resource, glue: GlueResource
        ) -> dg.AssetCheckResult:
            commit = commit_of(iceberg_table(spec, s3, glue), context.partition_key)
            return check_result(changes_add_up(spec, context.partition_key, commit))

    return changes_check


# --- maintenance ----------------------------------------------------------------------------


def maintenance_key(catalog_key: dg.AssetKey) -> dg.AssetKey:
    return dg.AssetKey([*catalog_key.path, "maintenance"])


def build_iceberg_maintenance(spec: TableSpec, *, catalog_key: dg.AssetKey) -> dg.Definitions:
    """The maintenance asset, its job and its schedule (``maintenance_cron`` in the table's timezone)."""
    target_bytes = spec.compaction_target_mb * 1024 * 1024

    @dg.asset(
        key=maintenance_key(catalog_key),
        deps=[catalog_key],
        group_name=spec.name,
        kinds={"iceberg"},
        description=(
            f'Maintenance of the Iceberg table "{spec.catalog_database}"."{spec.catalog_table}": expires snapshots beyond '
            f"{spec.retention_snapshots or 'no'} snapshots / {spec.retention_days or 'no'} days, removes orphan files, "
            f"compacts data files smaller than {spec.compaction_target_mb} MB. pyiceberg locally; Athena OPTIMIZE and "
            "VACUUM on AWS."
        ),
    )
    def iceberg_maintenance(
        context: dg.AssetExecutionContext, s3: OffloadS3Resource, glue: GlueResource, athena: AthenaResource
    ) -> dg.MaterializeResult:
        if athena.connection().target != "local":
            return _athena_maintenance(context, spec, athena, target_bytes)
        table = iceberg_table(spec, s3, glue)
        if table is None:
            return dg.MaterializeResult(metadata={"skipped": "no Iceberg table yet"})
        out = maintain_table(
            table,
            s3.get_table_client(spec),
            retention_snapshots=spec.retention_snapshots,
            retention_days=spec.retention_days,
            target_bytes=target_bytes,
        )
        return dg.MaterializeResult(
            metadata={
                "engine": "pyiceberg",
                "snapshots": dg.MetadataValue.int(out.snapshots),
                "expired_snapshots": dg.MetadataValue.int(len(out.expired_snapshots)),
                "data_files": dg.MetadataValue.int(out.data_files),
                "data_bytes": dg.MetadataValue.int(out.data_bytes),
                "orphan_files_removed": dg.MetadataValue.int(out.orphan_files_removed),
                "orphan_bytes_removed": dg.MetadataValue.int(out.orphan_bytes_removed),
                "files_compacted": dg.MetadataValue.int(out.files_compacted),
                "files_written": dg.MetadataValue.int(out.files_written),
                "snapshot_id": str(out.snapshot_id),
            }
        )

    job = dg.define_asset_job(
        f"{spec.name}_iceberg_maintenance_job",
        selection=dg.AssetSelection.assets(iceberg_maintenance),
        description=f"Maintenance of the Iceberg table of {spec.dynamodb_table} (expire, orphans, compact).",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{spec.name}_iceberg_maintenance",
        job=job,
        cron_schedule=spec.maintenance_cron,
        execution_timezone=spec.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(assets=[iceberg_maintenance], jobs=[job], schedules=[schedule])


def _athena_maintenance(
    context: dg.AssetExecutionContext, spec: TableSpec, athena: AthenaResource, target_bytes: int
) -> dg.MaterializeResult:
    from offload_assets.sql.athena import AthenaSqlEngine

    statements = athena_maintenance_statements(
        spec.catalog_database,
        spec.catalog_table,
        retention_snapshots=spec.retention_snapshots,
        retention_days=spec.retention_days,
        target_bytes=target_bytes,
    )
    engine = AthenaSqlEngine(
        athena=athena.get_client(), workgroup=athena.workgroup, output_location=athena.output_location
    )
    for sql in statements:
        context.log.info(sql)
        engine.query(sql, default_database=spec.catalog_database)
    return dg.MaterializeResult(metadata={"engine": "athena", "statements": dg.MetadataValue.json(statements)})


__all__ = [
    "CHANGES_CHECK",
    "build_changes_check",
    "build_iceberg_maintenance",
    "iceberg_baseline_schema",
    "iceberg_sql_parity",
    "iceberg_table_freshness",
    "maintenance_key",
    "publish_iceberg_partition",
    "stage_iceberg_changes",
]
