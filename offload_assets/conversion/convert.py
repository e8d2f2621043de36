"""``convert_export_to_parquet``: one DynamoDB export → Parquet files with one agreed schema."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.fs as pafs

from . import python_engine
from .options import (
    QUARANTINE_DIR,
    ConversionOptions,
    ConversionResult,
    ExpectedDataFile,
    WrittenFile,
)
from .parquet_output import ParquetPartsWriter, join_path
from .quarantine import BadLines
from .schema_plan import plan_schema


def convert_export_to_parquet(
    input_files: Sequence[str],
    input_filesystem: pafs.FileSystem,
    output_dir: str,
    output_filesystem: pafs.FileSystem,
    *,
    table_name: str,
    existing_schema: pa.Schema | None = None,
    options: ConversionOptions = ConversionOptions(),
    expected_files: Mapping[str, ExpectedDataFile] | None = None,
) -> ConversionResult:
    """Convert the data files of one DynamoDB export into ``part-NNNNN.parquet`` files.

    Reads gzip or plain DynamoDB JSON lines (native export or Data Pipeline format), decides one
    schema from every value, and writes the files into ``output_dir``. The schema is
    ``existing_schema``'s columns in order and type, then new columns, then ``_rescued_data``
    (JSON of the values that did not fit their column). See TYPE_MAPPING.md for the rules.

    Files are written to ``<output_dir>/_staging-<id>/`` and moved into place only when the whole
    conversion succeeded: a failure leaves ``output_dir`` as it was. On success ``part-*.parquet``
    files of an earlier run beyond this run's count are deleted (re-running replaces).
    Bad lines raise :class:`ExportLineError` (table, file, line) or, with
    ``bad_lines="quarantine"``, are written to ``<output_dir>/_quarantine/bad-lines.jsonl``
    (JSON lines: table, file, line, reason, text) and counted.

    ``expected_files`` (input path → what the export's ``manifest-files.json`` says of it): each
    listed file's MD5 is computed from its bytes as they are read and its non-blank lines are
    counted; a difference raises :class:`DataFileMismatch` (table, file, expected and actual) and
    nothing is written. On both engines a line DuckDB or the reader cannot take, the last one
    included, is a bad line: never dropped.
    """
    input_files = list(input_files)
    input_bytes = sum(info.size or 0 for info in input_filesystem.get_file_info(input_files)) if input_files else 0
    bad_lines = BadLines(table_name, options.bad_lines, options.scratch_dir)
    staging = join_path(output_dir, f"_staging-{uuid.uuid4().hex[:12]}")
    writer: ParquetPartsWriter | None = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived objects: the collector would rescan them for nothing
    try:
        if options.engine == "python":
            stats, _ = python_engine.collect_stats(
                python_engine.iter_items(input_files, input_filesystem, options, bad_lines, expected_files)
            )
            plan = plan_schema(stats, existing_schema, options)
            writer = ParquetPartsWriter(output_filesystem, staging, plan.schema, options)
            rescued_counts: dict[str, int] = {}
            for batch, rescued_counts in python_engine.convert_items(  # noqa: B007 (the last counts are the totals)
                python_engine.iter_items(input_files, input_filesystem, options, bad_lines, expected_files), plan
            ):
                writer.write(batch)
            staged = writer.close()
        else:
            from . import duckdb_engine

            plan, staged, rescued_counts = duckdb_engine.convert(
                input_files,
                input_filesystem,
                staging,
                output_filesystem,
                table_name,
                existing_schema,
                options,
                bad_lines,
                expected_files or {},
            )
        files = _publish(output_filesystem, output_dir, staged)
        quarantine_files = bad_lines.publish(output_filesystem, output_dir)
        _remove_stale_quarantine(output_filesystem, output_dir, set(quarantine_files))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        _delete_dir(output_filesystem, staging)
        bad_lines.cleanup()
        if gc_was_enabled:
            gc.enable()
    return ConversionResult(
        schema=plan.schema,
        rows=sum(f.rows for f in files),
        files=files,
        rescued_counts={k: v for k, v in sorted(rescued_counts.items()) if v},
        renamed_columns=plan.renamed_columns,
        quarantined_lines=bad_lines.count,
        quarantine_files=quarantine_files,
        input_bytes=input_bytes,
    )


def _publish(filesystem: pafs.FileSystem, output_dir: str, staged) -> tuple[WrittenFile, ...]:
    """Move the staged files to ``part-NNNNN.parquet`` and delete older parts beyond them."""
    old = _list_files(filesystem, output_dir)
    published = []
    for i, f in enumerate(staged):
        target = join_path(output_dir, f"part-{i:05d}.parquet")
        filesystem.move(f.path, target)
        published.append(WrittenFile(target, f.rows, f.bytes))
    keep = {_normalized(f.path) for f in published}
    for info in old:
        name = info.path.rsplit("/", 1)[-1]
        if name.startswith("part-") and name.endswith(".parquet") and _normalized(info.path) not in keep:
            filesystem.delete_file(info.path)
    return tuple(published)


def _remove_stale_quarantine(filesystem: pafs.FileSystem, output_dir: str, keep: set[str]) -> None:
    keep = {_normalized(k) for k in keep}
    for info in _list_files(filesystem, join_path(output_dir, QUARANTINE_DIR)):
        if _normalized(info.path) not in keep:
            filesystem.delete_file(info.path)


def _list_files(filesystem: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(directory.rstrip("/"), allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []
    return [i for i in infos if i.type == pafs.FileType.File]


def _delete_dir(filesystem: pafs.FileSystem, directory: str) -> None:
    try:
        if filesystem.get_file_info(directory).type != pafs.FileType.NotFound:
            filesystem.delete_dir(directory)
    except (FileNotFoundError, OSError):
        pass


def _normalized(path: str) -> str:
    return path.lstrip("/")
