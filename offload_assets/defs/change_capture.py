"""Change capture in Dagster (issue 18): the table's stream, the applied-changes asset, its checks, its sensor.

Lineage: DynamoDB table -> ``dynamodb/<table>_stream`` (the table's DynamoDB stream, external) ->
``iceberg/<database>/<table>_changes`` (the stream's changes applied to the table's Iceberg table).
Only tables with ``change_capture: streams`` get these. The core is :mod:`offload_assets.cdc`.
"""

import re

import dagster as dg

from offload_assets.aws.s3_writes import s3_put_kwargs
from offload_assets.cdc.capture import NotBootstrapped, waiting_lag
from offload_assets.cdc.catch_up import CaptureRun
from offload_assets.cdc.reader import ContinuityLost
from offload_assets.cdc.table_capture import (
    ChangeCaptureRefused,
    TableCapture,
    iceberg_location,
    open_table_capture,
    run_table_capture,
)
from offload_assets.defs.resources import DynamoDBResource, GlueResource, OffloadS3Resource
from offload_assets.iceberg.catalog import connect_catalog
from offload_assets.table_spec import TableSpec

LAG_CHECK = "lag_within_max"
CONTINUITY_CHECK = "stream_continuity"
#: Run facts recorded as numbers on every materialization (the UI plots each one over time).
PLOTTED_FACTS = (
    "lag_seconds",
    "records_read",
    "inserts",
    "updates",
    "deletes",
    "ttl_deletes",
    "shards",
    "commits",
    "conflicts_retried",
    "rebootstraps",
)


def _key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def change_capture_keys(spec: TableSpec) -> dict[str, dg.AssetKey]:
    return {
        "stream": dg.AssetKey(["dynamodb", f"{_key_part(spec.dynamodb_table)}_stream"]),
        "changes": dg.AssetKey(["iceberg", _key_part(spec.catalog_database), f"{spec.name}_changes"]),
    }


def open_capture(
    spec: TableSpec, dynamodb: DynamoDBResource, s3: OffloadS3Resource, glue: GlueResource
) -> TableCapture:
    connection = dynamodb.connection()
    return open_table_capture(
        spec,
        dynamodb=dynamodb.get_client(),
        streams=connection.client("dynamodbstreams"),
        s3=s3.get_table_client(spec),
        catalog=connect_catalog(s3.connection(), s3_put_kwargs(spec), glue=glue.get_client()),
    )


def run_metadata(run: CaptureRun) -> dict:
    facts = run.facts()
    return {
        **{name: dg.MetadataValue.float(float(facts[name])) for name in PLOTTED_FACTS},
        "caught_up": facts["caught_up"],
        "continuity_lost": dg.MetadataValue.json(facts["continuity_lost"]),
        "rebootstrapped_from": dg.MetadataValue.json([r.origin for r in run.rebootstraps]),
    }


def check_results(spec: TableSpec, run: CaptureRun) -> list[dg.AssetCheckResult]:
    lag_minutes = run.facts()["lag_seconds"] / 60
    lost = run.continuity_lost
    return [
        dg.AssetCheckResult(
            check_name=LAG_CHECK,
            passed=lag_minutes <= spec.max_lag_minutes,
            metadata={"lag_minutes": round(lag_minutes, 3), "max_lag_minutes": spec.max_lag_minutes},
            description=f"oldest change still waiting: {lag_minutes:.1f} min (at most {spec.max_lag_minutes:g})",
        ),
        dg.AssetCheckResult(
            check_name=CONTINUITY_CHECK,
            passed=not lost,
            metadata={
                "gaps": dg.MetadataValue.json([f"{r.reason}: {r.message}" for r in lost]),
                "rebootstrapped_from": dg.MetadataValue.json([r.origin for r in lost]),
            },
            description=(
                "every stream record since the last commit was read"
                if not lost
                else f"continuity lost ({', '.join(r.reason for r in lost)}); re-bootstrapped from a new native export"
            ),
        ),
    ]


