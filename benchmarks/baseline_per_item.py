"""The per-item baseline: what the blog's Glue job does, item by item, in Python.

json → boto3 ``TypeDeserializer`` → pyarrow, one process per input file (2 processes), given an
explicit schema (without one it crashes on binary, then on mixed types, or silently drops
attributes absent from the first rows; FACTS.md). Values that do not match the declared type are
turned into strings, as the blog's Spark job does: the baseline is a speed reference, not a
correct converter.
"""

from __future__ import annotations

import base64
import gzip
import json
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from boto3.dynamodb.types import Binary, TypeDeserializer

BATCH = 20_000


def _wire(value: dict) -> dict:
    ((tag, payload),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(payload)}
    if tag == "BS":
        return {"BS": [base64.b64decode(x) for x in payload]}
    if tag == "M":
        return {"M": {k: _wire(v) for k, v in payload.items()}}
    if tag == "L":
        return {"L": [_wire(v) for v in payload]}
    return value


def _fit(value, arrow_type: pa.DataType):
    """Make a deserialized value acceptable to pyarrow for the declared type."""
    if value is None:
        return None
    if isinstance(value, Binary):
        value = value.value
    if pa.types.is_string(arrow_type):
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if pa.types.is_integer(arrow_type):
        return int(value) if isinstance(value, Decimal) and value == value.to_integral_value() else None
    if pa.types.is_decimal(arrow_type):
        return value if isinstance(value, Decimal) else None
    if pa.types.is_list(arrow_type):
        if isinstance(value, (set, list)):
            return [_fit(x, arrow_type.value_type) for x in value]
        return None
    if pa.types.is_struct(arrow_type):
        if not isinstance(value, dict):
            return None
        return {
            arrow_type.field(i).name: _fit(
                value.get(
                    arrow_type.field(i).metadata[b"original_name"].decode()
                    if arrow_type.field(i).metadata
                    else arrow_type.field(i).name
                ),
                arrow_type.field(i).type,
            )
            for i in range(arrow_type.num_fields)
        }
    return value


def convert_file(args: tuple[str, str, bytes]) -> tuple[int, int]:
    """Convert one gzip export file; returns (items, Parquet bytes)."""
    path, out_path, schema_bytes = args
    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    deserializer = TypeDeserializer()
    columns = [(f.name, (f.metadata or {}).get(b"original_name", f.name.encode()).decode(), f.type) for f in schema]
    writer = pq.ParquetWriter(out_path, schema, compression="zstd")
    rows = 0
    buffers = {name: [] for name, _, _ in columns}

    def flush():
        arrays = [pa.array(buffers[name], type=t) for name, _, t in columns]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        for v in buffers.values():
            v.clear()

    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)["Item"]
            python = {k: deserializer.deserialize(_wire(v)) for k, v in item.items()}
            for name, original, arrow_type in columns:
                buffers[name].append(_fit(python.get(original), arrow_type))
            rows += 1
            if rows % BATCH == 0:
                flush()
    if rows % BATCH:
        flush()
    writer.close()
    import os

    return rows, os.path.getsize(out_path)


def convert_per_item(files: list[str], out_dir: str, schema: pa.Schema, processes: int = 2) -> tuple[int, int]:
    """Convert every file with ``processes`` worker processes; returns (items, Parquet bytes)."""
    schema = pa.schema([f for f in schema if f.name != "_rescued_data"])
    schema_bytes = schema.serialize().to_pybytes()
    jobs = [(path, f"{out_dir}/baseline-{i:05d}.parquet", schema_bytes) for i, path in enumerate(files)]
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(convert_file, jobs))
    return sum(r for r, _ in results), sum(b for _, b in results)
