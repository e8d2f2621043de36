"""The change-capture asset, its checks and its sensor, on the emulator's DynamoDB stream and Iceberg table."""

from __future__ import annotations

import dagster as dg

from offload_assets.defs.change_capture import CONTINUITY_CHECK, LAG_CHECK, change_capture_keys
from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets_tests.cdc.test_table_capture import STREAM_ON, create_reviews, rows, scan_rows
from offload_assets_tests.conftest import TEST_BUCKET

from .conftest import Project


def _project(tmp_path, emulator, aws) -> Project:
    return Project(
        tmp_path,
        emulator,
        aws,
        s3_bucket=TEST_BUCKET,
        catalog_database="dynamodb-exports",
        table_format="iceberg",
        change_capture="streams",
        change_capture_interval_seconds=5,
        export_method="native",
    )


def _run(project: Project, request: dg.RunRequest):
    job = project.defs.resolve_job_def(f"{project.spec.name}_change_capture_job")
    return job.execute_in_process(instance=project.instance, tags=request.tags, raise_on_error=False)


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _metadata(result, key) -> dict:
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def _iceberg_rows(project: Project):
    from offload_assets.aws.s3_writes import s3_put_kwargs
    from offload_assets.iceberg.publish import iceberg_location

    table = load_table(connect_catalog(project.aws, s3_put_kwargs(project.spec)), iceberg_location(project.spec))
    return rows(table.scan().to_arrow()), table


def test_the_sensor_bootstraps_applies_changes_skips_when_caught_up_and_the_checks_report(tmp_path, emulator, aws):
    project = _project(tmp_path, emulator, aws)
    keys = change_capture_keys(project.spec)
    ddb = create_reviews(aws, stream=STREAM_ON, items=10)
    graph = project.defs.resolve_asset_graph()
    assert graph.get(keys["changes"]).parent_keys == {keys["stream"]}  # table -> stream -> changes

    first = project.tick("change_capture_sensor")
    assert isinstance(first, dg.RunRequest) and first.tags["offload_assets/change_capture"] == "bootstrap"
    result = _run(project, first)
    assert result.success
    meta = _metadata(result, keys["changes"])
    assert meta["rebootstraps"] == 1 and meta["lag_seconds"] == 0
    assert _checks(result) == {LAG_CHECK: True, CONTINUITY_CHECK: True}  # a first bootstrap is no gap

    skipped = project.tick("change_capture_sensor")
    assert isinstance(skipped, dg.SkipReason) and "nothing waiting" in skipped.skip_message

    ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "new"}, "review_id": {"N": "1"}, "rating": {"N": "5"}})
    ddb.update_item(
        TableName="Reviews",
        Key={"user_id": {"S": "u1"}, "review_id": {"N": "1"}},
        UpdateExpression="SET rating = :r",
        ExpressionAttributeValues={":r": {"N": "1"}},
    )
    ddb.delete_item(TableName="Reviews", Key={"user_id": {"S": "u2"}, "review_id": {"N": "1"}})
    waiting = project.tick("change_capture_sensor")
    assert isinstance(waiting, dg.RunRequest) and "changes waiting" in waiting.tags["offload_assets/change_capture"]
    result = _run(project, waiting)
    meta = _metadata(result, keys["changes"])
    assert (meta["inserts"], meta["updates"], meta["deletes"], meta["records_read"]) == (1, 1, 1, 3)
    assert meta["shards"] == 1 and meta["rebootstraps"] == 0
    state, table = _iceberg_rows(project)
    assert state == scan_rows(ddb, table.schema().as_arrow()) and len(state) == 10


def test_lost_continuity_fails_the_continuity_check_and_the_run_rebootstraps(tmp_path, emulator, aws):
    """moto cannot disable and re-enable a stream (UpdateTable says "Cannot enable stream"; the scripted
    source covers that path in tests/cdc), so the table is given a committed position on a stream that
    is not the table's any more: what a re-enabled stream leaves behind."""
    from offload_assets.cdc.capture import POSITION_PROPERTY
    from offload_assets.cdc.positions import CapturePosition
    from offload_assets.iceberg import apply_changes

    project = _project(tmp_path, emulator, aws)
    keys = change_capture_keys(project.spec)
    ddb = create_reviews(aws, stream=STREAM_ON, items=5)
    assert _run(project, project.tick("change_capture_sensor")).success  # bootstrap
    _, table = _iceberg_rows(project)
    old_stream = CapturePosition("arn:aws:dynamodb:us-east-1:123456789012:table/Reviews/stream/2026-01-01T00:00:00")
    apply_changes(table, summary={POSITION_PROPERTY: old_stream.to_json(), "offload.cdc.committed_at": "x"})
    ddb.put_item(TableName="Reviews", Item={"user_id": {"S": "later"}, "review_id": {"N": "1"}})
    request = project.tick("change_capture_sensor")
    assert isinstance(request, dg.RunRequest)
    assert request.tags["offload_assets/change_capture"] == "continuity lost: new_stream"
    result = _run(project, request)
    assert result.success
    assert _checks(result) == {LAG_CHECK: True, CONTINUITY_CHECK: False}
    meta = _metadata(result, keys["changes"])
    assert meta["rebootstraps"] == 1 and "stream was replaced" in meta["continuity_lost"][0]
    state, table = _iceberg_rows(project)
    assert state == scan_rows(ddb, table.schema().as_arrow()) and len(state) == 6
