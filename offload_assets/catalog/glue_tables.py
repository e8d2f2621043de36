"""Register snapshots in the Glue Data Catalog ourselves: no crawler.

We know the exact schema when we write the Parquet, so the table is created or updated from
it, with comments holding the original DynamoDB attribute names, and each snapshot becomes
a partition of ``ddb_export_timestamp``. Nothing is written when nothing changed, so Glue
keeps no useless table versions; when only table parameters change (the newest export's
facts), the update skips the archive, so the table's versions are its schema history.

Every partition carries the table's full column list: Athena compares partition and table
column types, and partitions that disagree with their table are what breaks crawled tables
(``HIVE_PARTITION_SCHEMA_MISMATCH``). Parquet is read by column name, so an older file
without a newer column reads as NULL.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from offload_assets.catalog.glue_types import GlueTypeError, arrow_to_glue, arrow_to_presto, glue_to_arrow
from offload_assets.conversion.options import ORIGINAL_NAME_KEY
from offload_assets.conversion.schema_codec import schema_from_text, schema_to_text
from offload_assets.table_spec import PARTITION_COLUMN

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient

PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
#: Table parameter holding the Arrow schema (with every nested field's metadata: original
#: DynamoDB names and types) that Glue's column list cannot carry.
ARROW_SCHEMA_PARAM = "offload_assets.arrow_schema"
MANAGED_PARAM = "offload_assets.managed"
#: Parameters this project owns on its tables: removed when no longer wanted, others kept.
OWNED_PARAM_PREFIXES = ("offload_assets.", "projection.", "storage.location.template")
PRESTO_VIEW_PREFIX = "/* Presto View: "
PRESTO_VIEW_SUFFIX = " */"
_COMMENT_PREFIX = "DynamoDB attribute "
_RESCUED_COLUMN = "_rescued_data"  # conversion.options.RESCUED_COLUMN: not an attribute of the table
_RESCUED_COMMENT = "Values that did not fit their column's type, as DynamoDB JSON by attribute name (not an attribute)"
_BATCH_DELETE = 25
_BATCH_UPDATE = 100


class SchemaConflictError(ValueError):
    """A snapshot's column type disagrees with the catalog table's (the message says which and what to do)."""


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
    version_id: str | None = None  # Glue's table version, for optimistic concurrency


@dataclass(frozen=True)
class CatalogView:
    """An Athena view: Trino SQL stored in Glue in Presto's view encoding."""

    database: str
    name: str
    sql: str
    default_schema: str
    columns: tuple[tuple[str, str], ...]  # (name, Presto type)
    parameters: dict[str, str]


def _columns(schema: pa.Schema) -> list[dict[str, str]]:
    cols = []
    for f in schema:
        col = {"Name": f.name, "Type": arrow_to_glue(f.type)}
        original = (f.metadata or {}).get(ORIGINAL_NAME_KEY)
        if f.name == _RESCUED_COLUMN:
            col["Comment"] = _RESCUED_COMMENT
        elif original is not None:
            col["Comment"] = f"{_COMMENT_PREFIX}{original.decode('utf-8')}"[:255]
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


def _same_columns(current: list[dict[str, Any]], wanted: list[dict[str, str]]) -> bool:
    def norm(cols):
        return [(c["Name"], c["Type"].replace(" ", "").lower(), c.get("Comment") or "") for c in cols]

    return norm(current) == norm(wanted)


def ensure_database(
    glue: GlueClient, database: str, description: str = "DynamoDB tables offloaded by offload_assets"
) -> bool:
    try:
        glue.get_database(Name=database)
        return False
    except glue.exceptions.EntityNotFoundException:
        try:
            glue.create_database(DatabaseInput={"Name": database, "Description": description})
        except glue.exceptions.AlreadyExistsException:
            return False
        return True


