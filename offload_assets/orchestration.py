"""How one table runs itself: the nightly schedule, automation, sensors and checks.

- ``<table>_export_job`` (raw export only) runs every night at ``export_hour`` in ``timezone``
  (``<table>_nightly_export`` schedule, built from the partitioned job: the tick at day D's
  export hour requests partition D, the table as of that instant).
- The Parquet snapshot and the catalog table follow by declarative automation
  (:func:`follow_upstream_runs`, evaluated by ``<table>_automation``), not by another cron.
- ``<table>_export_sensor`` (and ``<table>_export_notifications`` when a queue is configured)
  picks up exports started outside Dagster and runs ``<table>_convert_job`` for them.
- ``<table>_offload_job`` (all three steps, defined with the assets) stays for the UI, the
  demo and backfills: its runs do not trigger automation a second time.
"""

from __future__ import annotations

import dagster as dg

from offload_assets.asset_checks import build_freshness_sensor, build_snapshot_checks
from offload_assets.export_sensors import build_export_sensor, build_notification_sensor
from offload_assets.table_spec import TableSpec

#: On runs of jobs that export/convert *and* publish in the same run (``<table>_offload_job``,
#: ``<table>_convert_job``): their updates must not trigger automation for what they already did.
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
    # runs of the jobs that convert and publish themselves carry CONVERTS_IN_RUN_TAG instead.
    converting_run = (
        A.all_new_updates_have_run_tags(tag_keys={CONVERTS_IN_RUN_TAG}) | A.executed_with_tags(tag_keys={CONVERTS_IN_RUN_TAG})
    ).with_label("updated_by_a_run_that_converts_itself")
    updated_by_a_run = (
        A.newly_updated() & from_a_run & ~A.executed_with_root_target() & ~converting_run
    ).with_label("updated_by_another_run")
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
    partitions: dg.PartitionsDefinition,
) -> dg.Definitions:
    """Checks, jobs, schedule and sensors of one table (its assets come from the table factory)."""
    export_job = dg.define_asset_job(
        f"{spec.name}_export_job",
        selection=dg.AssetSelection.assets(export_key),
        description=f"Export one daily partition of DynamoDB table {spec.dynamodb_table} (conversion follows by automation).",
        executor_def=dg.in_process_executor,
    )
    convert_job = dg.define_asset_job(
        f"{spec.name}_convert_job",
        selection=dg.AssetSelection.assets(parquet_key, catalog_key),
        description=f"Convert a partition's existing raw export of {spec.dynamodb_table} to Parquet, check it, publish it.",
        executor_def=dg.in_process_executor,
        tags={CONVERTS_IN_RUN_TAG: "true"},
    )
    schedule = dg.build_schedule_from_partitioned_job(
        export_job,
        name=f"{spec.name}_nightly_export",
        description=(
            f"Every day at {spec.export_hour:02d}:00 {spec.timezone}: export that day's partition of {spec.dynamodb_table}."
        ),
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    automation = dg.AutomationConditionSensorDefinition(
        f"{spec.name}_automation",
        target=dg.AssetSelection.assets(parquet_key, catalog_key),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=spec.sensor_interval_seconds,
        description=f"Converts and publishes {spec.dynamodb_table}'s partitions after their export runs.",
    )
    sensors = [
        automation,
        build_export_sensor(spec, export_key=export_key, convert_job=convert_job),
        build_freshness_sensor(spec, catalog_key=catalog_key),
    ]
    if spec.notification_queue_url:
        sensors.append(build_notification_sensor(spec, export_key=export_key, convert_job=convert_job))
    return dg.Definitions(
        asset_checks=build_snapshot_checks(spec, parquet_key=parquet_key, catalog_key=catalog_key, partitions=partitions),
        jobs=[export_job, convert_job],
        schedules=[schedule],
        sensors=sensors,
    )
