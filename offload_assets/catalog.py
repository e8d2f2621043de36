"""Register snapshots in the Glue Data Catalog ourselves: no crawler.

We know the exact schema when we write the Parquet, so the table is created or updated from
it, with comments holding the original DynamoDB attribute names, and each snapshot becomes
a partition of ``ddb_export_timestamp``. Nothing is written when nothing changed, so Glue
keeps no useless table versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from offload_assets.glue_types import arrow_to_glue, glue_to_arrow
from offload_assets.table_spec import PARTITION_COLUMN

ORIGINAL_NAME_KEY = b"original_name"
PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


@dataclass(frozen=True)
class CatalogPartition:
    value: str
    location: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class CatalogTable:
    database: str
    name: str
    location: str
    schema: pa.Schema  # data columns, without the partition column
    partition_keys: tuple[str, ...]
    parameters: dict[str, str]


def _columns(schema: pa.Schema) -> list[dict[str, str]]:
    cols = []
    for f in schema:
        col = {"Name": f.name, "Type": arrow_to_glue(f.type)}
        original = (f.metadata or {}).get(ORIGINAL_NAME_KEY)
        if original is not None:
            col["Comment"] = f"DynamoDB attribute {original.decode('utf-8')}"[:255]
        cols.append(col)
    return cols


def _storage(location: str, columns: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "Columns": columns,
        "Location": location,
        "InputFormat": PARQUET_INPUT_FORMAT,
        "OutputFormat": PARQUET_OUTPUT_FORMAT,
        "Compressed": True,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
    }


def ensure_database(glue: Any, database: str, description: str = "DynamoDB tables offloaded by offload_assets") -> bool:
    try:
        glue.get_database(Name=database)
        return False
    except glue.exceptions.EntityNotFoundException:
        try:
            glue.create_database(DatabaseInput={"Name": database, "Description": description})
        except glue.exceptions.AlreadyExistsException:
            return False
        return True


def get_catalog_table(glue: Any, database: str, table: str) -> CatalogTable | None:
    try:
        t = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None
    sd = t.get("StorageDescriptor", {})
    fields = []
    for col in sd.get("Columns", []):
        comment = col.get("Comment") or ""
        meta = {ORIGINAL_NAME_KEY: comment.removeprefix("DynamoDB attribute ").encode()} if comment.startswith("DynamoDB attribute ") else None
        fields.append(pa.field(col["Name"], glue_to_arrow(col["Type"]), metadata=meta))
    return CatalogTable(
        database=database,
        name=table,
        location=sd.get("Location", ""),
        schema=pa.schema(fields),
        partition_keys=tuple(k["Name"] for k in t.get("PartitionKeys", [])),
        parameters=dict(t.get("Parameters", {})),
    )


def register_table(
    glue: Any,
    *,
    database: str,
    table: str,
    location: str,
    schema: pa.Schema,
    parameters: dict[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Create or update the catalog table; returns ``"created"``, ``"updated"`` or ``"unchanged"``."""
    ensure_database(glue, database)
    columns = _columns(schema)
    params = {"classification": "parquet", "EXTERNAL": "TRUE", "offload_assets.managed": "true", **(parameters or {})}
    table_input: dict[str, Any] = {
        "Name": table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": params,
        "StorageDescriptor": _storage(location, columns),
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string", "Comment": "snapshot date (export partition)"}],
    }
    if description:
        table_input["Description"] = description
    try:
        current = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=database, TableInput=table_input)
        return "created"
    sd = current.get("StorageDescriptor", {})
    same = (
        sd.get("Columns", []) == columns
        and sd.get("Location") == location
        and current.get("Parameters", {}) == params
        and [k["Name"] for k in current.get("PartitionKeys", [])] == [PARTITION_COLUMN]
        and (description is None or current.get("Description") == description)
    )
    if same:
        return "unchanged"
    glue.update_table(DatabaseName=database, TableInput=table_input)
    return "updated"


def register_partition(
    glue: Any,
    *,
    database: str,
    table: str,
    value: str,
    location: str,
    schema: pa.Schema,
    parameters: dict[str, str] | None = None,
) -> str:
    """Create the partition or point it at a new location; ``"created"``/``"updated"``/``"unchanged"``."""
    partition_input = {
        "Values": [value],
        "StorageDescriptor": _storage(location, _columns(schema)),
        "Parameters": dict(parameters or {}),
    }
    try:
        current = glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=[value])["Partition"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition_input)
        return "created"
    sd = current.get("StorageDescriptor", {})
    if sd.get("Location") == location and sd.get("Columns") == partition_input["StorageDescriptor"]["Columns"] and current.get("Parameters", {}) == partition_input["Parameters"]:
        return "unchanged"
    glue.update_partition(
        DatabaseName=database, TableName=table, PartitionValueList=[value], PartitionInput=partition_input
    )
    return "updated"


def list_partitions(glue: Any, *, database: str, table: str, expression: str | None = None) -> list[CatalogPartition]:
    """Registered partitions, sorted by value."""
    kwargs: dict[str, Any] = {"DatabaseName": database, "TableName": table}
    if expression:
        kwargs["Expression"] = expression
    out = []
    for page in glue.get_paginator("get_partitions").paginate(**kwargs):
        for p in page.get("Partitions", []):
            out.append(CatalogPartition(p["Values"][0], p.get("StorageDescriptor", {}).get("Location", ""), dict(p.get("Parameters", {}))))
    return sorted(out, key=lambda p: p.value)


def delete_partition(glue: Any, *, database: str, table: str, value: str) -> bool:
    try:
        glue.delete_partition(DatabaseName=database, TableName=table, PartitionValues=[value])
        return True
    except glue.exceptions.EntityNotFoundException:
        return False


def list_tables(glue: Any, database: str) -> list[str]:
    names = []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        names.extend(t["Name"] for t in page.get("TableList", []))
    return sorted(names)
