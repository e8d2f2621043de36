"""``<table>_latest``: the newest published snapshot, as an Athena view both engines read.

The table holds one partition per snapshot date, so a plain ``COUNT(*)`` over it counts every
item once per retained snapshot. The view pins the newest date as a literal::

    SELECT "user", "book", ..., "ddb_export_timestamp" FROM "db"."reviews"
    WHERE "ddb_export_timestamp" = '2026-11-27'

and is rewritten whenever the newest date or the table's columns change. Why a literal and not
``= (SELECT max(ddb_export_timestamp) ...)``: the literal prunes to one partition on both engines
before any file is opened (Athena bills the subquery's scan of every snapshot), it can never
point at a day that is registered but being replaced, and it names what the view shows.
Why explicit columns and not ``*``: Athena checks a view's stored columns against its query, so
``SELECT *`` over a table that gained a column makes the view fail until it is recreated.

The view is stored the way Athena stores views (Glue ``VIRTUAL_VIEW``, Trino SQL in
``ViewOriginalText``), so Athena, the Glue console and the local DuckDB engine all read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from offload_assets.catalog.glue_tables import delete_table, register_view
from offload_assets.table_spec import PARTITION_COLUMN

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient

LATEST_SUFFIX = "_latest"
_PARTITION_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LatestViewOutcome:
    name: str
    partition: str | None  # None: no snapshot registered, view removed
    change: str  # created / updated / unchanged / deleted / absent


def latest_view_name(table: str) -> str:
    return f"{table}{LATEST_SUFFIX}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def latest_view_sql(database: str, table: str, schema: pa.Schema, partition_value: str) -> str:
    """The Trino SQL of the view (``schema``: the table's data columns, without the partition key)."""
    if not _PARTITION_VALUE.match(partition_value):
        raise ValueError(f"table {database}.{table}: partition value {partition_value!r} is not a YYYY-MM-DD date")
    columns = ", ".join(_quote(f.name) for f in schema if f.name != PARTITION_COLUMN)
    return (
        f"SELECT {columns}, {_quote(PARTITION_COLUMN)} FROM {_quote(database)}.{_quote(table)} "
        f"WHERE {_quote(PARTITION_COLUMN)} = '{partition_value}'"
    )


def view_schema(schema: pa.Schema) -> pa.Schema:
    """The view's output columns: the table's, then the partition key."""
    fields = [f for f in schema if f.name != PARTITION_COLUMN]
    return pa.schema([*fields, pa.field(PARTITION_COLUMN, pa.string())])


def _shown_partition(glue: GlueClient, database: str, name: str) -> str | None:
    try:
        view = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None
    return view.get("Parameters", {}).get("offload_assets.latest_partition")


def _partition_exists(glue: GlueClient, database: str, table: str, value: str) -> bool:
    try:
        glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=[value])
        return True
    except glue.exceptions.EntityNotFoundException:
        return False


def publish_latest_view(
    glue: GlueClient, *, database: str, table: str, schema: pa.Schema, partition_values: list[str], source_table: str
) -> LatestViewOutcome:
    """Point ``<table>_latest`` at the newest of ``partition_values`` (drop it when there is none)."""
    name = latest_view_name(table)
    if not partition_values:
        return LatestViewOutcome(
            name, None, "deleted" if delete_table(glue, database=database, name=name) else "absent"
        )
    newest = max(partition_values)
    # Two publishers racing (a backfill): never move the view back to an older snapshot than the
    # one it shows, as long as that one is still registered.
    shown = _shown_partition(glue, database, name)
    if shown and shown > newest and _partition_exists(glue, database, table, shown):
        newest = shown
    change = register_view(
        glue,
        database=database,
        name=name,
        sql=latest_view_sql(database, table, schema, newest),
        schema=view_schema(schema),
        description=(
            f"Newest snapshot ({newest}) of DynamoDB table {source_table}: one row per item. "
            f"Query {table} for history across snapshot dates."
        ),
        parameters={"offload_assets.latest_partition": newest, "offload_assets.base_table": table},
    )
    return LatestViewOutcome(name, newest, change)
