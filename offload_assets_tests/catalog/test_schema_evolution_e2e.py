"""Acceptance: three nightly snapshots whose schema moves, all readable through one Glue table.

Night 1: reviews with User, Author, Rating. Night 2: a new attribute (Shelf) appears and reviews
are added. Night 3: a type conflict (some Ratings written as text, some Shelves as numbers) and
deletions. Each night goes through the real export, the Dagster job's conversion and publishing.
"""

from __future__ import annotations

import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

from offload_assets.catalog.glue_tables import get_catalog_table, list_partitions
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.local.demo_data import put_items
from offload_assets.snapshot.build import latest_complete_snapshot
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.catalog.nightly_runs import offload_night
from offload_assets_tests.conftest import write_tables_file

DB = "dynamodb-exports"


def _scan_count(dynamodb) -> int:
    return sum(page["Count"] for page in dynamodb.get_paginator("scan").paginate(TableName="Reviews", Select="COUNT"))


@pytest.fixture()
def project(aws, emulator, tmp_path):
    tables_file = write_tables_file(
        tmp_path / "tables.yaml",
        # three past nights exist (a table added today would start today)
        {"dynamodb_table": "Reviews", "s3_bucket": "evolution-bucket", "partitions_start": "2026-01-01"},
    )
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    spec = load_tables_file(tables_file).table("Reviews")
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="Reviews",
        KeySchema=[{"AttributeName": "User", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "User", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    keys = partitions_for(spec).get_partition_keys()
    today = partitions_for(spec).get_last_partition_key()
    nights = keys[keys.index(today) - 2 : keys.index(today) + 1]
    return defs, spec, dynamodb, nights


def test_three_nights_new_attribute_then_type_conflict(aws, project):
    defs, spec, dynamodb, (d1, d2, d3) = project
    instance = dg.DagsterInstance.ephemeral()
    latest = f'SELECT COUNT(*) FROM "{DB}"."reviews_latest"'

    night1 = [{"User": f"u{i:03d}", "Author": f"A{i % 4}", "Rating": i % 5 + 1} for i in range(40)]
    put_items(dynamodb, "Reviews", night1)
    offload_night(aws, defs, spec, d1, instance)
    assert run_query(latest, connection=aws).scalar() == _scan_count(dynamodb) == 40

    night2 = [{**item, "Shelf": "read"} if i % 2 else item for i, item in enumerate(night1)]
    night2 += [{"User": f"u{i:03d}", "Author": "A9", "Rating": 3, "Shelf": "to-read"} for i in range(40, 50)]
    put_items(dynamodb, "Reviews", night2)
    offload_night(aws, defs, spec, d2, instance)
    assert run_query(latest, connection=aws).scalar() == _scan_count(dynamodb) == 50

    for i in range(45, 50):
        dynamodb.delete_item(TableName="Reviews", Key={"User": {"S": f"u{i:03d}"}})
    conflicting = [{"User": f"u{i:03d}", "Author": "A1", "Rating": "five"} for i in range(0, 3)]
    conflicting += [{"User": f"u{i:03d}", "Author": "A1", "Rating": 2, "Shelf": 7} for i in range(3, 5)]
    put_items(dynamodb, "Reviews", conflicting)
    offload_night(aws, defs, spec, d3, instance, whole_job=True)
    assert run_query(latest, connection=aws).scalar() == _scan_count(dynamodb) == 45

    glue = aws.client("glue")
    table = get_catalog_table(glue, DB, "reviews")
    types = {f.name: str(f.type) for f in table.schema}
    assert types["rating"] == "int64" and types["shelf"] == "string" and "_rescued_data" in types
    columns = [
        c["Name"] for c in glue.get_table(DatabaseName=DB, Name="reviews")["Table"]["StorageDescriptor"]["Columns"]
    ]
    for p in glue.get_partitions(DatabaseName=DB, TableName="reviews")["Partitions"]:
        assert [
            c["Name"] for c in p["StorageDescriptor"]["Columns"]
        ] == columns  # no partition disagrees with its table
    # Night 3's files were written with the catalog's types, not the types that night's values suggest.
    snapshot = latest_complete_snapshot(aws.client("s3"), spec, d3)
    file_schema = pq.read_schema(snapshot.files[0]["path"], filesystem=aws.arrow_filesystem())
    assert str(file_schema.field("rating").type) == "int64" and str(file_schema.field("shelf").type) == "string"

    per_night = run_query(
        f'SELECT ddb_export_timestamp, count(*), count(shelf), count(rating), count(_rescued_data) FROM "{DB}"."reviews" '
        "GROUP BY 1 ORDER BY 1",
        connection=aws,
    ).rows
    assert per_night == (
        (d1, 40, 0, 40, 0),
        (d2, 50, 30, 50, 0),
        (d3, 45, 23, 42, 5),
    )  # u001 and u003 lost their Shelf (text) on night 3
    rescued = run_query(
        f'SELECT user, _rescued_data FROM "{DB}".reviews_latest WHERE _rescued_data IS NOT NULL ORDER BY user',
        connection=aws,
    ).rows
    assert [(u, json.loads(r)) for u, r in rescued] == [
        *((f"u{i:03d}", {"Rating": {"S": "five"}}) for i in range(3)),
        *((f"u{i:03d}", {"Shelf": {"N": "7"}}) for i in range(3, 5)),
    ]
    # Every column of every night reads through the table: no schema mismatch anywhere.
    everything = run_query(f'SELECT * FROM "{DB}"."reviews" ORDER BY ddb_export_timestamp, user', connection=aws)
    assert len(everything.rows) == 135
    first = everything.as_dicts()[0]
    assert first["ddb_export_timestamp"] == d1 and first["shelf"] is None and first["rating"] == 1

    # Re-running the last night's registration changes nothing in Glue.
    versions = len(glue.get_table_versions(DatabaseName=DB, TableName="reviews")["TableVersions"])
    rerun = defs.resolve_job_def("reviews_offload_job").execute_in_process(
        partition_key=d3, instance=instance, asset_selection=[asset_keys(spec)["catalog"]]
    )
    meta = rerun.asset_materializations_for_node(asset_keys(spec)["catalog"].to_python_identifier())[0].metadata
    assert meta["table_change"].value == "unchanged" and meta["partition_change"].value == "unchanged"
    assert meta["latest_view"].value == f"{DB}.reviews_latest" and meta["latest_view_partition"].value == d3
    assert len(glue.get_table_versions(DatabaseName=DB, TableName="reviews")["TableVersions"]) == versions
    assert [p.value for p in list_partitions(glue, database=DB, table="reviews")] == [d1, d2, d3]
