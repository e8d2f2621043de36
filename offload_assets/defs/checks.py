"""Asset checks of one table's snapshots (the Dagster skin of :mod:`offload_assets.snapshot.checks`).

On the Parquet snapshot, per partition: ``row_count_parity`` and ``unique_primary_keys`` are
blocking (a snapshot that fails them is never published: the catalog step of the same run
does not start, and their verdict is written into the snapshot, so no later catalog-only run
publishes it either), ``schema_drift`` warns. On the catalog table: ``sql_row_count_parity`` per
partition (what SQL counts, after publishing) and ``newest_partition_fresh`` for the table,
which a sensor re-evaluates between runs so a missed night shows without anyone looking.
"""

import datetime as dt
import json
import warnings
from typing import Any

import dagster as dg

from offload_assets.defs.metadata import check_result
from offload_assets.defs.resources import AthenaResource, DynamoDBResource, GlueResource, OffloadS3Resource
from offload_assets.export.layout import latest_completed_export
from offload_assets.snapshot.build import SnapshotManifest, key_attributes, latest_complete_snapshot
from offload_assets.snapshot.checks import (
    ERROR,
    WARN,
    CheckOutcome,
    freshness,
    newest_registered_partition,
    previous_published_snapshot,
    published_export_time,
    published_snapshot,
    row_count_parity,
    schema_drift,
    snapshot_parquet_rows,
    sql_count_statement,
    sql_row_count_parity,
    unique_primary_keys,
)
from offload_assets.snapshot.verdict import BLOCKING_CHECKS, record_check_results
from offload_assets.table_spec import TableSpec

FRESHNESS_CHECK = "newest_partition_fresh"


def _no_snapshot(spec: TableSpec, partition_key: str) -> dg.AssetCheckResult:
    return check_result(
        CheckOutcome(
            False,
            (
                f"table {spec.dynamodb_table!r}, partition {partition_key}: no complete Parquet snapshot under "
                f"s3://{spec.s3_bucket}/{spec.parquet_partition_prefix(partition_key)}/"
            ),
        )
    )


def _export_items(s3: Any, spec: TableSpec, snapshot: SnapshotManifest) -> int | None:
    recorded = snapshot.extra.get("export_item_count")
    if recorded is not None:
        return int(recorded)
    export = latest_completed_export(
        s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(snapshot.partition_key)
    )
    return export.item_count if export is not None and export.export_id == snapshot.export_id else None


def _unique_primary_keys(
    spec: TableSpec, partition_key: str, snapshot: SnapshotManifest, s3: OffloadS3Resource, dynamodb: DynamoDBResource
) -> dg.AssetCheckResult:
    ddb = dynamodb.get_client()
    try:
        attributes = key_attributes(ddb, spec.dynamodb_table)
    except ddb.exceptions.ClientError as err:
        return check_result(
            CheckOutcome(
                False,
                severity=WARN,
                description=(
                    f"table {spec.dynamodb_table!r}, partition {partition_key}: cannot verify keys, DescribeTable "
                    f"failed ({err.response.get('Error', {}).get('Code')}: {err.response.get('Error', {}).get('Message')})"
                ),
            )
        )
    filesystem = s3.get_filesystem()
    present = snapshot_parquet_rows(filesystem, snapshot)
    return check_result(unique_primary_keys(spec, filesystem, snapshot, attributes, present))


