"""An Arrow schema as text: how a snapshot's ``_snapshot.json``, the Glue table's parameters and
the Glue job's request carry the exact schema (field metadata included), which Glue types alone lose."""

from __future__ import annotations

import base64

import pyarrow as pa


def schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
