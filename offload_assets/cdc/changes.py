"""A batch of stream records reduced to one change per key, and converted with the project's converter.

Within a batch the last change per key by sequence number wins: a key ends as an upsert (its new
image) or a delete. REMOVE records are deletes; those written by DynamoDB's TTL process
(``userIdentity`` = the service principal) are deletes too, counted apart. Images are converted
exactly like export items (the same type mapping, column names and ``_rescued_data``), against
the table's current Arrow schema so columns keep their types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from offload_assets.cdc.source import StreamRecord
from offload_assets.conversion import ConversionOptions
from offload_assets.conversion.export_lines import NotAnItem, normalize_item
from offload_assets.conversion.python_engine import collect_stats, convert_items
from offload_assets.conversion.schema_plan import plan_schema
from offload_assets.export.errors import ExportFailedError
from offload_assets.export.incremental import item_key

#: Stream view types that carry the item after the write (what an upsert needs).
VIEW_TYPES_WITH_NEW_IMAGE = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


class ChangeRecordError(ValueError):
    """A stream record cannot be applied (no new image, no key): the message says which record."""


@dataclass
class ChangeBatch:
    """One change per key: ``upserts`` (key -> new image) and ``deletes`` (key -> key attributes)."""

    upserts: dict[bytes, dict] = field(default_factory=dict)
    deletes: dict[bytes, dict] = field(default_factory=dict)
    records: int = 0
    inserts: int = 0
    updates: int = 0
    removes: int = 0
    ttl_deletes: int = 0

    def facts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "keys": len(self.upserts) + len(self.deletes),
            "inserts": self.inserts,
            "updates": self.updates,
            "deletes": self.removes,
            "ttl_deletes": self.ttl_deletes,
        }


def reduce_records(records: Iterable[StreamRecord], key_names: tuple[str, ...]) -> ChangeBatch:
    """The net change per key of ``records`` (any order: sorted by sequence number here)."""
    records = sorted(records, key=lambda r: r.sequence)
    first: dict[bytes, StreamRecord] = {}
    last: dict[bytes, StreamRecord] = {}
    for r in records:
        image = r.keys or r.new_image or r.old_image or {}
        try:
            key = item_key(image, key_names, f"stream record {r.sequence_number}")
        except ExportFailedError as err:
            raise ChangeRecordError(str(err)) from None
        first.setdefault(key, r)
        last[key] = r
    batch = ChangeBatch(records=len(records))
    for key, r in last.items():
        if r.event_name == "REMOVE":
            batch.deletes[key] = {k: (r.keys or r.old_image)[k] for k in key_names}
            if r.is_ttl_expiry:
                batch.ttl_deletes += 1
            else:
                batch.removes += 1
            continue
        if not r.new_image:
            raise ChangeRecordError(
                f"stream record {r.sequence_number} ({r.event_name}) has no NewImage: the stream's view type must "
                f"be one of {', '.join(VIEW_TYPES_WITH_NEW_IMAGE)}"
            )
        try:
            batch.upserts[key] = normalize_item(r.new_image, native=True)
        except NotAnItem as err:
            raise ChangeRecordError(f"stream record {r.sequence_number}: {err}") from None
        if first[key].event_name == "INSERT":
            batch.inserts += 1
        else:
            batch.updates += 1
    return batch


def convert_images(
    images: Iterable[dict], existing_schema: pa.Schema | None, options: ConversionOptions = ConversionOptions()
) -> pa.Table:
    """Items (DynamoDB JSON) as an Arrow table by the converter's rules, ``existing_schema`` first."""
    images = list(images)
    stats, _ = collect_stats(images)
    plan = plan_schema(stats, existing_schema, options)
    batches = [b for b, _ in convert_items(images, plan)]
    return pa.Table.from_batches(batches, schema=plan.schema)
