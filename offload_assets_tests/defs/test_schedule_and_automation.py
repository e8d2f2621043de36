"""The nightly schedule requests the right partition; conversion and publishing follow export runs exactly once."""

import datetime as dt

import dagster as dg
import pytest

from offload_assets.defs.orchestration import CONVERTS_IN_RUN_TAG
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.defs.conftest import Project, check_results, drop_export, reviews, short_name


@pytest.mark.parametrize(
    ("hour", "tz", "tick", "cron", "partition"),
    [
        (0, "UTC", "2026-03-10T00:00:00+00:00", "0 0 * * *", "2026-03-10"),
        (3, "Europe/Paris", "2026-03-10T03:00:00+01:00", "0 3 * * *", "2026-03-10"),
        (3, "Europe/Paris", "2026-07-01T03:00:00+02:00", "0 3 * * *", "2026-07-01"),  # summer time
        (23, "America/New_York", "2026-03-10T23:00:00-04:00", "0 23 * * *", "2026-03-10"),
    ],
)
def test_nightly_schedule_requests_the_day_of_its_tick(tmp_path, hour, tz, tick, cron, partition):
    from offload_assets.defs.definitions import build_definitions

    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {
            "dynamodb_table": "Reviews",
            "s3_bucket": "sched-test",
            "export_hour": hour,
            "timezone": tz,
            "partitions_start": "2026-01-01",
        },
    )
    defs = build_definitions(tables, target="local", endpoint_url="http://127.0.0.1:9")
    schedule = defs.resolve_schedule_def("reviews_nightly_export")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (cron, tz)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "reviews_offload_job"

    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime.fromisoformat(tick), repository_def=defs.get_repository_def()
    )
    result = schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests] == [partition]
    assert [r.run_key for r in result.run_requests] == [partition]  # a repeated tick never starts a second run
    # Partition D is the table as of D at the export hour: the tick's own instant.
    from offload_assets.defs.table_assets import asset_keys
    from offload_assets.table_spec import load_tables_file

    export_key = asset_keys(load_tables_file(tables).table("Reviews"))["export"]
    spec_time = defs.resolve_assets_def(export_key).partitions_def.time_window_for_partition_key(partition).start
    assert spec_time == dt.datetime.fromisoformat(tick)
    # The tick runs the raw export step only; conversion follows by automation.
    [request] = result.run_requests
    assert list(request.asset_selection) == [export_key]
    assert request.tags[CONVERTS_IN_RUN_TAG] == "false"  # overrides the offload job's "true"
    job = defs.resolve_job_def("reviews_offload_job")
    assert job.tags[CONVERTS_IN_RUN_TAG] == "true"
    assert job.get_subset(asset_selection=set(request.asset_selection)).asset_layer.selected_asset_keys == set(
        request.asset_selection
    )


