"""The export -> Parquet conversion as a two-pass Spark job that reuses the in-process converter core.

One Spark task per export data file (gzip is not splittable, and a DynamoDB export is already
cut into many files). Pass 1: every task reads its file with the local path's vectorised DuckDB
engine (:func:`duckdb_engine.file_statistics`) and returns its :class:`ValueStats` tree; the driver
merges them and decides the schema with :func:`plan_schema`, exactly as the in-process converter
does. Pass 2: every task converts its file with the same engine against that plan
(:func:`duckdb_engine.convert_with_plan`) and writes its own Parquet file
with pyarrow, so the files carry the planned Arrow schema byte for byte (Spark's own writer would
rename list elements, drop field metadata and re-type columns). Only small facts (pickled stats,
file paths and counts) travel through Spark, as Arrow batches of ``mapInArrow``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from offload_assets.conversion import ConversionOptions, ExpectedDataFile, WrittenFile, duckdb_engine
from offload_assets.conversion.parquet_output import open_parquet_writer
from offload_assets.conversion.schema_plan import SchemaPlan, plan_schema
from offload_assets.conversion.value_stats import ValueStats

STATS_SCHEMA = "file_index long, stats binary, rows long"
FILES_SCHEMA = "file_index long, path string, rows long, bytes long, rescued string"


@dataclass(frozen=True)
class FilesystemSpec:
    """How a task opens the export and output paths: ``local`` paths or ``s3`` (``bucket/key``)."""

    kind: str = "local"
    region: str | None = None
    endpoint_url: str | None = None

    def open(self) -> pafs.FileSystem:
        if self.kind == "local":
            return pafs.LocalFileSystem()
        if self.kind != "s3":
            raise ValueError(f"unknown filesystem kind {self.kind!r} (expected 'local' or 's3')")
        kwargs: dict[str, Any] = {"request_timeout": 300, "connect_timeout": 10}
        if self.region:
            kwargs["region"] = self.region
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
        return pafs.S3FileSystem(**kwargs)  # credentials: the standard AWS chain (Glue: the job's role)


@dataclass(frozen=True)
class SparkConversionResult:
    """What the Spark conversion wrote (the fields of the in-process ``ConversionResult`` it needs)."""

    schema: pa.Schema
    rows: int
    files: tuple[WrittenFile, ...]
    rescued_counts: dict[str, int] = field(default_factory=dict)
    renamed_columns: dict[str, str] = field(default_factory=dict)
    input_bytes: int = 0

    @property
    def output_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


def file_stats(
    path: str,
    filesystem: pafs.FileSystem,
    table_name: str,
    options: ConversionOptions,
    expected: ExpectedDataFile | None = None,
) -> tuple[ValueStats, int]:
    """Pass 1 for one data file: the statistics tree and item count, gathered by the same
    vectorised DuckDB engine the local path uses (bad lines raise, naming file and line; with
    ``expected``, its MD5 and item count are checked)."""
    return duckdb_engine.file_statistics(path, filesystem, table_name, options, expected)


class _OneFileWriter:
    """Batches of one task into one Parquet file of ``plan.schema``, in row groups of the
    options' size (created at the first row: a file without items gets none)."""

    def __init__(self, out_path: str, out_filesystem: pafs.FileSystem, schema: pa.Schema, options: ConversionOptions):
        self.out_path = out_path
        self.fs = out_filesystem
        self.schema = schema
        self.options = options
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._sink = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = self._pending_bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if self._pending_rows >= self.options.row_group_rows or self._pending_bytes >= self.options.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        if self._writer is None:
            self.fs.create_dir(self.out_path.rsplit("/", 1)[0], recursive=True)
            self._sink = self.fs.open_output_stream(self.out_path)
            self._writer = open_parquet_writer(self._sink, self.schema, self.options, table)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def close(self) -> WrittenFile | None:
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        size = self._sink.tell()
        self._sink.close()
        return WrittenFile(self.out_path, self.rows, size)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
                self._sink.close()
                self.fs.delete_file(self.out_path)
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass


def convert_file(
    path: str,
    filesystem: pafs.FileSystem,
    out_path: str,
    out_filesystem: pafs.FileSystem,
    plan: SchemaPlan,
    table_name: str,
    options: ConversionOptions,
    stats: ValueStats | None = None,
) -> tuple[WrittenFile | None, dict[str, int]]:
    """Pass 2 for one data file: one Parquet file of ``plan.schema`` (none if the file has no
    items), converted by the local path's DuckDB engine with the plan decided from ``stats``
    (pass 1's merged statistics; without them, this file's own)."""
    if stats is None:
        stats, _ = file_stats(path, filesystem, table_name, options)
    writer = _OneFileWriter(out_path, out_filesystem, plan.schema, options)
    try:
        rescued_counts = duckdb_engine.convert_with_plan(path, filesystem, table_name, options, plan, stats, writer)
        return writer.close(), dict(rescued_counts)
    except BaseException:
        writer.abort()
        raise


def write_empty_file(
    out_path: str, out_filesystem: pafs.FileSystem, schema: pa.Schema, options: ConversionOptions
) -> WrittenFile:
    """An export without items still gets one (empty) file, so the partition has a schema."""
    out_filesystem.create_dir(out_path.rsplit("/", 1)[0], recursive=True)
    with out_filesystem.open_output_stream(out_path) as sink:
        open_parquet_writer(sink, schema, options, schema.empty_table()).close()
        size = sink.tell()
    return WrittenFile(out_path, 0, size)


