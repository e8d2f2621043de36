"""The Iceberg path of one partition without Dagster: scan export -> Parquet staging -> Iceberg commit."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from offload_assets.aws.connection import AwsConnection
from offload_assets.export.partition_export import export_partition
from offload_assets.iceberg.catalog import connect_catalog
from offload_assets.iceberg.publish import IcebergPublishResult, publish_iceberg
from offload_assets.local.demo_data import create_reviews_table, put_items
from offload_assets.snapshot.build import build_snapshot
from offload_assets.table_spec import TableSpec, parse_tables

BUCKET = "iceberg-test"


def make_spec(**fields: Any) -> TableSpec:
    entry = {
        "dynamodb_table": "Reviews",
        "s3_bucket": BUCKET,
        "partitions_start": "2026-11-01",
        "table_format": "iceberg",
        **fields,
    }
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def review(n: int, author: str | None = None) -> dict[str, Any]:
    return {
        "User": f"user-{n:04d}",
        "Book": f"book-{n % 7}",
        "Author": author or ("J.K. Rowling" if n % 3 == 0 else "Tolkien"),
        "Rating": n % 5 + 1,
    }


def seed(aws: AwsConnection, spec: TableSpec, count: int) -> Any:
    ddb = aws.client("dynamodb")
    create_reviews_table(ddb, spec.dynamodb_table)
    put_items(ddb, spec.dynamodb_table, [review(n) for n in range(count)])
    aws.client("s3").create_bucket(Bucket=spec.s3_bucket)
    return ddb


def run_partition(aws: AwsConnection, spec: TableSpec, partition_key: str) -> IcebergPublishResult:
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    now = spec.export_time(partition_key) + dt.timedelta(minutes=5)
    export_partition(spec, partition_key, dynamodb=ddb, s3=s3, now=now)
    build_snapshot(s3, aws.arrow_filesystem(), aws.client("glue"), spec, partition_key, run_id="test")
    return publish_partition(aws, spec, partition_key)


def publish_partition(aws: AwsConnection, spec: TableSpec, partition_key: str) -> IcebergPublishResult:
    catalog = connect_catalog(aws, {"ServerSideEncryption": "AES256"})
    return publish_iceberg(
        catalog, aws.client("s3"), aws.arrow_filesystem(), spec, partition_key, key_attributes=("User", "Book")
    )


def dynamodb_state(ddb: Any, table: str) -> dict[tuple[str, str], tuple[str, int]]:
    items, kwargs = [], {}
    while True:
        page = ddb.scan(TableName=table, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return {(i["User"]["S"], i["Book"]["S"]): (i["Author"]["S"], int(i["Rating"]["N"])) for i in items}
