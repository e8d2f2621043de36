"""The Iceberg table as change capture's target, on issue 17's API (no second Iceberg writer).

Changes and the position land in ONE snapshot through :func:`offload_assets.iceberg.apply_changes`;
the start position is read back from the snapshot summaries (current snapshot first, then its
ancestors, so a maintenance snapshot without our properties does not lose the position).
"""

from __future__ import annotations

import re
from dataclasses import asdict

import pyarrow as pa
from pyiceberg.table import Table

from offload_assets.iceberg import apply_changes
from offload_assets.iceberg.changes import table_key_columns

# The column doc issue 17 writes: "DynamoDB attribute 'name' (TYPE)".
_DOC_RE = re.compile(r"^DynamoDB attribute '(?P<name>.*)'(?: \((?P<type>[A-Z_]+)\))?$")


def _with_converter_metadata(field: pa.Field) -> pa.Field:
    meta = dict(field.metadata or {})
    match = _DOC_RE.match((meta.get(b"doc") or b"").decode())
    if match:
        meta[b"original_name"] = match["name"].encode()
        if match["type"]:
            meta[b"dynamodb_type"] = match["type"].encode()
    return field.with_metadata(meta)


class IcebergTarget:
    """:class:`offload_assets.cdc.capture.ChangeTarget` over a pyiceberg ``Table``."""

    def __init__(self, table: Table):
        self.table = table

    def summaries(self) -> list[dict[str, str]]:
        self.table.refresh()
        out = []
        snapshot = self.table.current_snapshot()
        while snapshot is not None:
            summary = snapshot.summary
            out.append({"operation": summary.operation.value, **summary.additional_properties} if summary else {})
            parent = snapshot.parent_snapshot_id
            snapshot = self.table.snapshot_by_id(parent) if parent is not None else None
        return out

    def arrow_schema(self) -> pa.Schema | None:
        schema = self.table.schema().as_arrow()
        return pa.schema([_with_converter_metadata(f) for f in schema])

    def key_columns(self) -> tuple[str, ...]:
        return table_key_columns(self.table)

    def commit(self, upserts: pa.Table | None, deletes: pa.Table | None, properties: dict[str, str]) -> dict:
        return asdict(apply_changes(self.table, upserts=upserts, deletes=deletes, summary=properties))
