"""Apply DynamoDB's incremental export of a day to the Iceberg table directly (no full re-conversion).

An INCREMENTAL_EXPORT holds one line per changed item (see :mod:`offload_assets.export.incremental`):
its latest ``NewImage`` per key is an upsert, a key without one a delete. Only those items are
converted (by the converter's rules, the table's columns first) and applied with
:func:`~offload_assets.iceberg.changes.apply_changes` in ONE snapshot carrying the same summary as a
full-export commit (partition, export id, counts), so the checks and the re-run rules are the same.

Not wired into the Dagster assets yet: the Parquet snapshot asset still converts the merged full
export, and its blocking checks read it (see the README).
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
from pyiceberg.table import Table

from offload_assets.cdc.changes import convert_images
from offload_assets.cdc.iceberg_target import IcebergTarget
from offload_assets.export.incremental import read_change_set
from offload_assets.export.layout import ExportManifest
from offload_assets.iceberg.changes import apply_changes, table_key_columns
from offload_assets.iceberg.publish import (
    COUNT_KEYS,
    EXPORT_ID,
    EXPORT_ITEMS,
    EXPORT_TIME,
    PARTITION,
    SOURCE_TABLE,
    check_partition_order,
    partition_commits,
)
from offload_assets.table_spec import TableSpec


def _key_image(key: bytes, key_names: tuple[str, ...]) -> dict[str, Any]:
    """The DynamoDB key image behind :func:`offload_assets.export.incremental.item_key`'s bytes."""
    return {name: {tag: value} for name, (tag, value) in zip(key_names, orjson.loads(key), strict=True)}


def apply_incremental_export(
    table: Table, s3: Any, spec: TableSpec, partition_key: str, incremental: ExportManifest, key_names: tuple[str, ...]
) -> dict[str, int] | None:
    """Commit the changes of ``incremental`` as partition ``partition_key``; the counts, or None if already applied."""
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    done = check_partition_order(partition_commits(table), partition_key, where)
    if done is not None and done.export_id == incremental.export_id:
        return None
    change_set = read_change_set(s3, incremental, key_names)
    if change_set.full_dump:
        raise ValueError(f"{where}: {incremental.s3_uri} is a full dump, not changes (use the full-export path)")
    existing = IcebergTarget(table).arrow_schema()
    images = [c.new_image for c in change_set.changes.values() if c.new_image is not None]
    gone = [_key_image(k, key_names) for k, c in change_set.changes.items() if c.new_image is None]
    keys = table_key_columns(table)
    upserts = convert_images(images, existing) if images else None
    deletes = convert_images(gone, existing).select(list(keys)) if gone else None
    present = table.scan(selected_fields=keys).to_arrow()

    def matches(data: pa.Table | None) -> int:
        if data is None or not data.num_rows:
            return 0
        probe = pa.table({k: data.column(k).cast(present.schema.field(k).type) for k in keys})
        return probe.join(present, list(keys), join_type="left semi").num_rows

    replaced, deleted = matches(upserts), matches(deletes)
    upserted = upserts.num_rows if upserts is not None else 0
    counts = {
        "inserted": upserted - replaced,
        "updated": replaced,
        "deleted": deleted,
        "unchanged": present.num_rows - replaced - deleted,
        "previous-rows": present.num_rows,
    }
    summary = {
        PARTITION: partition_key,
        EXPORT_ID: incremental.export_id,
        EXPORT_TIME: spec.export_time(partition_key).isoformat(),
        EXPORT_ITEMS: str(present.num_rows + counts["inserted"] - deleted),
        SOURCE_TABLE: spec.dynamodb_table,
        **{COUNT_KEYS[k]: str(v) for k, v in counts.items()},
    }
    apply_changes(table, upserts=upserts, deletes=deletes, summary=summary)
    return counts


__all__ = ["apply_incremental_export"]
