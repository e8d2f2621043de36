"""The whole: definitions load, one asset group per configured table, lineage from the source."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from offload_assets.definitions import TABLES_FILE, build_definitions, defs
from offload_assets.defs.table_assets import asset_keys
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file

ROOT = Path(__file__).resolve().parents[2]


def test_project_definitions_are_loadable():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    reviews = asset_keys(load_tables_file(TABLES_FILE).table("Reviews"))
    assert set(reviews.values()) <= keys
    # where the data is, and (the last part, the UI's title) what it is: four different titles
    assert [k.to_user_string() for k in reviews.values()] == [
        "dynamodb/Reviews_table",
        "s3/dynamodb_export/reviews_export",
        "s3/parquet/reviews_snapshot",
        "glue/dynamodb_exports/reviews",
    ]
    assert defs.resolve_job_def("reviews_offload_job") is not None


def test_lineage_starts_at_the_dynamodb_table():
    graph = defs.resolve_asset_graph()
    keys = asset_keys(load_tables_file(TABLES_FILE).table("Reviews"))
    chain = [keys["source"], keys["export"], keys["parquet"], keys["catalog"]]
    for upstream, downstream in zip(chain, chain[1:]):
        assert upstream in graph.get(downstream).parent_keys
    assert not graph.get(chain[0]).is_materializable


def test_second_table_is_its_own_group_without_code_change(tmp_path):
    path = write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Reviews"},
        {
            "dynamodb_table": "Books-Catalog",
            "catalog_database": "dynamodb-exports",
            "export_hour": 3,
            "timezone": "Europe/Paris",
        },
        defaults={"s3_bucket": "offload-assets-local"},
    )
    two = build_definitions(path)
    dg.Definitions.validate_loadable(two)
    groups = {}
    for node in two.resolve_asset_graph().asset_nodes:
        groups.setdefault(node.group_name, set()).add(node.key.to_user_string())
    books = asset_keys(load_tables_file(path).table("Books-Catalog"))
    assert groups["books_catalog"] == {k.to_user_string() for k in books.values()}
    assert books["source"].path == ["dynamodb", "Books_Catalog_table"]
    assert "reviews" in groups
    partitions = two.resolve_assets_def(books["parquet"]).partitions_def
    assert partitions.timezone == "Europe/Paris" and partitions.hour_offset == 3


def test_dagster_cli_validates_the_workspace():
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert TABLES_FILE.exists()


def test_a_deployment_names_its_athena_workgroup_and_result_location(tmp_path, monkeypatch):
    """The stack's workgroup and result location reach the Athena resource the checks query with."""
    from offload_assets.defs.resources import ATHENA_OUTPUT_LOCATION_ENV_VAR, ATHENA_WORKGROUP_ENV_VAR

    tables_file = write_tables_file(
        tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "results-bucket"}
    )
    assert build_definitions(tables_file).resources["athena"].workgroup == "primary"
    monkeypatch.setenv(ATHENA_WORKGROUP_ENV_VAR, "offload-assets")
    monkeypatch.setenv(ATHENA_OUTPUT_LOCATION_ENV_VAR, "s3://results-bucket/athena/")
    athena = build_definitions(tables_file).resources["athena"]
    assert (athena.workgroup, athena.output_location) == ("offload-assets", "s3://results-bucket/athena/")
