"""Asset checks on real snapshots: parity, keys, drift, freshness; corrupted snapshots fail visibly."""

import datetime as dt

import dagster as dg
import pytest

from offload_assets.catalog.glue_tables import get_catalog_table
from offload_assets.snapshot.build import latest_complete_snapshot
from offload_assets.snapshot.checks import freshness
from offload_assets.sql.query import run_query
from offload_assets_tests.defs.conftest import Project, check_results, drop_export, make_spec, reviews

CHECKS = {
    "parquet/row_count_parity",
    "parquet/unique_primary_keys",
    "parquet/schema_drift",
    "catalog/sql_row_count_parity",
    "catalog/newest_partition_fresh",
}


def _partition_checks(project: Project):
    """What "Execute checks" on one partition runs: every partitioned check of the table."""
    freshness_check = dg.AssetCheckKey(project.keys["catalog"], "newest_partition_fresh")
    return dg.AssetSelection.checks_for_assets(
        project.keys["parquet"], project.keys["catalog"]
    ) - dg.AssetSelection.checks(freshness_check)


def test_checks_pass_on_a_good_snapshot_and_fail_when_a_parquet_file_is_deleted(project: Project, aws):
    project.seed(reviews(200))
    run = project.job("offload_job").execute_in_process(partition_key=project.today, instance=project.instance)
    checks = check_results(run)
    assert set(checks) == CHECKS
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items() if not c.passed}
    parity = checks["parquet/row_count_parity"].metadata
    assert parity["export_item_count"].value == parity["parquet_rows"].value == 200
    sql = checks["catalog/sql_row_count_parity"].metadata
    assert sql["sql_rows"].value == 200 and sql["sql_engine"].value == "duckdb"
    keys = checks["parquet/unique_primary_keys"].metadata
    assert keys["key_attributes"].value == ["User", "Book"] and keys["duplicate_keys"].value == 0
    assert checks["parquet/row_count_parity"].partition == project.today

    # Corrupt the published snapshot: delete its Parquet file.
    s3 = aws.client("s3")
    snapshot = latest_complete_snapshot(s3, project.spec, project.today)
    parquet_keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=snapshot.bucket, Prefix=snapshot.run_dir + "/")["Contents"]
        if o["Key"].endswith(".parquet")
    ]
    assert parquet_keys
    s3.delete_object(Bucket=snapshot.bucket, Key=parquet_keys[0])

    rerun = project.run_selection(_partition_checks(project), project.today)
    checks = check_results(rerun)
    parity = checks["parquet/row_count_parity"]
    assert not parity.passed and parity.severity == dg.AssetCheckSeverity.ERROR
    assert "the export has 200 items but the Parquet files hold 0 rows" in parity.description
    assert "missing Parquet file(s): part-00000.parquet" in parity.description
    sql = checks["catalog/sql_row_count_parity"]
    assert not sql.passed and "SQL counts 0 rows but the published snapshot has 200" in sql.description
    # The failure is recorded on the instance: the UI shows the partition's check as failed.
    record = project.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(project.keys["parquet"], "row_count_parity"), limit=1
    )[0]
    assert record.evaluation.passed is False and record.evaluation.partition == project.today

    # One check runs alone (the UI's "Execute" on a single check), though the Parquet checks share an op.
    alone = project.run_selection(
        dg.AssetSelection.checks(dg.AssetCheckKey(project.keys["parquet"], "row_count_parity")), project.today
    )
    assert {k: c.passed for k, c in check_results(alone).items()} == {"parquet/row_count_parity": False}


def test_duplicate_keys_block_publishing(project: Project, aws):
    items = reviews(50)
    project.seed(items)
    duplicated = items + [dict(items[3], Rating=1), dict(items[7], Rating=2)]
    drop_export(
        aws.client("s3"),
        bucket=project.spec.s3_bucket,
        prefix=project.spec.export_prefix(project.today),
        items=duplicated,
    )

    run = project.convert(project.today, raise_on_error=False)
    assert not run.success
    checks = check_results(run)
    keys = checks["parquet/unique_primary_keys"]
    assert not keys.passed
    assert "2 key(s) appear more than once (4 rows)" in keys.description and "User='user-00003'" in keys.description
    assert checks["parquet/row_count_parity"].passed  # 52 items exported, 52 rows converted
    assert "catalog/sql_row_count_parity" not in checks  # the catalog step never ran
    assert get_catalog_table(aws.client("glue"), "dynamodb-exports", "reviews") is None  # nothing published


