"""One factory per table: a TableSpec in, that table's Dagster definitions out.

Lineage: the DynamoDB table (external) -> raw export (JSON in S3) -> Parquet snapshot (S3)
-> catalog table (Glue). All three materializable assets share one daily partitions
definition keyed by export date. Asset bodies only fetch clients and call the core.
"""

import re
import time

import dagster as dg

from offload_assets.conversion.options import DataFileMismatch
from offload_assets.defs.change_capture import build_change_capture
from offload_assets.defs.metadata import snapshot_metadata
from offload_assets.defs.notifications import notify_export_finished, notify_snapshot_failed, notify_snapshot_published
from offload_assets.defs.orchestration import build_table_orchestration, follow_upstream_runs
from offload_assets.defs.resources import DynamoDBResource, GlueJobsResource, GlueResource, OffloadS3Resource
from offload_assets.export.partition_export import ExportRefusedError, export_partition
from offload_assets.export.scan import ScanProgress
from offload_assets.snapshot.build import build_snapshot, table_key_attributes
from offload_assets.snapshot.publish import PublishRefusedErrors, publish_snapshot
from offload_assets.snapshot.verdict import blocking_checks_verifier
from offload_assets.table_spec import PARTITION_COLUMN, TableSpec

EXPORT_POOL = "dynamodb_export"


def _key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def asset_keys(spec: TableSpec) -> dict[str, dg.AssetKey]:
    """Keys say where the data physically is (DynamoDB, S3 prefixes, the Glue database) and their
    last part, the node's title in the UI, says what it is: ``Reviews_table`` (the DynamoDB table),
    ``reviews_export`` (its raw export), ``reviews_snapshot`` (the Parquet snapshots) and
    ``reviews`` (the Glue table, named as SQL names it)."""
    return {
        "source": dg.AssetKey(["dynamodb", f"{_key_part(spec.dynamodb_table)}_table"]),
        "export": dg.AssetKey(["s3", "dynamodb_export", f"{spec.name}_export"]),
        "parquet": dg.AssetKey(["s3", "parquet", f"{spec.name}_snapshot"]),
        "catalog": dg.AssetKey(["glue", _key_part(spec.catalog_database), spec.name]),
    }


def partitions_for(spec: TableSpec) -> dg.DailyPartitionsDefinition:
    """Daily partitions; a partition's key is the date of its export (at export_hour, in timezone).

    ``end_offset=1`` makes today's partition materializable: its snapshot is the table as of
    today's export hour.
    """
    return dg.DailyPartitionsDefinition(
        start_date=spec.partitions_start.isoformat(),
        timezone=spec.timezone,
        hour_offset=spec.export_hour,
        end_offset=1,
    )


