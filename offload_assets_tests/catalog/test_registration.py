"""Glue registration primitives against the emulator: versions, parameters, schemas, views, partitions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from offload_assets.catalog.glue_tables import (
    CatalogView,
    SchemaConflictError,
    decode_presto_view,
    delete_partitions,
    encode_presto_view,
    get_catalog_relation,
    get_catalog_table,
    list_partitions,
    merge_table_schema,
    register_partition,
    register_table,
    register_view,
    sync_partition_columns,
)

DB = "dynamodb-exports"
LOC = "s3://bucket/prefix/reviews/"


def meta(original: str, ddb_type: str) -> dict[bytes, bytes]:
    return {b"original_name": original.encode(), b"dynamodb_type": ddb_type.encode()}


NESTED = pa.schema(
    [
        pa.field("user", pa.string(), metadata=meta("User", "S")),
        pa.field(
            "details",
            pa.struct(
                [
                    pa.field("page_count", pa.int64(), metadata=meta("Page Count", "N")),
                    pa.field("extra", pa.string(), metadata=meta("Extra", "M_JSON")),
                ]
            ),
            metadata=meta("Details", "M"),
        ),
        pa.field("shelves", pa.list_(pa.string()), metadata=meta("Shelves", "L_JSON")),
    ]
)


def _versions(glue, table="reviews"):
    return len(glue.get_table_versions(DatabaseName=DB, TableName=table)["TableVersions"])


def test_nested_metadata_round_trips_and_nothing_changes_twice(aws):
    glue = aws.client("glue")
    assert (
        register_table(
            glue, database=DB, table="reviews", location=LOC, schema=NESTED, parameters={"offload_assets.x": "1"}
        )
        == "created"
    )
    assert (
        register_table(
            glue, database=DB, table="reviews", location=LOC, schema=NESTED, parameters={"offload_assets.x": "1"}
        )
        == "unchanged"
    )
    assert _versions(glue) == 1
    back = get_catalog_table(glue, DB, "reviews").schema
    assert back.equals(NESTED, check_metadata=True)
    assert back.field("details").type.field("extra").metadata == meta("Extra", "M_JSON")
    column = glue.get_table(DatabaseName=DB, Name="reviews")["Table"]["StorageDescriptor"]["Columns"][1]
    assert column == {
        "Name": "details",
        "Type": "struct<page_count:bigint,extra:string>",
        "Comment": "DynamoDB attribute Details",
    }


def test_parameters_of_others_are_kept_ours_are_replaced(aws):
    glue = aws.client("glue")
    register_table(
        glue,
        database=DB,
        table="reviews",
        location=LOC,
        schema=NESTED,
        parameters={"projection.enabled": "true", "offload_assets.a": "1"},
    )
    table = glue.get_table(DatabaseName=DB, Name="reviews")["Table"]
    table_input = {k: table[k] for k in ("Name", "StorageDescriptor", "PartitionKeys", "TableType")}
    table_input["Parameters"] = {**table["Parameters"], "lakeformation.tag": "pii"}
    glue.update_table(DatabaseName=DB, TableInput=table_input)
    assert (
        register_table(
            glue, database=DB, table="reviews", location=LOC, schema=NESTED, parameters={"offload_assets.a": "2"}
        )
        == "updated"
    )
    params = get_catalog_table(glue, DB, "reviews").parameters
    assert params["lakeformation.tag"] == "pii" and params["offload_assets.a"] == "2"
    assert "projection.enabled" not in params


def test_hand_edited_columns_win_over_the_stored_schema(aws):
    glue = aws.client("glue")
    register_table(glue, database=DB, table="reviews", location=LOC, schema=NESTED)
    table = glue.get_table(DatabaseName=DB, Name="reviews")["Table"]
    sd = table["StorageDescriptor"]
    sd["Columns"] = [*sd["Columns"], {"Name": "added_by_hand", "Type": "decimal(10,2)"}]
    glue.update_table(
        DatabaseName=DB,
        TableInput={k: table[k] for k in ("Name", "StorageDescriptor", "PartitionKeys", "TableType", "Parameters")},
    )
    schema = get_catalog_table(glue, DB, "reviews").schema
    assert schema.names == ["user", "details", "shelves", "added_by_hand"]
    assert schema.field("added_by_hand").type == pa.decimal128(10, 2)
    assert schema.field("user").metadata == {b"original_name": b"User"}  # from the column comment


def test_partitions_follow_table_columns_and_batch_delete(aws):
    glue = aws.client("glue")
    small = pa.schema([NESTED.field("user")])
    register_table(glue, database=DB, table="reviews", location=LOC, schema=small)
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        register_partition(glue, database=DB, table="reviews", value=day, location=f"{LOC}d={day}/", schema=small)
    assert sync_partition_columns(glue, database=DB, table="reviews", schema=NESTED) == 3
    assert sync_partition_columns(glue, database=DB, table="reviews", schema=NESTED) == 0
    p = glue.get_partition(DatabaseName=DB, TableName="reviews", PartitionValues=["2026-11-02"])["Partition"]
    assert [c["Name"] for c in p["StorageDescriptor"]["Columns"]] == ["user", "details", "shelves"]
    assert p["StorageDescriptor"]["Location"] == f"{LOC}d=2026-11-02/"
    assert delete_partitions(glue, database=DB, table="reviews", values=["2026-11-01", "2026-11-02", "2026-10-01"]) == 2
    assert [p.value for p in list_partitions(glue, database=DB, table="reviews")] == ["2026-11-03"]


def test_views_are_stored_like_athena_stores_them(aws):
    glue = aws.client("glue")
    schema = pa.schema([("user", pa.string()), ("details", NESTED.field("details").type), ("n", pa.int64())])
    sql = 'SELECT user, details, count(*) AS n FROM "dynamodb-exports"."reviews" GROUP BY 1, 2'
    assert register_view(glue, database=DB, name="v", sql=sql, schema=schema) == "created"
    stored = glue.get_table(DatabaseName=DB, Name="v")["Table"]
    assert stored["TableType"] == "VIRTUAL_VIEW"
    assert stored["ViewOriginalText"].startswith("/* Presto View: ") and stored["ViewOriginalText"].endswith(" */")
    definition = decode_presto_view(stored["ViewOriginalText"])
    assert definition == {
        "originalSql": sql,
        "catalog": "awsdatacatalog",
        "schema": DB,
        "columns": [
            {"name": "user", "type": "varchar"},
            {"name": "details", "type": "row(page_count bigint, extra varchar)"},
            {"name": "n", "type": "bigint"},
        ],
    }
    relation = get_catalog_relation(glue, DB, "V")
    assert isinstance(relation, CatalogView) and relation.sql == sql and relation.default_schema == DB
    assert get_catalog_table(glue, DB, "v") is None
    assert register_view(glue, database=DB, name="v", sql=sql + " LIMIT 1", schema=schema) == "updated"
    register_table(glue, database=DB, table="reviews", location=LOC, schema=NESTED)
    with pytest.raises(SchemaConflictError, match="is a table in the Glue catalog, not a view"):
        register_view(glue, database=DB, name="reviews", sql=sql, schema=schema)
    with pytest.raises(SchemaConflictError, match="is a view in the Glue catalog, not a table"):
        register_table(glue, database=DB, table="v", location=LOC, schema=NESTED)


@pytest.mark.parametrize(
    "text",
    ["SELECT 1", "/* Presto View: not-base64! */", encode_presto_view("x", schema="d", columns=[])[:-3] + "e30= */"],
)
def test_undecodable_views_are_reported(text):
    with pytest.raises(ValueError, match="view db.v"):
        decode_presto_view(text, where="view db.v")


def test_schema_merge_rules():
    base = pa.schema(
        [("a", pa.int64()), ("s", pa.struct([("x", pa.string())])), ("l", pa.list_(pa.struct([("y", pa.int64())])))]
    )
    new = pa.schema(
        [
            ("b", pa.string()),
            ("s", pa.struct([("z", pa.bool_()), ("x", pa.string())])),
            ("a", pa.int64()),
            ("l", pa.list_(pa.struct([("y", pa.int64()), ("w", pa.string())]))),
        ]
    )
    merged = merge_table_schema(base, new, where="t")
    assert merged.names == ["a", "s", "l", "b"]
    assert merged.field("s").type == pa.struct([("x", pa.string()), ("z", pa.bool_())])
    assert merged.field("l").type.value_type == pa.struct([("y", pa.int64()), ("w", pa.string())])
    assert merge_table_schema(None, new, where="t") is new
    with pytest.raises(
        SchemaConflictError, match=r"t, column 's'\.x: the snapshot has type bigint but the catalog table has string"
    ):
        merge_table_schema(base, pa.schema([("s", pa.struct([("x", pa.int64())]))]), where="t")


def test_the_rescue_column_is_not_called_a_dynamodb_attribute(aws):
    glue = aws.client("glue")
    schema = NESTED.append(pa.field("_rescued_data", pa.string(), metadata={b"original_name": b"_rescued_data"}))
    register_table(glue, database=DB, table="reviews", location=LOC, schema=schema)
    columns = glue.get_table(DatabaseName=DB, Name="reviews")["Table"]["StorageDescriptor"]["Columns"]
    rescue = next(c for c in columns if c["Name"] == "_rescued_data")
    assert "DynamoDB attribute" not in rescue["Comment"] and "did not fit" in rescue["Comment"]
    back = get_catalog_table(glue, DB, "reviews").schema
    assert back.field("_rescued_data").metadata == {b"original_name": b"_rescued_data"}
