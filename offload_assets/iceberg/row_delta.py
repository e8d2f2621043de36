"""One Iceberg v2 snapshot that adds data files and position delete files (merge-on-read), and may remove files.

pyiceberg 0.12 reads position deletes but cannot write them (``Table.delete`` falls back to
copy-on-write; its manifest writers are for data files). This is the smallest producer on its own
pieces that does, like Iceberg's ``RowDelta``/``RewriteFiles``:

* added data files go into a DATA manifest and added position delete files into a DELETES
  manifest, both with no sequence number so they inherit the snapshot's: a delete applies to
  data files of the same or older sequence numbers and names its rows by file path, so it only
  ever removes rows of the files it was written against;
* the parent's manifests are kept as they are; a manifest listing a removed file (compaction
  removes data files and the delete files that pointed at them) is rewritten with that entry
  DELETED and the others EXISTING, keeping their sequence numbers;
* the summary counts added/removed data files, delete files and position deletes (pyiceberg's
  own collector), plus the caller's properties;
* the row positions were read from the parent snapshot: if another writer committed first, the
  commit is refused (``ValidationException``) rather than rebased, and the caller redoes its
  decision on the new snapshot (``publish_iceberg`` and change capture both do).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pyarrow as pa
from pyiceberg.exceptions import ValidationException
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriterV2,
)
from pyiceberg.schema import Schema
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update.snapshot import _SnapshotProducer
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, NestedField, StringType

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.table import Transaction

#: The position delete file schema of the Iceberg spec (reserved field ids).
POSITION_DELETE_SCHEMA = Schema(
    NestedField(2147483546, "file_path", StringType(), required=True),
    NestedField(2147483545, "pos", LongType(), required=True),
)
#: Full file_path bounds (not truncated): readers match a delete file to the data files it names.
#: As Arrow, with the field ids; file_path a plain ``string`` (iceberg-rust refuses ``large_string`` paths).
_POSITION_DELETE_ARROW = pa.schema(
    [
        pa.field("file_path", pa.string(), nullable=False, metadata={b"PARQUET:field_id": b"2147483546"}),
        pa.field("pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": b"2147483545"}),
    ]
)
_DELETE_FILE_METRICS = {"write.metadata.metrics.column.file_path": "full", "write.metadata.metrics.column.pos": "full"}


class _DeleteManifestWriter(ManifestWriterV2):
    """A v2 manifest of delete files (pyiceberg's writer hard-codes content DATA)."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


def write_position_deletes(tx: Transaction, io: FileIO, positions: pa.Table, commit_uuid: uuid.UUID) -> DataFile:
    """Write ``positions`` (``file_path``, ``pos``) as ONE position delete file, sorted by file_path, pos."""
    metadata = tx.table_metadata
    rows = positions.select(["file_path", "pos"]).sort_by([("file_path", "ascending"), ("pos", "ascending")])
    rows = rows.cast(_POSITION_DELETE_ARROW)
    path = tx._table.location_provider().new_data_location(f"{commit_uuid}-deletes.parquet")
    output = io.new_output(path)
    writer = FileFormatFactory.get(FileFormat.PARQUET).create_writer(
        output, POSITION_DELETE_SCHEMA, {**metadata.properties, **_DELETE_FILE_METRICS}
    )
    with writer:
        writer.write(rows)
    return DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=Record(),
        file_size_in_bytes=len(output),
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **writer.result().to_serialized_dict(),
    )


