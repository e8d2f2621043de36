"""An empty Iceberg table of reviews (hash key ``user_id``, range key ``review_id``) on the emulator."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest

from offload_assets.aws.connection import AwsConnection
from offload_assets.iceberg.catalog import IcebergLocation, connect_catalog, create_table
from offload_assets_tests.conftest import TEST_BUCKET

DATABASE = "dynamodb-exports"


def reviews_schema() -> pa.Schema:
    def f(name, typ, ddb):
        return pa.field(name, typ, metadata={b"original_name": name.title().encode(), b"dynamodb_type": ddb.encode()})

    return pa.schema(
        [
            f("user_id", pa.string(), "S"),
            f("review_id", pa.int64(), "N"),
            f("author", pa.string(), "S"),
            f("rating", pa.decimal128(38, 1), "N"),
            f("tags", pa.list_(pa.string()), "SS"),
            f("_rescued_data", pa.string(), "JSON"),
        ]
    )


def reviews(n: int, start: int = 0, author: str = "a") -> pa.Table:
    ids = range(start, start + n)
    return pa.Table.from_pylist(
        [
            {
                "user_id": f"u{i % 7}",
                "review_id": i,
                "author": f"{author}{i}",
                "rating": decimal.Decimal(i % 50) / 10,
                "tags": ["x", f"t{i}"],
                "_rescued_data": None,
            }
            for i in ids
        ],
        schema=reviews_schema(),
    )


@pytest.fixture()
def iceberg_catalog(aws: AwsConnection):
    aws.client("s3").create_bucket(Bucket=TEST_BUCKET)
    return connect_catalog(aws, {"ServerSideEncryption": "AES256"})


@pytest.fixture()
def reviews_table(iceberg_catalog):
    where = IcebergLocation(DATABASE, "reviews", f"s3://{TEST_BUCKET}/dynamodb-offload/iceberg/reviews")
    return create_table(iceberg_catalog, where, reviews_schema(), ("user_id", "review_id"))
