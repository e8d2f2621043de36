"""The per-item baseline, kept minimal: what the blog's Glue job does, item by item, in Python.

json → boto3 ``TypeDeserializer`` → pyarrow with an explicit schema (``pa.Table.from_pylist``),
one process per input file (2 processes), nothing more. The schema is hand-written for the
generated Reviews data (:data:`SCHEMA`): without one the per-item approach crashes on binary, then
on mixed types, or silently drops attributes absent from the first rows (FACTS.md). The only
per-value work besides the deserializer is what pyarrow cannot take as is: base64 text to bytes
before deserializing (boto3 expects the wire's bytes), sets to lists, whole numbers to ``int``
(:data:`FIT`); a value of the wrong type (the few ``Rating`` strings) becomes null. A speed reference, not a
correct converter.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from boto3.dynamodb.types import TypeDeserializer

BATCH = 20_000

_DIMENSIONS = pa.struct([("H", pa.decimal128(38, 1)), ("W", pa.decimal128(38, 1)), ("Unit", pa.string())])
SCHEMA = pa.schema(
    [
        ("ReviewId", pa.string()),
        ("ProductId", pa.string()),
        ("CustomerId", pa.string()),
        ("Rating", pa.int64()),
        ("HelpfulVotes", pa.int64()),
        ("ReviewTitle", pa.string()),
        ("ReviewText", pa.string()),
        ("ReviewDate", pa.string()),
        ("CreatedAt", pa.int64()),
        ("Verified", pa.bool_()),
        ("Price", pa.decimal128(38, 2)),
        ("Locale", pa.string()),
        ("ReviewerName", pa.string()),
        ("reviewername", pa.string()),
        ("Product", pa.struct([("Category", pa.string()), ("Brand", pa.string()), ("Dimensions", _DIMENSIONS)])),
        ("TotalVotes", pa.int64()),
        ("LedgerAmount", pa.decimal128(38, 18)),
        ("Tags", pa.list_(pa.string())),
        ("ImageHashes", pa.list_(pa.binary())),
        ("Thumbnail", pa.binary()),
        ("SentimentScores", pa.list_(pa.decimal128(38, 3))),
        ("Comments", pa.list_(pa.struct([("By", pa.string()), ("Text", pa.string()), ("At", pa.int64())]))),
        ("History", pa.list_(pa.string())),
        ("Moderation", pa.string()),
        ("Labels", pa.struct([("S", pa.string())])),
        ("Attachments", pa.list_(pa.binary())),
    ]
)


def _wire(value: dict) -> dict:
    """Base64 text to bytes, as boto3's deserializer expects (it is given the wire's bytes)."""
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


def _integer(value):
    return int(value) if isinstance(value, Decimal) else None  # the few Rating strings: null


def _fit_comments(value: list) -> list:
    return [{**c, "At": int(c["At"])} for c in value]


#: what pyarrow cannot take from the deserializer as is, per attribute (the rest goes as it is)
FIT = {
    "Rating": _integer,
    "HelpfulVotes": int,
    "CreatedAt": int,
    "TotalVotes": int,
    "Tags": sorted,
    "SentimentScores": sorted,
    "ImageHashes": lambda v: sorted(b.value for b in v),
    "Thumbnail": lambda v: v.value,
    "Attachments": lambda v: [b.value for b in v],
    "Comments": _fit_comments,
    "History": lambda v: [str(x) for x in v],  # a list mixing types: declared as strings
}


def convert_file(args: tuple[str, str]) -> tuple[int, int]:
    """Convert one gzip export file; returns (items, Parquet bytes)."""
    path, out_path = args
    deserializer = TypeDeserializer()
    writer = pq.ParquetWriter(out_path, SCHEMA, compression="zstd")
    rows: list[dict] = []
    count = 0
    with open(path, "rb") as raw:
        lines = zlib.decompress(raw.read(), 31).splitlines()
    for line in lines:
        item = json.loads(line)["Item"]
        row = {k: deserializer.deserialize(_wire(v)) for k, v in item.items()}
        for name in FIT.keys() & row.keys():
            row[name] = FIT[name](row[name])
        rows.append(row)
        count += 1
        if len(rows) == BATCH:
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
            rows = []
    if rows:
        writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    writer.close()
    return count, os.path.getsize(out_path)


def convert_per_item(files: list[str], out_dir: str, processes: int = 2) -> tuple[int, int]:
    """Convert every file with ``processes`` worker processes; returns (items, Parquet bytes)."""
    jobs = [(path, f"{out_dir}/baseline-{i:05d}.parquet") for i, path in enumerate(files)]
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(convert_file, jobs))
    return sum(r for r, _ in results), sum(b for _, b in results)
