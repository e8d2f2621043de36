"""Issue 14, point 3: an attribute named like the partition column (any case) is renamed, never folded
into it, and a table whose Glue schema already has the clash is repaired by the next run."""

import pyarrow as pa

from offload_assets.catalog.glue_tables import get_catalog_table, register_table
from offload_assets.catalog.latest_view import latest_view_name
from offload_assets.conversion import options
from offload_assets.sql.query import run_query
from offload_assets.table_spec import PARTITION_COLUMN
from offload_assets_tests.defs.conftest import Project, reviews


def _items():
    items = reviews(60)
    for n, item in enumerate(items):
        if n % 4 == 0:
            item["Ddb_Export_Timestamp"] = f"stamp-{n}"
    items[1]["ddb_export_timestamp"] = "lower-case too"
    return items


def test_the_converter_reserves_the_partition_key_of_the_catalog():
    assert options.PARTITION_COLUMN == PARTITION_COLUMN and PARTITION_COLUMN in options.RESERVED_COLUMNS


def _sql(project: Project, aws, what: str):
    db, table = project.spec.catalog_database, project.spec.catalog_table
    return run_query(f'SELECT {what} FROM "{db}"."{latest_view_name(table)}"', connection=aws)


def test_an_attribute_named_like_the_partition_column_is_renamed_and_queryable(project: Project, aws):
    items = _items()
    project.seed(items)
    project.job().execute_in_process(partition_key=project.today, instance=project.instance)

    table = get_catalog_table(aws.client("glue"), project.spec.catalog_database, project.spec.catalog_table)
    renamed = {f.name: (f.metadata or {}).get(b"original_name", b"").decode() for f in table.schema}
    assert "ddb_export_timestamp" not in renamed  # only the partition key has that name
    clashes = {col: attr for col, attr in renamed.items() if col.startswith("ddb_export_timestamp_")}
    assert sorted(clashes.values()) == ["Ddb_Export_Timestamp", "ddb_export_timestamp"]

    count = aws.client("dynamodb").describe_table(TableName=project.spec.dynamodb_table)["Table"]["ItemCount"]
    assert _sql(project, aws, "count(*)").scalar() == count == len(items)
    upper = next(col for col, attr in clashes.items() if attr == "Ddb_Export_Timestamp")
    assert _sql(project, aws, f"count({upper})").scalar() == 15
    assert _sql(project, aws, f"min({upper})").scalar() == "stamp-0"
    assert _sql(project, aws, "min(ddb_export_timestamp)").scalar() == project.today


def test_a_glue_schema_that_already_has_the_clash_is_repaired_by_the_next_run(project: Project, aws):
    """A table published before the fix: its Glue columns include ``ddb_export_timestamp`` itself."""
    items = _items()
    project.seed(items)
    glue = aws.client("glue")
    db, name = project.spec.catalog_database, project.spec.catalog_table
    glue.create_database(DatabaseInput={"Name": db})
    broken = pa.schema(
        [
            pa.field("user", pa.string(), metadata={"original_name": "User", "dynamodb_type": "S"}),
            pa.field("ddb_export_timestamp", pa.string()),  # the clash as the old converter left it
        ]
    )
    register_table(
        glue,
        database=db,
        table=name,
        location=f"s3://{project.spec.s3_bucket}/{project.spec.parquet_root}/",
        schema=broken,
        parameters={},
        description="published before reserved names were renamed",
    )
    project.job().execute_in_process(partition_key=project.today, instance=project.instance)

    table = get_catalog_table(glue, db, name)
    assert "ddb_export_timestamp" not in table.schema.names
    assert _sql(project, aws, "count(*)").scalar() == len(items)
    upper = next(f.name for f in table.schema if (f.metadata or {}).get(b"original_name") == b"Ddb_Export_Timestamp")
    assert _sql(project, aws, f"count({upper})").scalar() == 15