class LogThrottle:
    """True at most once per ``seconds``: progress lines without flooding the run log."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self._last = seconds, float("-inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.seconds:
            self._last = now
            return True
        return False


def _iceberg_description(spec: TableSpec) -> str:
    from offload_assets.defs.iceberg_assets import iceberg_catalog_description  # pyiceberg only when used

    return iceberg_catalog_description(spec)


def build_table_definitions(spec: TableSpec) -> dg.Definitions:
    keys = asset_keys(spec)
    partitions = partitions_for(spec)
    group = spec.name
    table_uri = f"s3://{spec.s3_bucket}/{spec.parquet_root}/"

    source = dg.AssetSpec(
        key=keys["source"],
        group_name=group,
        kinds={"dynamodb"},
        description=f"DynamoDB table `{spec.dynamodb_table}`, the source of truth (not materialized here).",
    )

    @dg.asset(
        key=keys["export"],
        deps=[source],
        partitions_def=partitions,
        group_name=group,
        kinds={"dynamodb", "s3"},
        pool=EXPORT_POOL,
        description=(
            f"Raw export of `{spec.dynamodb_table}`: gzip DynamoDB-JSON lines in "
            f"`s3://{spec.s3_bucket}/{spec.export_prefix_root}/{PARTITION_COLUMN}=<date>/AWSDynamoDB/<export id>/`, "
            f"laid out like DynamoDB's native export (method: {spec.export_method})."
        ),
    )
    def raw_export(
        context: dg.AssetExecutionContext, dynamodb: DynamoDBResource, s3: OffloadS3Resource
    ) -> dg.MaterializeResult:
        throttle = LogThrottle(seconds=10)

        def progress(p: ScanProgress) -> None:
            if throttle.ready():
                context.log.info(p.describe(spec.dynamodb_table))

        try:
            out = export_partition(
                spec,
                context.partition_key,
                dynamodb=dynamodb.get_client(),
                s3=s3.get_table_client(spec),
                on_progress=progress,
                scan_options={"owner": f"dagster-run-{context.run.run_id}"},  # the export's lease names the run
            )
        except ExportRefusedError as err:
            raise dg.Failure(description=str(err), allow_retries=False) from None
        notified = notify_export_finished(context, spec, s3, out)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": out.manifest.item_count,
                "export_id": out.manifest.export_id,
                "export_method": out.method,
                "export_time": out.manifest.export_time,
                "s3_uri": out.manifest.s3_uri,
                "files": len(out.manifest.data_files),
                "bytes": out.data_bytes,
                "duration_seconds": round(out.duration_seconds, 3),
                "read_capacity_consumed": out.consumed_capacity,
                **out.facts,
                **notified,
            }
        )

    @dg.asset(
        key=keys["parquet"],
        deps=[raw_export],
        partitions_def=partitions,
        group_name=group,
        kinds={"s3", "parquet"},
        automation_condition=follow_upstream_runs(),
        description=(
            f"Parquet snapshot of `{spec.dynamodb_table}` (type descriptors stripped, {spec.compression}) under "
            f"`{table_uri}{PARTITION_COLUMN}=<date>/`. Written to a run-unique directory; not visible to SQL until "
            "the catalog table is materialized."
            + (
                " A day of an incremental export stages only its changed items (and deleted keys) for the Iceberg table."
                if spec.table_format == "iceberg" and spec.export_method == "incremental"
                else ""
            )
        ),
    )
    def parquet_snapshot(
        context: dg.AssetExecutionContext,
        s3: OffloadS3Resource,
        glue: GlueResource,
        glue_jobs: GlueJobsResource,
        dynamodb: DynamoDBResource,
    ) -> dg.MaterializeResult:
        # new columns start with the table's hash key, then its range key
        keys = table_key_attributes(dynamodb.get_client(), spec.dynamodb_table, log=context.log.warning)
        if spec.table_format == "iceberg" and spec.export_method == "incremental":  # stage the day's changes only
            from offload_assets.defs.iceberg_assets import stage_iceberg_changes

            if (staged := stage_iceberg_changes(context, spec, s3=s3, glue=glue, key_attributes=keys)) is not None:
                return staged
        if spec.engine == "glue":  # converted by a PySpark job on AWS Glue, through Dagster Pipes
            from offload_assets.defs.glue_pipes import glue_snapshot_result

            return glue_snapshot_result(context, spec, s3=s3, glue=glue, glue_jobs=glue_jobs, key_attributes=keys)
        started = time.monotonic()
        try:
            snap = build_snapshot(
                s3.get_table_client(spec),
                s3.get_filesystem(),
                glue.get_client(),
                spec,
                context.partition_key,
                run_id=context.run.run_id,
                key_attributes=keys,
            )
        except DataFileMismatch as err:  # the export is not what its manifest says: a retry reads the same bytes
            raise dg.Failure(description=str(err), allow_retries=False) from None
        return dg.MaterializeResult(metadata=snapshot_metadata(snap, started))

    @dg.asset(
        key=keys["catalog"],
        deps=[parquet_snapshot],
        partitions_def=partitions,
        group_name=group,
        kinds={"glue", "iceberg"} if spec.table_format == "iceberg" else {"glue"},
        automation_condition=follow_upstream_runs(),
        description=_iceberg_description(spec)
        if spec.table_format == "iceberg"
        else (
            f'Glue table `"{spec.catalog_database}"."{spec.catalog_table}"` (one partition per snapshot date) and the Athena '
            f'view `"{spec.catalog_database}"."{spec.catalog_table}_latest"` (the newest snapshot only: use it to count items). '
            "The partition's commit marker is switched to the newest Parquet snapshot whose blocking checks passed, Glue "
            "follows it, then superseded and failed snapshot files of that day are "
            f"removed{f'; only the newest {spec.retention_snapshots} snapshots are kept' if spec.retention_snapshots else ''}. "
            "Query with Athena, or locally with `offload-assets query`."
        ),
    )
    def catalog_table(
        context: dg.AssetExecutionContext, s3: OffloadS3Resource, glue: GlueResource, dynamodb: DynamoDBResource
    ) -> dg.MaterializeResult:
        if spec.table_format == "iceberg":  # one Iceberg table, one snapshot of changes per partition
            from offload_assets.defs.iceberg_assets import publish_iceberg_partition

            return publish_iceberg_partition(context, spec, s3=s3, glue=glue, dynamodb=dynamodb)
        client = s3.get_table_client(spec)
        verify = blocking_checks_verifier(client, s3.get_filesystem(), dynamodb.get_client(), spec)
        try:
            published = publish_snapshot(glue.get_client(), client, spec, context.partition_key, verify=verify)
        except PublishRefusedErrors as err:
            notify_snapshot_failed(context, spec, s3, err)
            raise dg.Failure(description=str(err), allow_retries=False) from None
        except Exception as err:
            notify_snapshot_failed(context, spec, s3, err)
            raise
        notified = notify_snapshot_published(context, spec, s3, published)
        view, retention = published.latest_view, published.retention
        return dg.MaterializeResult(
            metadata={
                "dagster/table_name": f"{spec.catalog_database}.{spec.catalog_table}",
                "dagster/row_count": published.snapshot.rows,
                "partition_location": published.location,
                "table_change": published.table_change,
                "partition_change": published.partition_change,
                "removed_snapshots": len(published.removed_run_dirs),
                "removed_run_dirs": dg.MetadataValue.json(list(published.removed_run_dirs)),
                "committed": published.committed,
                "commit_generation": published.generation,
                "refused_run_dirs": dg.MetadataValue.json([list(r) for r in published.refused_run_dirs]),
                "export_id": published.snapshot.export_id,
                "partitions_resynced": published.partitions_resynced,
                "latest_view": f"{spec.catalog_database}.{view.name}" if view else None,
                "latest_view_partition": view.partition if view else None,
                "latest_view_change": view.change if view else None,
                "retention_removed": list(retention.removed_partitions) if retention else [],
                "crawl": dg.MetadataValue.json(published.crawl.__dict__) if published.crawl else None,
                **notified,
            }
        )

    extra = []
    if spec.table_format == "iceberg":
        from offload_assets.defs.iceberg_assets import build_iceberg_maintenance

        extra.append(build_iceberg_maintenance(spec, catalog_key=keys["catalog"]))
    return dg.Definitions.merge(
        dg.Definitions(assets=[source, raw_export, parquet_snapshot, catalog_table]),
        *extra,
        build_table_orchestration(
            spec,
            export_key=keys["export"],
            parquet_key=keys["parquet"],
            catalog_key=keys["catalog"],
            partitions=partitions,
        ),
        build_change_capture(spec, keys["source"]),
    )
