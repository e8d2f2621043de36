"""A second reader that did not write the table: iceberg-rust (pyiceberg-core) scanning through DataFusion.

It reads the metadata file Glue points at, the manifests and the Parquet files with its own Rust
code (no pyiceberg, no DuckDB): its rows must be exactly the rows our SQL returns, and pyiceberg's
own scan must agree, for the current state and for day 1 (the metadata file day 1's commit wrote).
"""

from __future__ import annotations

import pyarrow as pa
from datafusion import SessionContext
from pyiceberg_core.datafusion import IcebergDataFusionTable

from offload_assets.iceberg.catalog import catalog_properties, connect_catalog, load_table
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.sql.query import run_query
from offload_assets_tests.iceberg.pipeline import make_spec, review, run_partition, seed

COLUMNS = ("user", "book", "author", "rating")


def _rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r[c] for c in COLUMNS) for r in table.select(list(COLUMNS)).to_pylist())


def iceberg_rust_rows(aws, metadata_location: str) -> list[tuple]:
    props = {k: v for k, v in catalog_properties(aws).items() if k.startswith("s3.") and "server-side" not in k}
    props["s3.path-style-access"] = "true"  # the emulator serves buckets by path, not by host name
    provider = IcebergDataFusionTable(
        identifier=["dynamodb-exports", "reviews"], metadata_location=metadata_location, file_io_properties=props
    )
    ctx = SessionContext()
    ctx.register_table("reviews", provider)
    return _rows(ctx.sql("SELECT * FROM reviews").to_arrow_table())


def sql_rows(aws, suffix: str = "") -> list[tuple]:
    result = run_query(f'SELECT user, book, author, rating FROM "dynamodb-exports"."reviews"{suffix}', connection=aws)
    return sorted(result.rows)


def test_iceberg_rust_pyiceberg_and_our_sql_read_the_same_rows(aws):
    spec = make_spec(dynamodb_table="reviews")
    ddb = seed(aws, spec, 150)
    day1 = run_partition(aws, spec, "2026-11-20")
    for n in (1, 2, 3):
        item = review(n, author="Changed")
        ddb.put_item(
            TableName=spec.dynamodb_table,
            Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in item.items()},
        )
    for n in (20, 21):
        ddb.delete_item(
            TableName=spec.dynamodb_table, Key={"User": {"S": f"user-{n:04d}"}, "Book": {"S": f"book-{n % 7}"}}
        )
    run_partition(aws, spec, "2026-11-21")

    table = load_table(connect_catalog(aws), iceberg_location(spec))
    ours = sql_rows(aws)
    assert len(ours) == 148 and ("user-0001", "book-1", "Changed", 2) in ours
    assert iceberg_rust_rows(aws, table.metadata_location) == ours
    assert _rows(table.scan().to_arrow()) == ours

    day1_metadata = table.metadata.metadata_log[-1].metadata_file  # what day 1's commit wrote
    ours_day1 = sql_rows(aws, f" FOR VERSION AS OF {day1.snapshot_id}")
    assert len(ours_day1) == 150 and ("user-0001", "book-1", "Tolkien", 2) in ours_day1
    assert iceberg_rust_rows(aws, day1_metadata) == ours_day1
    assert _rows(table.scan(snapshot_id=day1.snapshot_id).to_arrow()) == ours_day1
