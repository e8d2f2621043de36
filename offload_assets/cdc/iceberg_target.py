"""The Iceberg table as change capture's target, on issue 17's API (no second Iceberg writer).

Changes and the position land in ONE snapshot through :func:`offload_assets.iceberg.apply_changes`;
the start position is read back from the snapshot summaries (current snapshot first, then its
ancestors, so a maintenance snapshot without our properties does not lose the position).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table

from offload_assets.cdc.capture import CommitConflict
from offload_assets.cdc.changes import convert_images
from offload_assets.iceberg import apply_changes
from offload_assets.iceberg.changes import table_key_columns
from offload_assets.iceberg.diff import diff_full_state

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
    """:class:`offload_assets.cdc.capture.ChangeTarget` over a pyiceberg ``Table``.

    ``table`` may be ``None`` (no Iceberg table yet): ``create`` then makes it, from the first full
    export's schema, when that export is loaded (the bootstrap of a table that never had a partition).
    """

    def __init__(self, table: Table | None, *, create: Callable[[pa.Schema], Table] | None = None):
        self.table = table
        self._create = create

    def summaries(self) -> list[dict[str, str]]:
        if self.table is None:
            return []
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
        if self.table is None:
            return None
        schema = self.table.schema().as_arrow()
        return pa.schema([_with_converter_metadata(f) for f in schema])

    def key_columns(self) -> tuple[str, ...]:
        return table_key_columns(self.table)

    def commit(self, upserts: pa.Table | None, deletes: pa.Table | None, properties: dict[str, str]) -> dict:
        try:
            return asdict(apply_changes(self.table, upserts=upserts, deletes=deletes, summary=properties))
        except (CommitFailedException, ValidationException) as err:
            # The table moved under us (optimistic concurrency). The merge-on-read commit refuses
            # (ValidationException) to rebase its row positions onto another writer's snapshot:
            # nothing of ours landed, and the step is redone from the new current snapshot.
            self.table.refresh()
            raise CommitConflict(f"{'.'.join(self.table.name())}: {err}") from err

    def load_full_export(self, items: list[dict], properties: dict[str, str]) -> dict:
        """The table set to ``items`` by diff (only changed rows are rewritten), in ONE commit with ``properties``."""
        export = convert_images(items, self.arrow_schema())
        if self.table is None:
            if self._create is None:
                raise ValueError("no Iceberg table to bootstrap and no way to create it")
            self.table = self._create(export.schema)
        current = self.table.scan().to_arrow()
        diff = diff_full_state(current, export, self.key_columns())
        applied = self.commit(diff.upserts, diff.deletes, properties)
        return {**applied, **diff.counts()}