def _get_table(glue: GlueClient, database: str, name: str) -> dict[str, Any] | None:
    try:
        return glue.get_table(DatabaseName=database, Name=name.lower())["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None


def _schema_of(database: str, name: str, t: dict[str, Any]) -> pa.Schema:
    sd = t.get("StorageDescriptor", {})
    columns = sd.get("Columns", [])
    stored = t.get("Parameters", {}).get(ARROW_SCHEMA_PARAM)
    if stored:
        # Trust the stored Arrow schema only while it still says what Glue's columns say
        # (someone may have edited the table by hand since).
        schema = schema_from_text(stored)
        glue_columns = [(c["Name"], c["Type"].replace(" ", "").lower()) for c in columns]
        if glue_columns == [(f.name, arrow_to_glue(f.type)) for f in schema]:
            return schema
    fields = []
    for col in columns:
        comment = col.get("Comment") or ""
        meta = (
            {ORIGINAL_NAME_KEY: comment.removeprefix(_COMMENT_PREFIX).encode()}
            if comment.startswith(_COMMENT_PREFIX)
            else {ORIGINAL_NAME_KEY: col["Name"].encode()}
            if comment == _RESCUED_COMMENT
            else None
        )
        try:
            fields.append(pa.field(col["Name"], glue_to_arrow(col["Type"]), metadata=meta))
        except GlueTypeError as err:
            raise GlueTypeError(f"table {database}.{name}, column {col['Name']!r}: {err}") from None
    return pa.schema(fields)


def get_catalog_table(glue: GlueClient, database: str, table: str) -> CatalogTable | None:
    """The catalog table (schema with original names and DynamoDB types), or None if absent.

    A view of that name is not a table: this returns None for it (see :func:`get_catalog_relation`).
    """
    t = _get_table(glue, database, table)
    if t is None or t.get("TableType") == "VIRTUAL_VIEW":
        return None
    return CatalogTable(
        database=database,
        name=t["Name"],
        location=t.get("StorageDescriptor", {}).get("Location", ""),
        schema=_schema_of(database, table, t),
        partition_keys=tuple(k["Name"] for k in t.get("PartitionKeys", [])),
        parameters=dict(t.get("Parameters", {})),
        version_id=t.get("VersionId"),
    )


def get_catalog_relation(glue: GlueClient, database: str, name: str) -> CatalogTable | CatalogView | None:
    """A table or an Athena view, as Athena would resolve ``"database"."name"``."""
    t = _get_table(glue, database, name)
    if t is None:
        return None
    if t.get("TableType") == "VIRTUAL_VIEW":
        definition = decode_presto_view(t.get("ViewOriginalText", ""), where=f"view {database}.{name}")
        return CatalogView(
            database=database,
            name=t["Name"],
            sql=definition["originalSql"],
            default_schema=definition.get("schema") or database,
            columns=tuple((c["name"], c["type"]) for c in definition.get("columns", [])),
            parameters=dict(t.get("Parameters", {})),
        )
    return get_catalog_table(glue, database, name)


def merge_table_schema(table: pa.Schema | None, snapshot: pa.Schema, *, where: str) -> pa.Schema:
    """The table schema that reads every partition: the table's columns in order and type, then new
    ones, ``_rescued_data`` last.

    A struct may gain fields (appended; Parquet is read by name, so older files read NULL for
    them). Any other type difference would make Athena fail on one of the partitions, so it is
    refused with :class:`SchemaConflictError` naming the column.
    """
    if table is None:
        return snapshot
    # The partition key is never a data column: a table that has one (an attribute that took the
    # name before reserved names were renamed) is repaired here, its values being in a renamed column.
    fields = [f for f in table if f.name != PARTITION_COLUMN]
    index = {f.name: i for i, f in enumerate(fields)}
    for f in snapshot:
        if f.name not in index:
            fields.append(f)
            index[f.name] = len(fields) - 1
            continue
        current = fields[index[f.name]]
        merged = _merge_type(current.type, f.type, f"{where}, column {f.name!r}")
        if merged != current.type:
            metadata = {**(f.metadata or {}), **(current.metadata or {})}
            fields[index[f.name]] = pa.field(current.name, merged, nullable=True, metadata=metadata or None)
    # _rescued_data stays the last column (as in every snapshot's files) when a new column arrives
    fields.sort(key=lambda f: f.name == _RESCUED_COLUMN)
    return pa.schema(fields, metadata=table.metadata)


def _merge_type(current: pa.DataType, new: pa.DataType, where: str) -> pa.DataType:
    if arrow_to_glue(current) == arrow_to_glue(new):
        return current
    if pa.types.is_struct(current) and pa.types.is_struct(new):
        fields = list(current)
        names = {f.name: i for i, f in enumerate(fields)}
        for f in new:
            if f.name in names:
                old = fields[names[f.name]]
                fields[names[f.name]] = old.with_type(_merge_type(old.type, f.type, f"{where}.{f.name}"))
            else:
                fields.append(f)
        return pa.struct(fields)
    if (pa.types.is_list(current) or pa.types.is_large_list(current)) and (
        pa.types.is_list(new) or pa.types.is_large_list(new)
    ):
        element = _merge_type(current.value_type, new.value_type, f"{where}[]")
        return pa.list_(current.value_field.with_type(element))
    if pa.types.is_null(current):
        return new
    if pa.types.is_null(new):
        return current
    raise SchemaConflictError(
        f"{where}: the snapshot has type {arrow_to_glue(new)} but the catalog table has {arrow_to_glue(current)}; "
        "Athena cannot read both. Re-materialize this partition's Parquet snapshot: the conversion then "
        "keeps the catalog's column types (values that do not fit go to _rescued_data)."
    )


def _owned(key: str) -> bool:
    return key.startswith(OWNED_PARAM_PREFIXES)


def _current_or_create(glue: GlueClient, database: str, table_input: dict[str, Any]) -> dict[str, Any] | None:
    """The catalog entry as it is now, or None after creating it from ``table_input``.

    Refuses to replace a view with a table or a table with a view: either belongs to someone else."""
    name = table_input["Name"]
    current = _get_table(glue, database, name)
    if current is None:
        glue.create_table(DatabaseName=database, TableInput=table_input)
        return None
    want_view = table_input["TableType"] == "VIRTUAL_VIEW"
    if (current.get("TableType") == "VIRTUAL_VIEW") != want_view:
        found, wanted = ("a table", "a view") if want_view else ("a view", "a table")
        raise SchemaConflictError(
            f"{database}.{name} is {found} in the Glue catalog, not {wanted}; refusing to replace it"
        )
    return current


def register_table(
    glue: GlueClient,
    *,
    database: str,
    table: str,
    location: str,
    schema: pa.Schema,
    parameters: dict[str, str] | None = None,
    description: str | None = None,
    expected_version: str | None = None,
) -> str:
    """Create or update the catalog table; returns ``"created"``, ``"updated"`` or ``"unchanged"``.

    ``parameters`` replace the project's own parameters (``offload_assets.*``, ``projection.*``,
    ``storage.location.template``); parameters someone else set on the table are kept.
    ``expected_version``: update only if the table is still at that Glue version (AWS raises
    ``ConcurrentModificationException`` otherwise; the caller re-reads and merges again).
    """
    ensure_database(glue, database)
    columns = _columns(schema)
    ours = {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        MANAGED_PARAM: "true",
        ARROW_SCHEMA_PARAM: schema_to_text(schema),
        **(parameters or {}),
    }
    table_input: dict[str, Any] = {
        "Name": table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": ours,
        "StorageDescriptor": _storage(location, columns),
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string", "Comment": "snapshot date (export partition)"}],
    }
    if description:
        table_input["Description"] = description
    current = _current_or_create(glue, database, table_input)
    if current is None:
        return "created"
    sd = current.get("StorageDescriptor", {})
    current_params = dict(current.get("Parameters", {}))
    params = {k: v for k, v in current_params.items() if not _owned(k)} | ours
    structure_same = (
        _same_columns(sd.get("Columns", []), columns)
        and sd.get("Location") == location
        and [k["Name"] for k in current.get("PartitionKeys", [])] == [PARTITION_COLUMN]
        and current.get("TableType") == "EXTERNAL_TABLE"
        and (sd.get("SerdeInfo") or {}).get("SerializationLibrary") == PARQUET_SERDE
    )
    if (
        structure_same
        and current_params == params
        and (description is None or current.get("Description") == description)
    ):
        return "unchanged"
    table_input["Parameters"] = params
    if description is None and current.get("Description"):
        table_input["Description"] = current["Description"]
    # Facts-only changes do not archive a version: versions then record schema changes only.
    version = {"VersionId": expected_version} if expected_version else {}
    glue.update_table(DatabaseName=database, TableInput=table_input, SkipArchive=structure_same, **version)
    return "updated"


def register_partition(
    glue: GlueClient,
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
    if (
        sd.get("Location") == location
        and _same_columns(sd.get("Columns", []), partition_input["StorageDescriptor"]["Columns"])
        and current.get("Parameters", {}) == partition_input["Parameters"]
    ):
        return "unchanged"
    glue.update_partition(
        DatabaseName=database, TableName=table, PartitionValueList=[value], PartitionInput=partition_input
    )
    return "updated"


def _partition_pages(glue: GlueClient, database: str, table: str, expression: str | None):
    kwargs: dict[str, Any] = {"DatabaseName": database, "TableName": table}
    if expression:
        kwargs["Expression"] = expression
    for page in glue.get_paginator("get_partitions").paginate(**kwargs):
        yield from page.get("Partitions", [])


def list_partitions(
    glue: GlueClient, *, database: str, table: str, expression: str | None = None
) -> list[CatalogPartition]:
    """Registered partitions, sorted by value."""
    out = [
        CatalogPartition(
            p["Values"][0], p.get("StorageDescriptor", {}).get("Location", ""), dict(p.get("Parameters", {}))
        )
        for p in _partition_pages(glue, database, table, expression)
    ]
    return sorted(out, key=lambda p: p.value)


def sync_partition_columns(glue: GlueClient, *, database: str, table: str, schema: pa.Schema) -> int:
    """Give every partition the table's column list (after the table gained columns); returns how many changed."""
    columns = _columns(schema)
    entries = []
    for p in _partition_pages(glue, database, table, None):
        sd = p.get("StorageDescriptor", {})
        if _same_columns(sd.get("Columns", []), columns):
            continue
        entries.append(
            {
                "PartitionValueList": p["Values"],
                "PartitionInput": {
                    "Values": p["Values"],
                    "StorageDescriptor": _storage(sd.get("Location", ""), columns),
                    "Parameters": dict(p.get("Parameters", {})),
                },
            }
        )
    for i in range(0, len(entries), _BATCH_UPDATE):
        response = glue.batch_update_partition(
            DatabaseName=database, TableName=table, Entries=entries[i : i + _BATCH_UPDATE]
        )
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RuntimeError(
                f"{database}.{table}: updating the columns of partition {first.get('PartitionValueList')} failed: "
                f"{first.get('ErrorDetail', {}).get('ErrorMessage', 'no reason given')}"
            )
    return len(entries)


def delete_partition(glue: GlueClient, *, database: str, table: str, value: str) -> bool:
    try:
        glue.delete_partition(DatabaseName=database, TableName=table, PartitionValues=[value])
        return True
    except glue.exceptions.EntityNotFoundException:
        return False


def delete_partitions(glue: GlueClient, *, database: str, table: str, values: list[str]) -> int:
    """Delete partitions by value (missing ones are ignored); returns how many were deleted."""
    deleted = 0
    for i in range(0, len(values), _BATCH_DELETE):
        chunk = values[i : i + _BATCH_DELETE]
        response = glue.batch_delete_partition(
            DatabaseName=database, TableName=table, PartitionsToDelete=[{"Values": [v]} for v in chunk]
        )
        errors = [
            e
            for e in response.get("Errors", [])
            if e.get("ErrorDetail", {}).get("ErrorCode") != "EntityNotFoundException"
        ]
        if errors:
            raise RuntimeError(
                f"{database}.{table}: deleting partition {errors[0].get('PartitionValues')} failed: "
                f"{errors[0].get('ErrorDetail', {}).get('ErrorMessage', 'no reason given')}"
            )
        deleted += len(chunk) - len(response.get("Errors", []))
    return deleted


# --- Athena views -------------------------------------------------------------------------


def encode_presto_view(
    sql: str, *, schema: str, columns: list[tuple[str, str]], catalog: str = "awsdatacatalog"
) -> str:
    """``ViewOriginalText`` as Athena writes it: ``/* Presto View: <base64 of the JSON definition> */``."""
    definition = {
        "originalSql": sql,
        "catalog": catalog,
        "schema": schema,
        "columns": [{"name": name, "type": type_} for name, type_ in columns],
    }
    payload = base64.b64encode(json.dumps(definition, separators=(",", ":")).encode("utf-8")).decode("ascii")
    return f"{PRESTO_VIEW_PREFIX}{payload}{PRESTO_VIEW_SUFFIX}"


def decode_presto_view(text: str, *, where: str = "view") -> dict[str, Any]:
    """The JSON definition inside an Athena view's ``ViewOriginalText``."""
    body = text.strip()
    if not (body.startswith(PRESTO_VIEW_PREFIX) and body.endswith(PRESTO_VIEW_SUFFIX)):
        raise ValueError(f"{where}: ViewOriginalText is not an Athena (Presto) view definition: {text[:60]!r}")
    try:
        definition = json.loads(base64.b64decode(body[len(PRESTO_VIEW_PREFIX) : -len(PRESTO_VIEW_SUFFIX)]))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: cannot decode the Presto view definition: {err}") from None
    if not isinstance(definition, dict) or not isinstance(definition.get("originalSql"), str):
        raise ValueError(f"{where}: the Presto view definition has no originalSql")
    return definition


def register_view(
    glue: GlueClient,
    *,
    database: str,
    name: str,
    sql: str,
    schema: pa.Schema,
    description: str | None = None,
    parameters: dict[str, str] | None = None,
) -> str:
    """Create or update an Athena view (Glue ``VIRTUAL_VIEW``); ``"created"``/``"updated"``/``"unchanged"``.

    ``schema`` is the view's output columns; it goes into Glue (Hive types) and into the view
    definition (Presto types), which Athena checks against the query's columns at run time.
    """
    ensure_database(glue, database)
    view_text = encode_presto_view(sql, schema=database, columns=[(f.name, arrow_to_presto(f.type)) for f in schema])
    table_input: dict[str, Any] = {
        "Name": name,
        "TableType": "VIRTUAL_VIEW",
        "ViewOriginalText": view_text,
        "ViewExpandedText": "/* Presto View */",
        "Parameters": {"presto_view": "true", "comment": "Presto View", MANAGED_PARAM: "true", **(parameters or {})},
        "PartitionKeys": [],
        "StorageDescriptor": {
            "Columns": [{"Name": f.name, "Type": arrow_to_glue(f.type)} for f in schema],
            "SerdeInfo": {},
            "Location": "",
        },
    }
    if description:
        table_input["Description"] = description
    current = _current_or_create(glue, database, table_input)
    if current is None:
        return "created"
    if (
        current.get("ViewOriginalText") == view_text
        and current.get("Parameters", {}) == table_input["Parameters"]
        and (description is None or current.get("Description") == description)
    ):
        return "unchanged"
    glue.update_table(DatabaseName=database, TableInput=table_input)
    return "updated"


def delete_table(glue: GlueClient, *, database: str, name: str) -> bool:
    try:
        glue.delete_table(DatabaseName=database, Name=name)
        return True
    except glue.exceptions.EntityNotFoundException:
        return False
