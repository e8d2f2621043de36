"""Build a day's full snapshot from the previous one and DynamoDB's incremental export of the day.

An INCREMENTAL_EXPORT holds one line per item that changed in its window::

    {"Metadata": {"WriteTimestampMicros": {"N": "..."}}, "Keys": {...}, "NewImage": {...}, "OldImage": {...}}

An insert or update carries ``NewImage``; a delete has none (only ``Keys``, and ``OldImage`` with
the NEW_AND_OLD_IMAGES view). Applying the changes to the previous full export, item by item on
the table's primary key, gives the table as of the window's end, written as a new full export
in the native layout. The previous export is streamed; only the changes are held in memory.

The local emulator answers an incremental request with a full dump of ``{"Item": ...}`` lines:
such an export is taken as the complete new state (the changes cannot be told apart from it).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import orjson

from offload_assets.conversion.export_lines import NotAnItem, parse_line
from offload_assets.export.errors import ExportDeadline, ExportFailedError
from offload_assets.export.layout import (
    DataFileWriter,
    ExportManifest,
    export_dir_key,
    iter_data_file_lines,
    list_completed_exports,
    new_export_id,
    parse_export_time,
    utc_iso,
    write_export_manifests,
)

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


def key_names_of(table: dict[str, Any]) -> tuple[str, ...]:
    """Primary key attribute names of a DescribeTable ``Table``, hash key first."""
    schema = sorted(table["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return tuple(k["AttributeName"] for k in schema)


def _canonical_value(value: dict[str, Any]) -> list[Any]:
    ((tag, inner),) = value.items()
    if tag == "N":
        try:
            inner = str(Decimal(inner).normalize())
        except InvalidOperation:
            pass
    return [tag, inner]


def item_key(image: dict[str, Any], key_names: tuple[str, ...], where: str) -> bytes:
    """A hashable form of an item's primary key (numbers normalised: ``1.0`` and ``1`` are one key)."""
    try:
        return orjson.dumps([_canonical_value(image[name]) for name in key_names])
    except KeyError as err:
        raise ExportFailedError(
            f"{where}: item has no key attribute {err.args[0]!r} (table key: {', '.join(key_names)})"
        ) from None
    except (ValueError, AttributeError):
        raise ExportFailedError(f"{where}: key attribute is not a typed DynamoDB value") from None


@dataclass(frozen=True)
class Change:
    new_image: dict[str, Any] | None  # None: the item was deleted
    write_micros: int


def _write_micros(metadata: Any) -> int:
    value = (metadata or {}).get("WriteTimestampMicros")
    if isinstance(value, dict):
        value = value.get("N")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@dataclass
class ChangeSet:
    changes: dict[bytes, Change]
    lines: int
    full_dump: bool  # the export held ``{"Item": ...}`` lines: a complete state, not changes


def read_change_set(s3: S3Client, incremental: ExportManifest, key_names: tuple[str, ...]) -> ChangeSet:
    """Every change of an incremental export, the latest per key (by WriteTimestampMicros)."""
    changes: dict[bytes, Change] = {}
    lines = 0
    kinds: set[str] = set()
    for data_file in incremental.data_files:
        for number, line in enumerate(iter_data_file_lines(s3, bucket=incremental.bucket, key=data_file.key), start=1):
            where = f"s3://{incremental.bucket}/{data_file.key} line {number}"
            try:
                record = parse_line(line)  # also refuses a key twice in one object, which DynamoDB never writes
            except orjson.JSONDecodeError as err:
                raise ExportFailedError(f"{where}: not JSON ({err})") from None
            except NotAnItem as err:
                raise ExportFailedError(f"{where}: {err}") from None
            lines += 1
            if not isinstance(record, dict):
                raise ExportFailedError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if "Item" in record:
                kinds.add("full")
                continue
            if not ({"Keys", "NewImage", "OldImage"} & record.keys()):
                raise ExportFailedError(f"{where}: not an incremental export line (no Keys, NewImage or OldImage)")
            kinds.add("changes")
            image = record.get("Keys") or record.get("NewImage") or record.get("OldImage")
            key = item_key(image, key_names, where)
            change = Change(new_image=record.get("NewImage"), write_micros=_write_micros(record.get("Metadata")))
            previous = changes.get(key)
            if previous is None or change.write_micros >= previous.write_micros:
                changes[key] = change
    if kinds == {"full", "changes"}:
        raise ExportFailedError(
            f'incremental export {incremental.s3_uri} mixes full-export lines ({{"Item": ...}}) and change lines'
        )
    return ChangeSet(changes=changes, lines=lines, full_dump=kinds == {"full"})