def part_path(output_dir: str, file_index: int) -> str:
    return f"{output_dir.rstrip('/')}/part-{file_index:05d}.parquet"


def merge_stats(parts: list[tuple[ValueStats, int]]) -> tuple[ValueStats, int]:
    root, rows = ValueStats(), 0
    for stats, count in parts:
        root.merge(stats)
        rows += count
    return root, rows


def convert_export_on_spark(
    spark: Any,
    input_files: list[str],
    filesystem: FilesystemSpec,
    output_dir: str,
    *,
    table_name: str,
    existing_schema: pa.Schema | None = None,
    options: ConversionOptions = ConversionOptions(),
    log: Any = None,
    expected_files: dict[str, ExpectedDataFile] | None = None,
) -> SparkConversionResult:
    """Convert one export's data files with Spark; same schema, rows and rescued values as in process.

    ``input_files`` and ``output_dir`` are paths on ``filesystem`` (``bucket/key`` for S3).
    A failed conversion removes the files it wrote; nothing else is touched in ``output_dir``.
    ``expected_files`` (path → manifest facts): pass 1 checks each file's MD5 and item count as
    it reads it, so a changed file fails before anything is written.
    """
    if options.bad_lines != "fail":
        raise ValueError(f"table {table_name!r}: the Spark engine supports bad_lines='fail' only")
    files = list(input_files)
    say = log or (lambda _msg: None)
    fs = filesystem.open()
    input_bytes = sum(info.size or 0 for info in fs.get_file_info(files)) if files else 0
    rdd = spark.sparkContext.parallelize(list(enumerate(files)), max(1, len(files)))  # one task per file
    paths = spark.createDataFrame(rdd, "file_index long, path string")

    def stats_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        task_fs = filesystem.open()
        for batch in batches:
            for index, path in zip(batch.column("file_index").to_pylist(), batch.column("path").to_pylist()):
                stats, rows = file_stats(path, task_fs, table_name, options, (expected_files or {}).get(path))
                yield pa.RecordBatch.from_pydict(
                    {"file_index": [index], "stats": [pickle.dumps(stats)], "rows": [rows]},
                    schema=pa.schema([("file_index", pa.int64()), ("stats", pa.binary()), ("rows", pa.int64())]),
                )

    say(f"pass 1/2: statistics of {len(files)} file(s), {input_bytes} bytes")
    collected = paths.mapInArrow(stats_task, STATS_SCHEMA).collect()
    stats, items = merge_stats([(pickle.loads(r["stats"]), r["rows"]) for r in collected])
    plan = plan_schema(stats, existing_schema, options)
    say(f"pass 1/2 done: {items} items, {len(plan.schema)} columns")

    def convert_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        task_fs = filesystem.open()
        for batch in batches:
            for index, path in zip(batch.column("file_index").to_pylist(), batch.column("path").to_pylist()):
                written, rescued = convert_file(
                    path, task_fs, part_path(output_dir, index), task_fs, plan, table_name, options, stats
                )
                yield pa.RecordBatch.from_pydict(
                    {
                        "file_index": [index],
                        "path": [written.path if written else None],
                        "rows": [written.rows if written else 0],
                        "bytes": [written.bytes if written else 0],
                        "rescued": [json.dumps(rescued)],
                    },
                    schema=pa.schema(
                        [
                            ("file_index", pa.int64()),
                            ("path", pa.string()),
                            ("rows", pa.int64()),
                            ("bytes", pa.int64()),
                            ("rescued", pa.string()),
                        ]
                    ),
                )

    try:
        rows_out = sorted(paths.mapInArrow(convert_task, FILES_SCHEMA).collect(), key=lambda r: r["file_index"])
    except BaseException:
        _remove_parts(fs, output_dir, len(files))
        raise
    written = [WrittenFile(r["path"], r["rows"], r["bytes"]) for r in rows_out if r["path"]]
    if not written:
        written = [write_empty_file(part_path(output_dir, 0), fs, plan.schema, options)]
    rescued_counts: dict[str, int] = {}
    for r in rows_out:
        for column, count in json.loads(r["rescued"]).items():
            rescued_counts[column] = rescued_counts.get(column, 0) + count
    total = sum(f.rows for f in written)
    if total != items:
        raise RuntimeError(f"table {table_name!r}: pass 1 counted {items} items but pass 2 wrote {total} rows")
    say(f"pass 2/2 done: {total} rows in {len(written)} file(s)")
    return SparkConversionResult(
        schema=plan.schema,
        rows=total,
        files=tuple(written),
        rescued_counts={k: v for k, v in sorted(rescued_counts.items()) if v},
        renamed_columns=plan.renamed_columns,
        input_bytes=input_bytes,
    )


def _remove_parts(fs: pafs.FileSystem, output_dir: str, count: int) -> None:
    for index in range(count):
        try:
            fs.delete_file(part_path(output_dir, index))
        except (FileNotFoundError, OSError):
            pass


def local_spark_session(app_name: str = "offload-assets", cores: int = 2) -> Any:
    """A loopback-only local Spark session (no UI, few shuffle partitions) for tests and small runs."""
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, also for the block manager
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(cores))
        .config("spark.default.parallelism", str(cores))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
