"""Helpers for catalog tests: table specs and Parquet snapshots written in the project's layout.

``write_snapshot`` produces what the Parquet-snapshot asset produces (a run directory with
``part-*.parquet`` and ``_snapshot.json`` written last), from rows given in the test, so
publishing, views and retention are tested without running the converter.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.snapshot.build import SnapshotManifest, new_run_dir, write_snapshot_manifest
from offload_assets.snapshot.checks import CheckOutcome
from offload_assets.snapshot.verdict import BLOCKING_CHECKS, record_check_results
from offload_assets.table_spec import TableSpec, parse_tables

ORIGINAL = b"original_name"
DDB_TYPE = b"dynamodb_type"


def make_spec(**fields: Any) -> TableSpec:
    entry = {"dynamodb_table": "Reviews", "s3_bucket": "catalog-test", "partitions_start": "2026-11-01", **fields}
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def field(name: str, type_: pa.DataType, original: str | None = None, ddb_type: str | None = None) -> pa.Field:
    meta = {ORIGINAL: (original or name.capitalize()).encode()}
    if ddb_type:
        meta[DDB_TYPE] = ddb_type.encode()
    return pa.field(name, type_, metadata=meta)


_run_counter = iter(range(1, 1_000_000))


def write_snapshot(
    aws,
    spec: TableSpec,
    partition_key: str,
    rows: list[dict[str, Any]],
    schema: pa.Schema,
    *,
    files: int = 1,
    complete: bool = True,
    checks_passed: bool | None = True,
) -> SnapshotManifest | str:
    """A snapshot run directory of ``rows`` (split over ``files`` Parquet files); the run dir if incomplete.

    ``checks_passed`` is the blocking checks' verdict recorded in it (None: no verdict, as when the
    run died during its checks).
    """
    s3, fs = aws.client("s3"), aws.arrow_filesystem()
    ensure_bucket(s3, spec.s3_bucket)
    n = next(_run_counter)
    now = dt.datetime(2026, 11, 27, tzinfo=dt.UTC) + dt.timedelta(seconds=n)
    run_dir = new_run_dir(spec, partition_key, f"run{n}", now=now)
    written = []
    per_file = max(1, -(-len(rows) // files)) if rows else 1
    for i in range(files):
        chunk = rows[i * per_file : (i + 1) * per_file]
        path = f"{spec.s3_bucket}/{run_dir}/part-{i:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), path, filesystem=fs)
        written.append({"path": path, "rows": len(chunk), "bytes": fs.get_file_info(path).size})
    if not complete:
        return run_dir
    snapshot = write_snapshot_manifest(
        s3,
        bucket=spec.s3_bucket,
        run_dir=run_dir,
        partition_key=partition_key,
        export_id=f"export-{n}",
        rows=len(rows),
        files=written,
        schema=schema,
        rescued_counts={},
    )
    if checks_passed is not None:
        outcome = CheckOutcome(checks_passed, "recorded by the test" if checks_passed else "failed in the test")
        record_check_results(s3, snapshot, dict.fromkeys(BLOCKING_CHECKS, outcome))
    return snapshot


@pytest.fixture()
def spec() -> TableSpec:
    return make_spec()
