"""The converter's Arrow schema as an Iceberg schema: key columns required and identifying, docs kept.

Column names and types are the converter's, unchanged. Each column's Iceberg ``doc`` records its
DynamoDB attribute name and type (from the Parquet field metadata the converter writes), so Glue
and Athena show them as column comments. New attributes become new columns by field id; an
existing column never changes type (the converter rescues misfits into ``_rescued_data``).
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema, assign_fresh_schema_ids

ORIGINAL_NAME_KEY = b"original_name"
DYNAMODB_TYPE_KEY = b"dynamodb_type"
DOC_KEY = b"doc"


def column_doc(field: pa.Field) -> str | None:
    meta = field.metadata or {}
    original = meta.get(ORIGINAL_NAME_KEY, b"").decode()
    ddb_type = meta.get(DYNAMODB_TYPE_KEY, b"").decode()
    if not original and not ddb_type:
        return None
    return f"DynamoDB attribute {original or field.name!r}" + (f" ({ddb_type})" if ddb_type else "")


def key_columns_of(schema: pa.Schema, key_attributes: tuple[str, ...]) -> tuple[str, ...]:
    """Column names of the DynamoDB key attributes (the converter may have renamed them)."""
    by_original = {(f.metadata or {}).get(ORIGINAL_NAME_KEY, b"").decode(): f.name for f in schema}
    out = []
    for attr in key_attributes:
        name = by_original.get(attr) or (attr if attr in schema.names else None)
        if name is None:
            raise KeyError(f"key attribute {attr!r} is not a column of {schema.names}")
        out.append(name)
    return tuple(out)


def _documented(field: pa.Field, required: bool) -> pa.Field:
    doc = column_doc(field)
    meta = dict(field.metadata or {})
    if doc and DOC_KEY not in meta:
        meta[DOC_KEY] = doc.encode()
    return pa.field(field.name, field.type, nullable=not required, metadata=meta or None)


def documented_arrow_schema(schema: pa.Schema, key_columns: tuple[str, ...] = ()) -> pa.Schema:
    """``schema`` with Iceberg docs on each field and the key columns non-nullable."""
    return pa.schema([_documented(f, f.name in key_columns) for f in schema], metadata=schema.metadata)


def iceberg_schema_for(schema: pa.Schema, key_columns: tuple[str, ...]) -> Schema:
    """A fresh Iceberg schema (ids assigned) whose identifier fields are ``key_columns``."""
    converted = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(documented_arrow_schema(schema, key_columns)))
    ids = [converted.find_field(name).field_id for name in key_columns]
    return Schema(*converted.fields, schema_id=converted.schema_id, identifier_field_ids=ids)


def new_columns(table_schema: Schema, schema: pa.Schema) -> pa.Schema:
    """The fields of ``schema`` the table does not have yet (top level, by name)."""
    known = {f.name for f in table_schema.fields}
    return pa.schema([_documented(f, False) for f in schema if f.name not in known])


__all__ = ["column_doc", "documented_arrow_schema", "iceberg_schema_for", "key_columns_of", "new_columns"]
