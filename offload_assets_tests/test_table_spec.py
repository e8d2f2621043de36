import datetime as dt

import pytest

from offload_assets.table_spec import TablesFileError, load_tables_file, parse_tables
from offload_assets_tests.conftest import write_tables_file


def test_defaults_are_filled(tmp_path):
    tables = load_tables_file(
        write_tables_file(tmp_path / "t.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "my-bucket"})
    )
    spec = tables.tables[0]
    assert spec.catalog_database == "dynamodb-exports"
    assert spec.catalog_table == "reviews"
    assert spec.export_hour == 0 and spec.timezone == "UTC" and spec.export_method == "scan"
    assert spec.read_capacity_fraction == 0.5
    assert (
        spec.parquet_partition_prefix("2026-11-27")
        == "dynamodb-offload/parquet/reviews/ddb_export_timestamp=2026-11-27"
    )


def test_defaults_section_applies_to_every_table(tmp_path):
    tables = load_tables_file(
        write_tables_file(
            tmp_path / "t.yaml",
            {"dynamodb_table": "A-Table.v2"},
            {"dynamodb_table": "Other"},
            defaults={"s3_bucket": "shared-bucket"},
        )
    )
    assert [s.s3_bucket for s in tables.tables] == ["shared-bucket", "shared-bucket"]
    assert tables.tables[0].catalog_table == "a_table_v2"


def test_export_time_uses_hour_and_timezone():
    tables = parse_tables(
        {"tables": [{"dynamodb_table": "Reviews", "s3_bucket": "bkt", "export_hour": 2, "timezone": "Europe/Paris"}]},
        path="x",
    )
    assert tables.tables[0].export_time("2026-07-01") == dt.datetime(2026, 7, 1, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"dynamodb_table": "Reviews", "s3_bucket": "bkt", "export_hour": 24}, "table 'Reviews': export_hour"),
        ({"dynamodb_table": "Reviews", "s3_bucket": "Bad_Bucket"}, "table 'Reviews': s3_bucket"),
        (
            {"dynamodb_table": "Reviews", "s3_bucket": "bkt", "timezone": "Mars/Olympus"},
            "table 'Reviews': timezone: unknown time zone",
        ),
        (
            {"dynamodb_table": "Reviews", "s3_bucket": "bkt", "catalog_database": "Has Spaces"},
            "table 'Reviews': catalog_database",
        ),
        ({"dynamodb_table": "Reviews", "s3_bucket": "bkt", "s3_prefix": "a/../../b"}, "table 'Reviews': s3_prefix"),
        ({"dynamodb_table": "Reviews", "s3_bucket": "bkt", "export_method": "magic"}, "table 'Reviews': export_method"),
        (
            {"dynamodb_table": "Reviews", "s3_bucket": "bkt", "read_capacity_fraction": 0},
            "table 'Reviews': read_capacity_fraction",
        ),
        (
            {"dynamodb_table": "Reviews", "s3_bucket": "bkt", "exprot_hour": 3},
            "table 'Reviews': exprot_hour: unknown field",
        ),
        ({"s3_bucket": "bkt"}, "table '#1': dynamodb_table"),
    ],
)
def test_bad_entries_name_table_and_field(tmp_path, entry, fragment):
    with pytest.raises(TablesFileError) as err:
        load_tables_file(write_tables_file(tmp_path / "t.yaml", entry))
    assert fragment in str(err.value)
    assert "t.yaml" in str(err.value)


def test_duplicate_catalog_names_are_rejected(tmp_path):
    path = write_tables_file(
        tmp_path / "t.yaml",
        {"dynamodb_table": "Reviews", "s3_bucket": "bkt"},
        {"dynamodb_table": "reviews", "s3_bucket": "bkt"},
    )
    with pytest.raises(
        TablesFileError,
        match="table 'reviews': catalog name 'dynamodb-exports.reviews' is already used by table 'Reviews'",
    ):
        load_tables_file(path)


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: [\n")
    with pytest.raises(TablesFileError, match="not valid YAML"):
        load_tables_file(bad)
    with pytest.raises(TablesFileError, match="not found"):
        load_tables_file(tmp_path / "missing.yaml")


def test_project_tables_file_is_valid():
    from offload_assets.definitions import TABLES_FILE

    tables = load_tables_file(TABLES_FILE)
    assert tables.table("Reviews").catalog_table == "reviews"