def test_schema_drift_warns_with_the_new_columns_and_rescued_values(project: Project, aws):
    s3 = aws.client("s3")
    project.seed(reviews(5))  # the table must exist for DescribeTable
    today = dt.date.fromisoformat(project.today)
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    drop_export(s3, bucket=project.spec.s3_bucket, prefix=project.spec.export_prefix(yesterday), items=reviews(30))
    assert project.convert(yesterday).success

    drifted = reviews(30)
    drifted[0]["Narrator"] = "Stephen Fry"
    drifted[1]["Rating"] = "five stars"  # a string where the column is a number
    drop_export(s3, bucket=project.spec.s3_bucket, prefix=project.spec.export_prefix(project.today), items=drifted)
    run = project.convert(project.today)
    assert run.success  # drift warns, it does not block
    drift = check_results(run)["parquet/schema_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert "new column(s) since partition " + yesterday in drift.description and "narrator string" in drift.description
    assert drift.metadata["rescued_values"].value == 1 and "_rescued_data" in drift.description
    assert {c["column"] for c in drift.metadata["new_columns"].value} >= {"narrator"}
    assert (
        run_query(
            'SELECT narrator FROM "dynamodb-exports"."reviews" WHERE narrator IS NOT NULL', connection=aws
        ).scalar()
        == "Stephen Fry"
    )


@pytest.mark.parametrize(
    ("newest", "now", "passed"),
    [
        ("2026-03-10", "2026-03-10T08:00:00+00:00", True),
        ("2026-03-09", "2026-03-10T05:59:00+00:00", True),  # 29.98 h old
        ("2026-03-09", "2026-03-10T06:01:00+00:00", False),  # the night's partition is late
        (None, "2026-03-10T06:01:00+00:00", True),  # a table with nothing published yet is not late
    ],
)
def test_freshness_of_the_newest_partition(newest, now, passed):
    outcome = freshness(make_spec(), newest, now=dt.datetime.fromisoformat(now))
    assert outcome.passed is passed
    if not passed and newest:
        assert "newest published partition 2026-03-09 is 30.0 h old (limit 30 h)" in outcome.description
    if newest is None:
        assert "no partition is published" in outcome.description and outcome.metadata["published"] is False


def test_freshness_is_aged_from_the_exports_time():
    # An export adopted at 04:30 into partition 2026-03-10 (window from 00:00), looked at at 06:48.
    now = dt.datetime(2026, 3, 10, 6, 48, tzinfo=dt.UTC)
    taken = dt.datetime(2026, 3, 10, 4, 30, tzinfo=dt.UTC)
    outcome = freshness(make_spec(), "2026-03-10", now=now, export_time=taken)
    assert "is 2.3 h old" in outcome.description and outcome.metadata["age_from"] == "export time"
    assert "is 6.8 h old" in freshness(make_spec(), "2026-03-10", now=now).description  # nominal partition time
    late = freshness(make_spec(freshness_hours=2), "2026-03-10", now=now, export_time=taken)
    assert not late.passed


def test_freshness_sensor_reports_only_when_the_verdict_changes(project: Project, aws):
    project.seed(reviews(20))
    first = project.tick("freshness_sensor")
    # Before the first publish: nothing reported, so the UI shows the check as not evaluated (never failed).
    assert not first.asset_events and "no partition is published" in first.skip_reason.skip_message
    run = project.job("offload_job").execute_in_process(partition_key=project.today, instance=project.instance)
    assert run.success
    fresh = project.tick("freshness_sensor", cursor=first.cursor)
    [evaluation] = fresh.asset_events
    assert isinstance(evaluation, dg.AssetCheckEvaluation) and evaluation.check_name == "newest_partition_fresh"
    assert evaluation.passed is True and evaluation.metadata["age_from"].value == "export time"
    assert evaluation.metadata["snapshot_time"].value == project.spec.export_time(project.today).isoformat()
    assert not project.tick("freshness_sensor", cursor=fresh.cursor).asset_events  # unchanged: nothing reported


def test_scan_refuses_a_past_partition_with_what_to_do(project: Project, aws):
    project.seed(reviews(10))
    past = (dt.date.fromisoformat(project.today) - dt.timedelta(days=3)).isoformat()
    run = project.job().execute_in_process(partition_key=past, instance=project.instance, raise_on_error=False)
    assert not run.success
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert f"partition {past} is not the current day" in message and "export_method: native" in message
