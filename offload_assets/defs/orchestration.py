"""How one table runs itself: the nightly schedule, automation, sensors and checks.

- ``<table>_offload_job`` (export, convert, check, publish) is the table's only job: the UI,
  the demo and job backfills run all of it, and its runs do not trigger automation a second time.
- Every night at ``export_hour`` in ``timezone`` the ``<table>_nightly_export`` schedule runs
  only its raw export step for that day's partition (the table as of that instant).
- The Parquet snapshot and the catalog table follow by declarative automation
  (:func:`follow_upstream_runs`, evaluated by ``<table>_automation``), not by another cron.
- ``<table>_export_sensor`` (and ``<table>_export_notifications`` when a queue is configured)
  picks up exports started outside Dagster and runs the job's conversion and registration steps.
"""

from __future__ import annotations

import dagster as dg

from offload_assets.defs.checks import build_freshness_sensor, build_snapshot_checks
from offload_assets.defs.sensors import build_export_sensor, build_notification_sensor
from offload_assets.table_spec import TableSpec

#: "true" on runs of ``<table>_offload_job`` (a job tag): those runs convert and publish what they
#: export, so their updates must not trigger automation. The schedule's export-only runs set "false".
CONVERTS_IN_RUN_TAG = "offload_assets/converts_in_run"


def follow_upstream_runs() -> dg.AutomationCondition:
    """Materialize a partition after a *run* updated its upstream partition, once.

    Like ``AutomationCondition.eager()``, without its two traps here: updates reported by a
    sensor (no run) do not trigger, because the export sensor requests that conversion itself
    (eager would race it and convert twice); and a parent updated by a run that also targeted
    this asset does not trigger (that run already did or refused it). Any partition qualifies,
    not only the latest, so exports backfilled with the export job are converted too. The
    parent's blocking checks must have passed, unless the parent runs in the same run (where
    Dagster itself stops at a failed blocking check).
    """
    A = dg.AutomationCondition
    # "Came from a run" is any_new_update_has_run_tags() (with no tag filter, true for any run);
    # it sees nothing on the tick after an empty event log, where executed_with_tags() (the
    # asset's latest materialization came from a run) covers the newest update.
    from_a_run = (A.any_new_update_has_run_tags() | A.executed_with_tags()).with_label("update_came_from_a_run")
    # executed_with_root_target() only knows runs launched with an explicit asset selection;
    # whole runs of the offload job carry CONVERTS_IN_RUN_TAG="true" instead.
    converts_itself = {CONVERTS_IN_RUN_TAG: "true"}
    converting_run = (
        A.all_new_updates_have_run_tags(tag_values=converts_itself) | A.executed_with_tags(tag_values=converts_itself)
    ).with_label("updated_by_a_run_that_converts_itself")
    updated_by_a_run = (A.newly_updated() & from_a_run & ~A.executed_with_root_target() & ~converting_run).with_label(
        "updated_by_another_run"
    )
    parents_updated = A.any_deps_match(updated_by_a_run | A.will_be_requested()).with_label("parent_updated_by_a_run")
    parents_checked = A.all_deps_match(
        A.will_be_requested() | A.all_checks_match(A.check_passed(), blocking_only=True)
    ).with_label("parent_blocking_checks_passed")
    return (
        parents_updated.since_last_handled()
        & ~A.any_deps_missing()
        & ~A.any_deps_in_progress()
        & ~A.in_progress()
        & parents_checked
    ).with_label("follow_upstream_runs")


def build_table_orchestration(
    spec: TableSpec,
    *,
    export_key: dg.AssetKey,
    parquet_key: dg.AssetKey,
    catalog_key: dg.AssetKey,
    partitions: dg.DailyPartitionsDefinition,
) -> dg.Definitions:
    """The table's one job, its checks, schedule and sensors (its assets come from the table factory).

    One job per table, not one per use: Dagster resolves every asset job against the whole asset
    graph, so with 50 tables three jobs each made loading definitions take over 2 s. The schedule
    and the sensors run subsets of the job (``RunRequest(asset_selection=...)``) instead.
    """
    offload_job = dg.define_asset_job(
        f"{spec.name}_offload_job",
        selection=dg.AssetSelection.assets(export_key, parquet_key, catalog_key),
        description=(
            f"Export, convert, check and register one daily snapshot of DynamoDB table {spec.dynamodb_table}. "
            "The nightly schedule runs only its export step (conversion follows by automation); the export "
            "sensors run only its conversion and registration."
        ),
        tags={CONVERTS_IN_RUN_TAG: "true"},
    )

    @dg.schedule(
        name=f"{spec.name}_nightly_export",
        job=offload_job,
        cron_schedule=partitions.get_cron_schedule(),
        execution_timezone=partitions.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every day at {spec.export_hour:02d}:00 {spec.timezone}: export that day's partition of {spec.dynamodb_table} "
            "(the raw export step of the offload job; conversion and registration follow by automation)."
        ),
    )
    def nightly_export(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        # The tick at day D's export hour opens partition D's window (the table as of that instant):
        # the partition build_schedule_from_partitioned_job would request (end_offset=1).
        partition_key = partitions.get_partition_key_for_timestamp(context.scheduled_execution_time.timestamp())
        return dg.RunRequest(
            run_key=partition_key,
            partition_key=partition_key,
            asset_selection=[export_key],
            tags={CONVERTS_IN_RUN_TAG: "false"},
        )

    automation = dg.AutomationConditionSensorDefinition(
        f"{spec.name}_automation",
        target=dg.AssetSelection.assets(parquet_key, catalog_key),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=spec.sensor_interval_seconds,
        description=f"Converts and publishes {spec.dynamodb_table}'s partitions after their export runs.",
    )
    convert_selection = [parquet_key, catalog_key]
    sensors = [
        automation,
        build_export_sensor(spec, export_key=export_key, job=offload_job, asset_selection=convert_selection),
        build_freshness_sensor(spec, catalog_key=catalog_key),
    ]
    if spec.notification_queue_url:
        sensors.append(
            build_notification_sensor(spec, export_key=export_key, job=offload_job, asset_selection=convert_selection)
        )
    return dg.Definitions(
        asset_checks=build_snapshot_checks(
            spec, parquet_key=parquet_key, catalog_key=catalog_key, partitions=partitions
        ),
        jobs=[offload_job],
        schedules=[nightly_export],
        sensors=sensors,
    )
