"""From a seeded DynamoDB table to the blog's answered query, through real Dagster runs."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.export.partition_export import ExportRefusedError, check_scan_partition
from offload_assets.local.demo_data import seed_reviews
from offload_assets.snapshot.build import list_run_dirs
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file

ROOT = Path(__file__).resolve().parents[2]
BLOG_QUERY = """SELECT COUNT(author) as num_reviews FROM "dynamodb-exports"."reviews" WHERE author = 'J.K. Rowling';"""


@pytest.fixture()
def reviews_project(aws, emulator, tmp_path):
    tables_file = write_tables_file(tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "e2e-bucket"})
    items = seed_reviews(aws.client("dynamodb"), count=600)
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    spec = load_tables_file(tables_file).table("Reviews")
    return defs, spec, items


def test_job_answers_the_blog_query_and_reruns_replace(reviews_project, aws):
    defs, spec, items = reviews_project
    expected = sum(1 for i in items if i["Author"] == "J.K. Rowling")
    job = defs.resolve_job_def("reviews_offload_job")
    partition = partitions_for(spec).get_last_partition_key()
    instance = dg.DagsterInstance.ephemeral()

    first = job.execute_in_process(partition_key=partition, instance=instance)
    assert first.success
    parquet_meta = first.asset_materializations_for_node(asset_keys(spec)["parquet"].to_python_identifier())[0].metadata
    assert parquet_meta["dagster/row_count"].value == len(items)
    columns = {c.name: c.type for c in parquet_meta["dagster/column_schema"].schema.columns}
    assert columns["author"] == "string" and columns["rating"] == "bigint"
    assert run_query(BLOG_QUERY, connection=aws).scalar() == expected

    second = job.execute_in_process(partition_key=partition, instance=instance)
    assert second.success
    assert run_query(BLOG_QUERY, connection=aws).scalar() == expected  # replaced, not appended
    assert run_query('SELECT count(*) FROM "dynamodb-exports"."reviews"', connection=aws).scalar() == len(items)
    s3 = aws.client("s3")
    run_dirs = list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition))
    assert len(run_dirs) == 2  # the committed snapshot and the one it replaced (docs/publish-protocol.md)

    assert job.execute_in_process(partition_key=partition, instance=instance).success
    after_third = list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition))
    assert len(after_third) == 2 and run_dirs[0] not in after_third  # the superseded one is deleted
    assert run_query(BLOG_QUERY, connection=aws).scalar() == expected
    exports = s3.list_objects_v2(
        Bucket=spec.s3_bucket, Prefix=spec.export_prefix(partition) + "/AWSDynamoDB/", Delimiter="/"
    )
    assert len(exports["CommonPrefixes"]) == 1


def test_scan_refuses_past_partitions(reviews_project):
    _, spec, _ = reviews_project
    now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    check_scan_partition(spec, "2026-11-27", now)
    with pytest.raises(ExportRefusedError, match="partition 2026-11-20 is not the current day.*export_method: native"):
        check_scan_partition(spec, "2026-11-20", now)


def _cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "offload_assets.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_command_then_query_after_emulator_restart(tmp_path):
    env = {**os.environ, "OFFLOAD_ASSETS_HOME": str(tmp_path / "home"), "OFFLOAD_ASSETS_TARGET": "local"}
    env.pop("DAGSTER_HOME", None)
    try:
        demo = _cli("demo", "--items", "300", env=env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        from offload_assets.local.demo_data import generate_reviews

        expected = sum(1 for i in generate_reviews(300) if i["Author"] == "J.K. Rowling")
        assert f"num_reviews = {expected}" in demo.stdout
        # The demo's run is recorded in the project's Dagster instance, which `offload-assets dev` uses.
        assert any((tmp_path / "home" / "dagster_home").iterdir())

        assert _cli("local", "stop", env=env).returncode == 0
        query = _cli("query", BLOG_QUERY, "--format", "csv", env=env)  # starts the emulator again from saved state
        assert query.returncode == 0, query.stderr
        assert query.stdout.splitlines() == ["num_reviews", str(expected)]
        bad = _cli("query", 'SELECT * FROM "dynamodb-exports"."missing"', env=env)
        assert bad.returncode == 1 and "Table not found" in bad.stderr
    finally:
        _cli("local", "stop", env=env)


def test_select_star_shows_the_keys_first_and_a_new_attribute_appends(reviews_project, aws):
    """Hash key, range key, the other attributes, ``_rescued_data`` last; a new attribute appends and
    every Parquet file's columns are the Glue table's, in its order."""
    import pyarrow.parquet as pq

    from offload_assets.catalog.glue_tables import get_catalog_table
    from offload_assets.snapshot.build import latest_complete_snapshot

    defs, spec, items = reviews_project
    job = defs.resolve_job_def("reviews_offload_job")
    partition = partitions_for(spec).get_last_partition_key()
    instance = dg.DagsterInstance.ephemeral()
    select_star = 'SELECT * FROM "dynamodb-exports"."reviews" LIMIT 1'

    assert job.execute_in_process(partition_key=partition, instance=instance).success
    first = run_query(select_star, connection=aws).columns
    # the data columns, then the partition column (as Athena lists a partitioned table's columns)
    assert first[:2] == ("user", "book") and first[-2:] == ("_rescued_data", "ddb_export_timestamp")
    assert list(first[2:-2]) == sorted(first[2:-2])  # the others by name

    aws.client("dynamodb").put_item(
        TableName=spec.dynamodb_table,
        Item={"User": {"S": "new-user"}, "Book": {"S": "new-book"}, "Aardvark": {"S": "first by name, added last"}},
    )
    result = job.execute_in_process(partition_key=partition, instance=instance)
    assert result.success
    second = run_query(select_star, connection=aws).columns
    data_columns = [c for c in second if c != "ddb_export_timestamp"]
    assert data_columns == [
        *[c for c in first if c not in ("ddb_export_timestamp", "_rescued_data")],
        "aardvark",
        "_rescued_data",
    ]

    catalog = get_catalog_table(aws.client("glue"), spec.catalog_database, spec.catalog_table)
    snapshot = latest_complete_snapshot(aws.client("s3"), spec, partition)
    for f in snapshot.files:
        key = f["path"].split("/", 1)[1] if not f["path"].startswith(snapshot.run_dir) else f["path"]
        body = aws.client("s3").get_object(Bucket=spec.s3_bucket, Key=key)["Body"].read()
        import io

        assert pq.read_schema(io.BytesIO(body)).names == catalog.schema.names, f["path"]
    node = asset_keys(spec)["parquet"].to_python_identifier()
    assert result.asset_materializations_for_node(node)[0].metadata["dagster/row_count"].value == len(items) + 1


def test_iceberg_demo_answers_now_and_day_one_by_time_travel(tmp_path):
    env = {**os.environ, "OFFLOAD_ASSETS_HOME": str(tmp_path / "home"), "OFFLOAD_ASSETS_TARGET": "local"}
    env.pop("DAGSTER_HOME", None)
    try:
        demo = _cli("demo", "--items", "200", "--table-format", "iceberg", env=env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        from offload_assets.local.demo_data import generate_reviews

        day1 = sum(1 for i in generate_reviews(200) if i["Author"] == "J.K. Rowling")
        assert f"num_reviews = {day1} (as of partition" in demo.stdout
        assert "inserted 4, updated 5, deleted 3" in demo.stdout
    finally:
        _cli("local", "stop", env=env)
