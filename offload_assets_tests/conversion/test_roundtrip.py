"""Property: random items → export lines → convert → Parquet read back equals boto3's view.

Run with ``HYPOTHESIS_PROFILE=ci`` for 500 examples of the vectorised (default) converter.
"""

from __future__ import annotations

import tempfile

import pyarrow.fs as pafs
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.conversion import RESCUED_COLUMN, ConversionOptions, convert_export_to_parquet

from .dynamodb_values import (
    boto3_view,
    canonical_json,
    data_pipeline_line,
    items,
    native_line,
    read_back,
    write_lines,
)

LOCAL = pafs.LocalFileSystem()


def canonical(rows):
    return sorted(canonical_json(r) for r in rows)


def roundtrip(batch, *, engine, data_pipeline=False, existing_schema=None, gzipped=True):
    with tempfile.TemporaryDirectory() as tmp:
        line = data_pipeline_line if data_pipeline else native_line
        path = f"{tmp}/data.json" + (".gz" if gzipped else "")
        write_lines(path, [line(i) for i in batch], gzipped=gzipped)
        result = convert_export_to_parquet(
            [path],
            LOCAL,
            f"{tmp}/out",
            LOCAL,
            table_name="Prop",
            existing_schema=existing_schema,
            options=ConversionOptions(engine=engine, max_map_keys=4),
        )
        assert result.rows == len(batch)
        return result, read_back(f"{tmp}/out")


@given(st.lists(items, min_size=1, max_size=12), st.booleans(), st.booleans())
@settings(max_examples=150)  # the vectorised test below compares with this engine every time
def test_python_engine_round_trip_equals_boto3_view(batch, data_pipeline, gzipped):
    result, rows = roundtrip(batch, engine="python", data_pipeline=data_pipeline, gzipped=gzipped)
    assert canonical(rows) == canonical([boto3_view(i) for i in batch])


@given(st.lists(items, min_size=1, max_size=12), st.booleans())
def test_duckdb_engine_round_trip_equals_boto3_view_and_reference(batch, gzipped):
    result, rows = roundtrip(batch, engine="duckdb", gzipped=gzipped)
    assert canonical(rows) == canonical([boto3_view(i) for i in batch])
    reference, _ = roundtrip(batch, engine="python", gzipped=gzipped)
    assert result.schema == reference.schema
    assert result.rescued_counts == reference.rescued_counts


@given(
    st.lists(items, min_size=1, max_size=8),
    st.lists(items, min_size=1, max_size=8),
    st.sampled_from(["python", "duckdb"]),
)
@settings(max_examples=50)
def test_second_partition_keeps_first_schema_and_values(first, second, engine):
    r1, _ = roundtrip(first, engine=engine)
    r2, rows = roundtrip(second, engine=engine, existing_schema=r1.schema)
    # the first partition's columns keep their order and types; new ones follow; _rescued_data stays last
    first_fields = [f for f in r1.schema if f.name != RESCUED_COLUMN]
    assert [(f.name, f.type) for f in r2.schema][: len(first_fields)] == [(f.name, f.type) for f in first_fields]
    assert r2.schema.names[-1] == RESCUED_COLUMN
    assert canonical(rows) == canonical([boto3_view(i) for i in second])
