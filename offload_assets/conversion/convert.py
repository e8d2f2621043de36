"""``convert_export_to_parquet``: one DynamoDB export → Parquet files with one agreed schema."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.fs as pafs

from . import python_engine
from .options import (
    QUARANTINE_DIR,
    ConversionOptions,
    ConversionResult,
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
) -> ConversionResult:
    """Convert the data files of one DynamoDB export into ``part-NNNNN.parquet`` files.

    Reads gzip or plain DynamoDB JSON lines (native export or Data Pipeline format), decides one
    schema from every value (two passes over the input, memory bounded), and writes the files into
    ``output_dir``. The schema is ``existing_schema``'s columns in order and type, then new
    columns, then ``_rescued_data`` (JSON of the values that did not fit their column).

    Nothing is left in ``output_dir`` unless the conversion succeeds; on success, ``part-*.parquet``
    files of an earlier run that this run did not rewrite are deleted (re-running replaces).
    Bad lines raise :class:`ExportLineError` or, with ``bad_lines="quarantine"``, are written to
    ``<output_dir>/_quarantine/bad-lines.jsonl`` and counted.
    """
    input_files = list(input_files)
    input_bytes = sum(
        info.size or 0 for info in input_filesystem.get_file_info(input_files)
    ) if input_files else 0
    bad_lines = BadLines(table_name, options.bad_lines, options.scratch_dir)
    writer: ParquetPartsWriter | None = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived objects: the collector would rescan them for nothing
    try:
        if options.engine == "python":
            stats, _ = python_engine.collect_stats(
                python_engine.iter_items(input_files, input_filesystem, options, bad_lines)
            )
            plan = plan_schema(stats, existing_schema, options)
            writer = ParquetPartsWriter(output_filesystem, output_dir, plan.schema, options)
            rescued_counts: dict[str, int] = {}
            for batch, rescued_counts in python_engine.convert_items(
                python_engine.iter_items(input_files, input_filesystem, options, bad_lines), plan
            ):
                writer.write(batch)
        else:
            from . import duckdb_engine

            plan, written, rescued_counts = duckdb_engine.convert(
                input_files, input_filesystem, output_dir, output_filesystem, table_name,
                existing_schema, options, bad_lines,
            )
        files = tuple(writer.close()) if options.engine == "python" else tuple(written)
        quarantine_files = bad_lines.publish(output_filesystem, output_dir)
        _remove_stale(output_filesystem, output_dir, {f.path for f in files} | set(quarantine_files))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
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


def _remove_stale(filesystem: pafs.FileSystem, output_dir: str, keep: set[str]) -> None:
    for directory, pattern in ((output_dir, "part-"), (join_path(output_dir, QUARANTINE_DIR), "")):
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(directory.rstrip("/"), allow_not_found=True))
        except (FileNotFoundError, OSError):
            continue
        for info in infos:
            name = info.path.rsplit("/", 1)[-1]
            if info.type == pafs.FileType.File and name.startswith(pattern) and (
                name.endswith(".parquet") or name.endswith(".jsonl")
            ) and info.path not in keep and _normalized(info.path) not in {_normalized(k) for k in keep}:
                filesystem.delete_file(info.path)


def _normalized(path: str) -> str:
    return path.lstrip("/")