class RowDelta(_SnapshotProducer["RowDelta"]):
    """Add data files and position delete files, remove data or delete files: ONE snapshot.

    Use as ``with RowDelta(tx, io, props) as delta: delta.append_data_file(f); delta.remove_file(f)``.
    """

    def __init__(
        self, transaction: Transaction, io: FileIO, snapshot_properties: dict[str, str], commit_uuid: uuid.UUID
    ) -> None:
        has_parent = transaction.table_metadata.current_snapshot() is not None
        super().__init__(
            operation=Operation.OVERWRITE if has_parent else Operation.APPEND,
            transaction=transaction,
            io=io,
            commit_uuid=commit_uuid,
            snapshot_properties=snapshot_properties,
        )

    def append_delete_file(self, delete_file: DataFile) -> RowDelta:
        if delete_file.content != DataFileContent.POSITION_DELETES:
            raise ValueError(f"not a position delete file: {delete_file.file_path}")
        self._added_data_files.append(delete_file)  # the summary collector counts it by its content
        return self

    def remove_file(self, file: DataFile) -> RowDelta:
        """Remove a data file or a delete file of the parent snapshot."""
        self._deleted_data_files.add(file)
        return self

    def _validate_concurrency(self) -> None:
        window = self._commit_window
        if window is not None and not window.is_empty():
            raise ValidationException(
                "the table has a new snapshot since this commit read its row positions; redo it on the new snapshot"
            )

    def _deleted_entries(self) -> list[ManifestEntry]:
        return []  # recorded in the rewritten manifests (see _existing_manifests)

    def _write(self, content: DataFileContent, writer_class: type[ManifestWriterV2]) -> list[ManifestFile]:
        files = [f for f in self._added_data_files if f.content == content]
        if not files:
            return []
        metadata = self._transaction.table_metadata
        with writer_class(
            metadata.spec(), self.schema(), self.new_manifest_output(), self._snapshot_id, self._compression
        ) as writer:
            for file in files:
                writer.add(
                    ManifestEntry.from_args(
                        status=ManifestEntryStatus.ADDED,
                        snapshot_id=self._snapshot_id,
                        sequence_number=None,
                        file_sequence_number=None,
                        data_file=file,
                    )
                )
        return [writer.to_manifest_file()]

    def _rewrite_without_removed(self, manifest: ManifestFile, removed: set[str], found: set[str]) -> ManifestFile:
        """``manifest`` itself when it lists no removed file, else its rewrite (removed entries DELETED)."""
        entries = manifest.fetch_manifest_entry(io=self._io, discard_deleted=True)
        hits = {e.data_file.file_path for e in entries} & removed
        if not hits:
            return manifest
        found |= hits
        writer_class = _DeleteManifestWriter if manifest.content == ManifestContent.DELETES else ManifestWriterV2
        with writer_class(
            self.spec(manifest.partition_spec_id),
            self.schema(),
            self.new_manifest_output(),
            self._snapshot_id,
            self._compression,
        ) as writer:
            for entry in entries:
                if entry.data_file.file_path in removed:
                    writer.delete(entry)
                else:
                    writer.existing(entry)
        return writer.to_manifest_file()

    def _existing_manifests(self) -> list[ManifestFile]:
        if self._parent_snapshot_id is None:
            if self._deleted_data_files:
                raise ValueError("nothing to remove from a table without a snapshot")
            return []
        parent = self._transaction.table_metadata.snapshot_by_id(self._parent_snapshot_id)
        if parent is None:
            raise ValueError(f"snapshot {self._parent_snapshot_id} not found")
        removed = {f.file_path for f in self._deleted_data_files}
        kept, found = [], set()
        for manifest in parent.manifests(io=self._io):
            if not (manifest.has_added_files() or manifest.has_existing_files()):
                continue  # only DELETED entries: nothing live to carry over
            kept.append(self._rewrite_without_removed(manifest, removed, found) if removed else manifest)
        if missing := removed - found:
            raise ValidationException(f"files to remove are not in snapshot {parent.snapshot_id}: {sorted(missing)}")
        return kept

    def _manifests(self) -> list[ManifestFile]:
        added = self._write(DataFileContent.DATA, ManifestWriterV2)
        added += self._write(DataFileContent.POSITION_DELETES, _DeleteManifestWriter)
        return added + self._existing_manifests()


__all__ = ["POSITION_DELETE_SCHEMA", "RowDelta", "write_position_deletes"]
