"""Helpers for the export-engine tests: specs, PITR tables, reading exports back, counting reads."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from offload_assets.export.layout import ExportManifest, iter_export_lines, md5_base64
from offload_assets.table_spec import TableSpec, parse_tables
from offload_assets_tests.conftest import seed_reviews_table

BUCKET = "exports-test"
READ_OPERATIONS = {
    "Scan",
    "Query",
    "GetItem",
    "BatchGetItem",
    "ExecuteStatement",
    "BatchExecuteStatement",
    "TransactGetItems",
}


def make_spec(**fields: Any) -> TableSpec:
    entry = {"dynamodb_table": "Reviews", "s3_bucket": BUCKET, **fields}
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def record_operations(client: Any) -> list[str]:
    """Names of every operation ``client`` sends from now on (a botocore event hook, no mocking)."""
    seen: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: seen.append(model.name))
    return seen


def enable_pitr(dynamodb: Any, table_name: str) -> dt.datetime:
    """Turn point-in-time recovery on; returns the earliest restorable time the emulator reports."""
    dynamodb.update_continuous_backups(
        TableName=table_name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    desc = dynamodb.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
    return desc["PointInTimeRecoveryDescription"]["EarliestRestorableDateTime"]


@pytest.fixture()
def reviews(aws):
    """The Reviews table with 300 generated items; returns (dynamodb client, s3 client, items)."""
    return seed_reviews_table(aws, "Reviews", 300, seed=11, bucket=BUCKET)


def export_items(s3: Any, manifest: ExportManifest) -> list[dict[str, Any]]:
    """Every item of a complete export, checking each data file against its manifest entry."""
    items = []
    per_file: dict[str, int] = {}
    for data_file, line in iter_export_lines(s3, manifest):
        per_file[data_file.key] = per_file.get(data_file.key, 0) + 1
        items.append(json.loads(line)["Item"])
    for data_file in manifest.data_files:
        assert per_file.get(data_file.key, 0) == data_file.item_count, data_file.key
        if data_file.md5:
            body = s3.get_object(Bucket=manifest.bucket, Key=data_file.key)["Body"].read()
            assert md5_base64(body) == data_file.md5, data_file.key
    assert len(items) == manifest.item_count
    return items


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: sorted(_normalise(x) for x in v) if k in ("SS", "NS", "BS") else _normalise(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, (bytes, bytearray)):  # boto3 values; exports carry base64
        return base64.b64encode(value).decode()
    return value


def canonical(items: list[dict[str, Any]]) -> list[str]:
    """Items as sorted canonical JSON strings (set members sorted): equal lists mean same rows, same values."""
    return sorted(json.dumps(_normalise(i), sort_keys=True) for i in items)


def keys_of(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((i["User"]["S"], i["Book"]["S"]) for i in items)


def list_keys(s3: Any, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def day_after(instant: dt.datetime, days: int = 1) -> str:
    """Partition key of the day ``days`` after ``instant`` (UTC)."""
    return (instant.astimezone(dt.UTC).date() + dt.timedelta(days=days)).isoformat()