def build_change_capture(spec: TableSpec, source_key: dg.AssetKey) -> dg.Definitions:
    """The stream, applied-changes asset, checks, job and sensor of ``spec`` (nothing when capture is off)."""
    if spec.change_capture != "streams":
        return dg.Definitions()
    keys = change_capture_keys(spec)
    group = spec.name
    where = iceberg_location(spec)
    stream = dg.AssetSpec(
        key=keys["stream"],
        deps=[source_key],
        group_name=group,
        kinds={"dynamodb"},
        description=f"The DynamoDB stream of `{spec.dynamodb_table}` (24 h of inserts, updates and deletes; external).",
    )

    @dg.asset(
        key=keys["changes"],
        deps=[stream],
        group_name=group,
        kinds={"iceberg", "dynamodb"},
        check_specs=[
            dg.AssetCheckSpec(LAG_CHECK, asset=keys["changes"], description=f"Lag under {spec.max_lag_minutes:g} min."),
            dg.AssetCheckSpec(
                CONTINUITY_CHECK,
                asset=keys["changes"],
                description="No stream records lost (trimmed, expired iterators, a re-enabled stream) since the last run.",
            ),
        ],
        description=(
            f"The stream's changes applied to the Iceberg table `{where.database}.{where.table}`, exactly once: each "
            "commit holds the changes and the stream position together. The first run (and any run that finds "
            "continuity lost) bootstraps from a new native export. Metadata per run: lag, records read, "
            "inserts / updates / deletes, TTL deletes, shards."
        ),
    )
    def applied_changes(
        context: dg.AssetExecutionContext, dynamodb: DynamoDBResource, s3: OffloadS3Resource, glue: GlueResource
    ) -> dg.MaterializeResult:
        try:
            capture = open_capture(spec, dynamodb, s3, glue)
            run = run_table_capture(
                capture, on_step=lambda step: context.log.info(f"{spec.dynamodb_table}: applied {step.facts()}")
            )
        except (ChangeCaptureRefused, ContinuityLost) as err:
            raise dg.Failure(description=str(err), allow_retries=False) from None
        for gap in run.rebootstraps:
            context.log.warning(f"{spec.dynamodb_table}: {gap.reason}: {gap.message}; loaded {gap.origin}")
        return dg.MaterializeResult(metadata=run_metadata(run), check_results=check_results(spec, run))

    job = dg.define_asset_job(
        f"{spec.name}_change_capture_job",
        selection=dg.AssetSelection.assets(keys["changes"]),
        description=f"Apply what waits in {spec.dynamodb_table}'s DynamoDB stream to its Iceberg table.",
    )

    @dg.sensor(
        name=f"{spec.name}_change_capture_sensor",
        job=job,
        minimum_interval_seconds=spec.change_capture_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"A change-capture run when records wait in {spec.dynamodb_table}'s stream; says why it skips.",
    )
    def change_capture_sensor(
        context: dg.SensorEvaluationContext, dynamodb: DynamoDBResource, s3: OffloadS3Resource, glue: GlueResource
    ):
        busy = context.instance.get_run_records(filters=dg.RunsFilter(job_name=job.name, statuses=_UNFINISHED), limit=1)
        if busy:
            return dg.SkipReason(f"change-capture run {busy[0].dagster_run.run_id} has not finished yet")
        try:
            capture = open_capture(spec, dynamodb, s3, glue)
            lag = waiting_lag(capture.source, capture.target, capture.settings)
        except ChangeCaptureRefused as err:
            return dg.SkipReason(f"change capture cannot run: {err}")
        except NotBootstrapped:
            return dg.RunRequest(tags={"offload_assets/change_capture": "bootstrap"})
        except ContinuityLost as err:
            context.log.warning(f"{spec.dynamodb_table}: {err}")
            return dg.RunRequest(tags={"offload_assets/change_capture": f"continuity lost: {err.reason}"})
        if lag is None:
            return dg.SkipReason(f"nothing waiting in {spec.dynamodb_table}'s stream (caught up)")
        return dg.RunRequest(tags={"offload_assets/change_capture": f"changes waiting, oldest {lag:.0f} s old"})

    return dg.Definitions(assets=[stream, applied_changes], jobs=[job], sensors=[change_capture_sensor])


_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