@dataclass(frozen=True)
class MergeCounts:
    unchanged: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    deletes_of_absent_items: int = 0  # the item was not in the previous snapshot: nothing to delete

    def as_facts(self) -> dict[str, int]:
        return {
            "items_unchanged": self.unchanged,
            "items_inserted": self.inserted,
            "items_updated": self.updated,
            "items_deleted": self.deleted,
            "deletes_of_absent_items": self.deletes_of_absent_items,
        }


def _item_line(image: dict[str, Any]) -> bytes:
    return orjson.dumps({"Item": image})


def apply_incremental_export(
    s3: S3Client,
    *,
    base: ExportManifest,
    incremental: ExportManifest,
    key_names: tuple[str, ...],
    bucket: str,
    export_prefix: str,
    export_time: str,
    table_arn: str | None,
    deadline: ExportDeadline | None = None,
    put_kwargs: dict[str, Any] | None = None,
) -> tuple[ExportManifest, MergeCounts]:
    """Write ``base`` + ``incremental`` as a new full export under ``export_prefix``; manifests last."""
    start_time = utc_iso()
    change_set = read_change_set(s3, incremental, key_names)
    changes = dict(change_set.changes)
    export_id = new_export_id()
    counts = {"unchanged": 0, "inserted": 0, "updated": 0, "deleted": 0, "deletes_of_absent_items": 0}
    with tempfile.TemporaryDirectory(prefix="offload-incremental-") as tmpdir:
        writer = DataFileWriter(
            s3,
            bucket=bucket,
            data_prefix=f"{export_dir_key(export_prefix, export_id)}/data",
            tmpdir=tmpdir,
            put_kwargs=put_kwargs,
        )

        def keep(line: bytes, outcome: str) -> None:
            writer.write_line(line)
            counts[outcome] += 1
            if writer.full:
                writer.roll()

        try:
            if change_set.full_dump:
                for data_file in incremental.data_files:
                    for line in iter_data_file_lines(s3, bucket=incremental.bucket, key=data_file.key):
                        keep(line, "unchanged")
            else:
                for data_file in base.data_files:
                    if deadline:
                        deadline.check()
                    for number, line in enumerate(
                        iter_data_file_lines(s3, bucket=base.bucket, key=data_file.key), start=1
                    ):
                        where = f"s3://{base.bucket}/{data_file.key} line {number}"
                        try:
                            item = orjson.loads(line)["Item"]
                        except (orjson.JSONDecodeError, KeyError, TypeError):
                            raise ExportFailedError(f'{where}: not a full-export line ({{"Item": ...}})') from None
                        change = changes.pop(item_key(item, key_names, where), None)
                        if change is None:
                            keep(line, "unchanged")  # copied byte for byte
                        elif change.new_image is None:
                            counts["deleted"] += 1
                        else:
                            keep(_item_line(change.new_image), "updated")
                for change in changes.values():
                    if change.new_image is None:
                        counts["deletes_of_absent_items"] += 1
                    else:
                        keep(_item_line(change.new_image), "inserted")
            writer.roll()
        finally:
            writer.discard()
        if deadline:
            deadline.check()
        merge = MergeCounts(**counts)
        manifest = write_export_manifests(
            s3,
            bucket=bucket,
            export_prefix=export_prefix,
            export_id=export_id,
            data_files=writer.files,
            table_arn=table_arn,
            export_time=export_time,
            start_time=start_time,
            export_arn=None,
            extra={
                "exportMethod": "incremental",
                "baseExportId": base.export_id,
                "baseExportTime": base.export_time,
                "baseS3Uri": base.s3_uri,
                "incrementalExportArn": incremental.export_arn,
                "incrementalS3Uri": incremental.s3_uri,
                "incrementalLines": change_set.lines,
                "incrementalWasFullDump": change_set.full_dump,
                **counts,
            },
            put_kwargs=put_kwargs,
        )
    return manifest, merge


def _same_instant(text: str | None, instant: dt.datetime) -> bool:
    parsed = parse_export_time(text)
    return parsed is not None and abs((parsed - instant).total_seconds()) < 1


def find_incremental_export(
    s3: S3Client, *, bucket: str, export_prefix: str, from_time: dt.datetime, to_time: dt.datetime
) -> ExportManifest | None:
    """A complete incremental export of exactly this window under ``export_prefix`` (newest first), if any."""
    for manifest in reversed(list_completed_exports(s3, bucket=bucket, export_prefix=export_prefix)):
        summary = manifest.summary
        if (
            manifest.export_type == "INCREMENTAL_EXPORT"
            and _same_instant(summary.get("exportFromTime"), from_time)
            and _same_instant(summary.get("exportToTime"), to_time)
        ):
            return manifest
    return None