def test_automation_sensor_is_on_and_covers_conversion_and_publishing(project: Project):
    sensor = project.defs.resolve_sensor_def("reviews_automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    graph = project.defs.resolve_asset_graph()
    assert sensor.asset_selection.resolve(graph) == {project.keys["parquet"], project.keys["catalog"]}
    assert graph.get(project.keys["export"]).automation_condition is None  # the schedule drives exports
    names = {s.name for s in project.defs.sensors}
    assert "default_automation_condition_sensor" not in names


def _requested(project: Project, cursor):
    result = dg.evaluate_automation_conditions(defs=project.defs, instance=project.instance, cursor=cursor)
    requested = {
        short_name(key): sorted(result.get_requested_partitions(key))
        for key in (project.keys["parquet"], project.keys["catalog"])
    }
    return requested, result.cursor


def test_conversion_follows_an_export_run_once_and_never_a_full_run(project: Project, aws):
    project.seed(reviews(120))
    _, cursor = _requested(project, None)  # first evaluation: the baseline

    export_run = project.export_only(project.today)
    assert export_run.success
    requested, cursor = _requested(project, cursor)
    assert requested == {"parquet": [project.today], "catalog": [project.today]}

    # What the automation sensor launches for that request: one run of both assets with their checks.
    convert = project.convert(project.today)
    assert convert.success
    assert all(c.passed for c in check_results(convert).values())
    requested, cursor = _requested(project, cursor)
    assert requested == {"parquet": [], "catalog": []}  # done: nothing requested again

    # A run of the whole offload job (UI, demo, backfill) does not trigger a second conversion.
    full = project.job().execute_in_process(partition_key=project.today, instance=project.instance)
    assert full.success
    for _ in range(2):
        requested, cursor = _requested(project, cursor)
        assert requested == {"parquet": [], "catalog": []}

    # Neither does a raw export recorded by a sensor: the sensor requests that conversion itself.
    project.instance.report_runless_asset_event(
        dg.AssetMaterialization(project.keys["export"], partition=project.today)
    )
    requested, cursor = _requested(project, cursor)
    assert requested == {"parquet": [], "catalog": []}


def test_automation_caught_inside_a_converting_run_does_not_publish_again(project: Project, aws):
    """The daemon can evaluate after a sensor's convert run wrote the snapshot and before it published it.

    Dagster's own "executed with root target" test only sees the run's asset selection; here the
    run was narrowed to the snapshot (as a run that stopped after the snapshot looks), so the
    offload job's tag says the run publishes itself. Automation must not start a second publish.
    """
    items = reviews(30)
    project.seed(items)
    drop_export(aws.client("s3"), bucket=project.spec.s3_bucket, prefix=project.spec.export_prefix_root, items=items)
    _, cursor = _requested(project, None)
    tick = project.tick("export_sensor")
    for event in tick.asset_events:  # what the daemon stores before creating the sensor's run
        project.instance.report_runless_asset_event(event)
    requested, cursor = _requested(project, cursor)
    assert requested == {"parquet": [], "catalog": []}
    [request] = tick.run_requests
    snapshot_only = project.job().execute_in_process(
        partition_key=request.partition_key,
        tags=request.tags,
        instance=project.instance,
        asset_selection=[project.keys["parquet"]],
    )
    assert snapshot_only.success
    requested, _ = _requested(project, cursor)
    assert requested == {"parquet": [], "catalog": []}


def test_a_snapshot_failing_a_blocking_check_is_not_published_by_automation(project: Project, aws):
    project.seed(reviews(50))
    _, cursor = _requested(project, None)
    assert project.export_only(project.today).success
    _, cursor = _requested(project, cursor)
    # The snapshot is materialized on its own (e.g. from the UI) and its row-count check fails: the
    # export's summary announces one item more than its data files hold (which are intact: a changed
    # data file fails the conversion itself, on its md5Checksum).
    s3 = aws.client("s3")
    import json

    from offload_assets.export.layout import latest_completed_export, md5_base64

    export = latest_completed_export(
        s3, bucket=project.spec.s3_bucket, export_prefix=project.spec.export_prefix(project.today)
    )
    bucket, summary_key = project.spec.s3_bucket, f"{export.export_dir}/manifest-summary.json"
    summary = json.loads(s3.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    body = json.dumps({**summary, "itemCount": summary["itemCount"] + 1}).encode()
    s3.put_object(Bucket=bucket, Key=summary_key, Body=body)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{export.export_dir}/manifest-summary.")["Contents"]
    for checksum in [o["Key"] for o in listed if not o["Key"].endswith(".json")]:
        s3.put_object(Bucket=bucket, Key=checksum, Body=md5_base64(body).encode())
    parquet_only = project.run_selection(
        dg.AssetSelection.assets(project.keys["parquet"]).without_checks()
        | dg.AssetSelection.checks_for_assets(project.keys["parquet"]),
        project.today,
    )
    checks = check_results(parquet_only)
    assert not checks["parquet/row_count_parity"].passed
    requested, _ = _requested(project, cursor)
    assert requested["catalog"] == []  # the catalog does not pick up the failed snapshot


def test_exports_share_a_pool_the_local_instance_limits(project: Project, tmp_path):
    from offload_assets.cli.common import prepare_dagster_home

    assert project.defs.resolve_assets_def(project.keys["export"]).node_def.pool == "dynamodb_export"
    home = prepare_dagster_home(tmp_path / "home")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        pools = instance.get_concurrency_config().pool_config
        assert (pools.default_pool_limit, pools.pool_granularity.value) == (2, "op")
        assert instance.telemetry_enabled is False
    finally:
        instance.dispose()


def test_an_export_waits_for_a_free_slot_in_the_pool(project: Project, aws, tmp_path):
    """With every dynamodb_export slot taken (here by another run's export), a run's export step waits; it starts once one frees."""
    import threading
    import time

    from offload_assets.cli.common import prepare_dagster_home

    project.seed(reviews(20))
    instance = dg.DagsterInstance.from_config(str(prepare_dagster_home(tmp_path / "home")))
    storage = instance.event_log_storage
    try:
        assert storage.get_concurrency_info("dynamodb_export").slot_count in (0, 2)  # created on first use
        storage.set_concurrency_slots("dynamodb_export", 1)
        assert storage.claim_concurrency_slot("dynamodb_export", "another-run", "another_export").is_claimed
        results = []
        runner = threading.Thread(target=lambda: results.append(project.export_only(project.today, instance=instance)))
        runner.start()
        deadline = time.monotonic() + 60
        while not storage.get_concurrency_info("dynamodb_export").pending_steps and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # waiting, not merely slow: the export has not happened
        assert storage.get_concurrency_info("dynamodb_export").pending_steps
        assert not results and runner.is_alive()
        assert instance.get_latest_materialization_event(project.keys["export"]) is None

        storage.free_concurrency_slot_for_step("another-run", "another_export")
        runner.join(timeout=120)
        assert results and results[0].success
        materialization = instance.get_latest_materialization_event(project.keys["export"]).asset_materialization
        assert materialization.metadata["dagster/row_count"].value == 20
        assert storage.get_concurrency_info("dynamodb_export").claimed_slots == []
    finally:
        instance.dispose()