def build_snapshot_checks(
    spec: TableSpec, *, parquet_key: dg.AssetKey, catalog_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """The five checks of one table, in three ops (partitioned checks are a Dagster preview feature: its warning is silenced here).

    The three Parquet checks share one op (``parquet_snapshot_checks``, each runnable alone): fewer
    ops per table keeps definitions of many tables quick to load.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.multi_asset_check(
            name=f"{spec.name}_parquet_snapshot_checks",
            can_subset=True,
            specs=[
                dg.AssetCheckSpec(
                    "row_count_parity",
                    asset=parquet_key,
                    partitions_def=partitions,
                    blocking=True,
                    description="Export manifest item count = rows in the snapshot's Parquet files (read from their "
                    "footers) = rows the snapshot claims (an Iceberg day staged from an incremental export: previous rows + "
                    "inserted - deleted = the export's items, the files hold the inserted + updated items). Blocking: a "
                    "snapshot failing it is not published.",
                ),
                dg.AssetCheckSpec(
                    "unique_primary_keys",
                    asset=parquet_key,
                    partitions_def=partitions,
                    blocking=True,
                    description="Every item's primary key (from DescribeTable) appears exactly once in the snapshot. Blocking.",
                ),
                dg.AssetCheckSpec(
                    "schema_drift",
                    asset=parquet_key,
                    partitions_def=partitions,
                    description="Warns with details when the snapshot has columns the previous published partition did "
                    "not, a column changed type, or values were rescued into _rescued_data.",
                ),
            ],
        )
        def parquet_snapshot_checks(
            context: dg.AssetCheckExecutionContext,
            s3: OffloadS3Resource,
            dynamodb: DynamoDBResource,
            glue: GlueResource,
        ):
            selected = {key.name for key in context.selected_asset_check_keys}
            partition_key = context.partition_key
            client = s3.get_table_client(spec)
            snapshot = latest_complete_snapshot(client, spec, partition_key)
            blocking: dict[str, CheckOutcome] = {}
            for name in ("row_count_parity", "unique_primary_keys", "schema_drift"):
                if name not in selected:
                    continue
                if snapshot is None:
                    result = _no_snapshot(spec, partition_key)
                elif name == "row_count_parity":
                    present = snapshot_parquet_rows(s3.get_filesystem(), snapshot)
                    result = check_result(
                        row_count_parity(spec, snapshot, present, export_items=_export_items(client, spec, snapshot))
                    )
                elif name == "unique_primary_keys":
                    result = _unique_primary_keys(spec, partition_key, snapshot, s3, dynamodb)
                elif spec.table_format == "iceberg":  # the baseline is the Iceberg table's columns
                    from offload_assets.defs.iceberg_assets import iceberg_baseline_schema

                    baseline = iceberg_baseline_schema(spec, s3, glue)
                    result = check_result(
                        schema_drift(spec, snapshot, baseline=baseline, baseline_label="the Iceberg table")
                    )
                else:
                    previous = previous_published_snapshot(glue.get_client(), client, spec, partition_key)
                    result = check_result(
                        schema_drift(
                            spec,
                            snapshot,
                            baseline=previous.schema if previous else None,
                            baseline_label=f"partition {previous.partition_key}" if previous else None,
                        )
                    )
                if snapshot is not None and name in BLOCKING_CHECKS:
                    blocking[name] = CheckOutcome(
                        result.passed,
                        result.description or "",
                        WARN if result.severity == dg.AssetCheckSeverity.WARN else ERROR,
                    )
                yield dg.AssetCheckResult(
                    asset_key=parquet_key,
                    check_name=name,
                    passed=result.passed,
                    severity=result.severity,
                    description=result.description,
                    metadata=result.metadata,
                )
            if blocking:  # the verdict goes into the snapshot: only a passed one can ever be published
                record_check_results(client, snapshot, blocking)

        @dg.asset_check(
            asset=catalog_key,
            name="sql_row_count_parity",
            partitions_def=partitions,
            description="SQL's count of the partition (Athena on AWS, DuckDB locally) = the published snapshot's rows "
            "= the export's items.",
        )
        def sql_row_count_parity_check(
            context: dg.AssetCheckExecutionContext, s3: OffloadS3Resource, glue: GlueResource, athena: AthenaResource
        ) -> dg.AssetCheckResult:
            from offload_assets.sql.query import QueryError, run_query

            partition_key = context.partition_key
            if spec.table_format == "iceberg":  # the table as this partition's commit left it
                from offload_assets.defs.iceberg_assets import iceberg_sql_parity

                outcome, facts = iceberg_sql_parity(spec, partition_key, s3, glue, athena)
                return check_result(outcome, **facts)
            published = published_snapshot(glue.get_client(), s3.get_table_client(spec), spec, partition_key)
            try:
                result = run_query(
                    sql_count_statement(spec, partition_key),
                    connection=athena.connection(),
                    default_database=spec.catalog_database,
                    athena_workgroup=athena.workgroup,
                    athena_output_location=athena.output_location,
                )
            except QueryError as err:
                return check_result(
                    CheckOutcome(
                        False, f"table {spec.dynamodb_table!r}, partition {partition_key}: the SQL count failed: {err}"
                    )
                )
            export_items = published.extra.get("export_item_count") if published else None
            outcome = sql_row_count_parity(
                spec, partition_key, sql_rows=int(result.scalar()), published=published, export_items=export_items
            )
            return check_result(
                outcome,
                sql_engine=result.engine,
                sql_seconds=round(result.elapsed_seconds, 3),
                sql_bytes_scanned=result.bytes_scanned,
                sql=sql_count_statement(spec, partition_key),
            )

    @dg.asset_check(
        asset=catalog_key,
        name=FRESHNESS_CHECK,
        description=f"The newest published partition is at most {spec.freshness_hours:g} h old (since its export time). "
        "Evaluated with every publish and, between runs, by the table's freshness sensor; passes with a note while "
        "nothing is published yet.",
    )
    def freshness_check(glue: GlueResource, s3: OffloadS3Resource) -> dg.AssetCheckResult:
        return check_result(_freshness_of(spec, glue, s3)[1])

    checks = [parquet_snapshot_checks, sql_row_count_parity_check, freshness_check]
    if spec.table_format == "iceberg":
        from offload_assets.defs.iceberg_assets import build_changes_check

        checks.append(build_changes_check(spec, catalog_key=catalog_key, partitions=partitions))
    return checks


def _freshness_of(spec: TableSpec, glue: GlueResource, s3: OffloadS3Resource) -> tuple[str | None, CheckOutcome]:
    if spec.table_format == "iceberg":  # the newest partition commit in the Iceberg table's snapshots
        from offload_assets.defs.iceberg_assets import iceberg_table_freshness

        return iceberg_table_freshness(spec, s3, glue)
    return table_freshness(spec, glue.get_client(), s3.get_table_client(spec))


def table_freshness(spec: TableSpec, glue: Any, s3: Any) -> tuple[str | None, CheckOutcome]:
    """The newest published partition (None before the first publish) and its freshness, aged from its export's time."""
    newest = newest_registered_partition(glue, spec)
    export_time = published_export_time(glue, s3, spec, newest) if newest else None
    return newest, freshness(spec, newest, now=dt.datetime.now(dt.UTC), export_time=export_time)


def build_freshness_sensor(spec: TableSpec, *, catalog_key: dg.AssetKey) -> dg.SensorDefinition:
    """Re-evaluates ``newest_partition_fresh`` without a run, reporting only when its verdict changes.

    Before the first publish it reports nothing: a freshly added table shows its check as not yet
    evaluated, never as failed.
    """

    @dg.sensor(
        name=f"{spec.name}_freshness_sensor",
        minimum_interval_seconds=max(spec.sensor_interval_seconds, 300),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Reports the freshness check of {spec.catalog_database}.{spec.catalog_table} when it changes "
        "(e.g. the night's partition did not arrive in time).",
    )
    def freshness_sensor(
        context: dg.SensorEvaluationContext, glue: GlueResource, s3: OffloadS3Resource
    ) -> dg.SensorResult:
        newest, outcome = _freshness_of(spec, glue, s3)
        state = json.dumps({"passed": outcome.passed, "newest": newest})
        if newest is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(outcome.description), cursor=context.cursor)
        if state == context.cursor:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"unchanged: {outcome.description}"), cursor=state)
        result = check_result(outcome)
        evaluation = dg.AssetCheckEvaluation(
            asset_key=catalog_key,
            check_name=FRESHNESS_CHECK,
            passed=result.passed,
            metadata=result.metadata,
            severity=result.severity,
            description=result.description,
        )
        return dg.SensorResult(asset_events=[evaluation], cursor=state)

    return freshness_sensor
