"""The vectorised converter: DuckDB parses, Arrow compute converts, Python only orchestrates.

Flow (each step a function or method below):

1. **Sample** (:func:`_sample_plan`): up to ``SAMPLE_TOTAL`` lines over all files (at most
   ``SAMPLE_LINES`` per file) are read per item to guess the *read structure* (every attribute,
   map key and DynamoDB type seen) and the schema plan.
2. **Round 1** (:func:`_first_round`, :meth:`_Engine.run_round`), per window of files
   (:func:`_windows`), one file per worker thread, each on a one-thread DuckDB cursor, the
   converted batches written in file order by a writer thread (:class:`_WriterThread`):

   a. the **typed read** first (:meth:`_Engine._typed_scan`, :mod:`.typed_read`): each file is
      decompressed once into a plain file whose line positions are scanned, and DuckDB types each
      line with the declared structure (``read_ndjson(records=true, columns=...)``), no line
      text; a row is kept when its proof holds (its typed size is its line's length, every
      payload of its JSON type, every value valid), the others (names equal but for case,
      attributes the sample missed, ...) take the per-item path from their line's text. A file
      whose lines are not one object each, or with many unproven rows, goes to the exact path,
      and so do the export's files after it.
   b. the **exact path** for the files left (:meth:`_WindowScan.run_per_file`): DuckDB reads
      every line (``read_ndjson_objects``) and types it with ``json_transform`` (:mod:`.duckdb_sql`),
      keeping its text; each batch's coverage (:mod:`.arrow_coverage`) and validity are checked
      per row, the full statistics gathered and the batch converted (:mod:`.arrow_convert`). Rows
      DuckDB could not type completely (attributes the sample missed, names equal but for case,
      numbers not in DynamoDB's canonical form) take the per-item path (:func:`_per_item_rows`,
      :mod:`.python_engine`), which adds them to the statistics; in round 1 they are kept aside
      until the plan is final. Then :meth:`~_Engine._check_window` proves the window was read
      whole (:mod:`.duckdb_input`: checksums, every line returned, item counts).
3. End of :func:`_first_round`: the plan decided from the full statistics is compared with the sampled
   one: equal, round 1 stands; only new columns (attributes the sample missed), the written files
   are rewritten with the new (null) columns; anything else, the files are dropped and **round 2**
   converts again with the exact plan (:func:`_exact_round`). So the result never depends on the
   sample, only the time.

The Spark job's tasks use the same steps per file: :func:`file_statistics` (pass 1) and
:func:`convert_with_plan` (pass 2, with the plan decided from every file's statistics).

Bad lines: a file DuckDB refused (or did not read whole) is scanned per line to find them
(:meth:`_Engine.locate_bad_lines`); ``fail`` raises :class:`ExportLineError` with table, file and
line, ``quarantine`` sets them aside and the round restarts on cleaned copies.
Output is reproducible: DuckDB keeps insertion order, files are written in their order and each
file's batches in the order read, so the same export gives the same rows in the same order and
the same bytes.
Memory stays bounded: DuckDB streams small Arrow batches (its own memory is capped), a typed
file's converted batches wait for its proof in memory up to ``HOLD_BYTES`` and in an Arrow IPC
file in the scratch directory beyond (:class:`_HeldBatches`), at most two exact-path files'
batches wait for their turn (a file larger than ``PER_FILE_BYTES`` compressed is scanned as one
stream instead), the writer holds at most one row group, and freed memory is handed back to the
OS after each batch.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import shutil
import tempfile
import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from . import duckdb_input, python_engine
from .arrow_convert import BatchConverter
from .arrow_coverage import covered_rows
from .arrow_values import clear_caches
from .duckdb_input import InputFile, InputFiles, describe, sample, tally_batch
from .duckdb_sql import ReadNode, build_query, read_root
from .export_lines import NotAnItem, item_from_line, iter_parsed_lines, parse_line
from .options import ConversionOptions, WrittenFile
from .parquet_output import ParquetPartsWriter
from .quarantine import BadLines
from .schema_plan import SchemaPlan, plan_schema
from .typed_read import DECOMPRESS_ERRORS, TYPED_FILE_BYTES, Lines, plain_lines, typed_query, typed_values
from .value_stats import ValueStats, add_item

SAMPLE_LINES = duckdb_input.SAMPLE_LINES
BATCH_ROWS = 16 * 1024  # small batches keep peak memory flat (measured: 64k rows +25%)
#: The typed read's batches: its Arrow-side unquoting and checks are many small calls per column
#: (measured on 250k rows: 0.79 CPU-s at 16k rows a batch, 0.46 at 64k).
TYPED_BATCH_ROWS = 64 * 1024
WINDOW_BYTES = 512 * 1024 * 1024
CONVERT_WORKERS = 2
WRITE_QUEUE = 4  # converted batches waiting for the writer thread
#: A typed file's converted batches beyond this many Arrow bytes wait for its proof on disk, so
#: peak memory does not grow with the files' size (measured at 3M items, 8 files: 0.99 GiB peak
#: RSS with every batch in memory).
HOLD_BYTES = 64 * 1024 * 1024
#: Exact-path files scanned one per worker (their batches wait in memory for their turn) when no
#: larger than this compressed; a window with a larger one is scanned as one stream.
PER_FILE_BYTES = 128 * 1024 * 1024
#: What DuckDB could not read: located per line (a failure elsewhere is reported with its message).
_READ_ERRORS = (duckdb.Error, OSError, pa.ArrowException)
_ERROR_FILE = re.compile(r'in file "([^"]+)"')


@dataclass
class _BatchResult:
    """What converting one batch produced."""

    batches: list = field(default_factory=list)
    stats: ValueStats | None = None
    rescued: Counter = field(default_factory=Counter)
    per_item: list = field(default_factory=list)
    bad_files: set = field(default_factory=set)
    tally: dict = field(default_factory=dict)


class _BadFiles(Exception):
    def __init__(self, files: list[InputFile], reason: str = ""):
        self.files = files
        self.reason = reason


def convert(
    input_files,
    input_filesystem: pafs.FileSystem,
    output_dir: str,
    output_filesystem: pafs.FileSystem,
    table_name: str,
    existing_schema: pa.Schema | None,
    options: ConversionOptions,
    bad_lines: BadLines,
    expected_files=None,
):
    """Run the conversion; returns ``(plan, written files, rescued counts)``."""
    with _prepared(input_files, input_filesystem, table_name, options, bad_lines, expected_files) as engine:
        plan, root = _sample_plan(input_filesystem, engine.files, table_name, existing_schema, options)
        output = _Output(output_filesystem, output_dir, options)
        while True:
            try:
                return _first_round(engine, output, plan, root, existing_schema)
            except _BadFiles as bad:
                engine.locate_bad_lines(bad.files, bad.reason)  # raises, or quarantines and cleans
            except _PlanChanged as changed:
                return _exact_round(engine, output, changed.plan, changed.stats)


def file_statistics(
    path: str, filesystem: pafs.FileSystem, table_name: str, options: ConversionOptions, expected=None
) -> tuple[ValueStats, int]:
    """The statistics of every value of one export file and its item count, gathered by the
    vectorised path (what the Spark job's first pass needs per file). Bad lines raise."""
    bad_lines = BadLines(table_name, "fail")
    try:
        with _prepared(
            [path], filesystem, table_name, options, bad_lines, {path: expected} if expected else {}
        ) as engine:
            plan, root = _sample_plan(filesystem, engine.files, table_name, None, options)
            while True:
                try:
                    stats, _, rows = engine.run_round(plan, root, _Discard(), with_stats=True)
                    return stats, rows
                except _BadFiles as bad:
                    engine.locate_bad_lines(bad.files, bad.reason)  # raises ExportLineError
    finally:
        bad_lines.cleanup()


def convert_with_plan(
    path: str,
    filesystem: pafs.FileSystem,
    table_name: str,
    options: ConversionOptions,
    plan: SchemaPlan,
    stats: ValueStats,
    writer,
) -> dict[str, int]:
    """Convert one export file with a plan decided elsewhere (from ``stats``, the statistics of
    every file: the Spark job's second pass), writing batches of ``plan.schema`` into ``writer``
    (anything with ``write(batch)``). Returns the rescued counts. Bad lines raise."""
    bad_lines = BadLines(table_name, "fail")
    try:
        with _prepared([path], filesystem, table_name, options, bad_lines, {}) as engine:
            _sample_plan(filesystem, engine.files, table_name, None, options)  # settles each file's line format
            root = read_root(stats.fields)
            while True:
                try:
                    return engine.run_round(plan, root, writer, with_stats=False)[1]
                except _BadFiles as bad:
                    engine.locate_bad_lines(bad.files, bad.reason)  # raises ExportLineError
    finally:
        bad_lines.cleanup()


@contextmanager
def _prepared(input_files, filesystem: pafs.FileSystem, table_name: str, options, bad_lines: BadLines, expected_files):
    """An :class:`_Engine` over the described input files, with its scratch directory."""
    scratch = tempfile.mkdtemp(prefix="offload-convert-", dir=options.scratch_dir)
    expected_files = expected_files or {}
    files = [describe(filesystem, p, i, options.input_format, expected_files.get(p)) for i, p in enumerate(input_files)]
    inputs = InputFiles(filesystem, files, scratch, table_name)
    try:
        yield _Engine(inputs, table_name, options, bad_lines)
    finally:
        inputs.close()
        shutil.rmtree(scratch, ignore_errors=True)


class _Discard:
    """A writer that keeps nothing (a pass that wants only the statistics)."""

    def write(self, batch: pa.RecordBatch) -> None:
        pass


@dataclass(frozen=True)
class _Output:
    fs: pafs.FileSystem
    dir: str
    options: ConversionOptions

    def writer(self, plan: SchemaPlan) -> ParquetPartsWriter:
        return ParquetPartsWriter(self.fs, self.dir, plan.schema, self.options)


class _PlanChanged(Exception):
    def __init__(self, plan: SchemaPlan, stats: ValueStats):
        self.plan = plan
        self.stats = stats


def _sample_plan(filesystem, files: list[InputFile], table: str, existing_schema, options):
    """The plan and read structure guessed from the first lines of every file."""
    stats = ValueStats()
    # SAMPLE_LINES is this module's: the tests make it tiny
    limit = min(SAMPLE_LINES, max(duckdb_input.SAMPLE_LINES_MIN, duckdb_input.SAMPLE_TOTAL // max(1, len(files))))
    for f in files:
        sample(filesystem, f, stats, table, limit)
    return plan_schema(stats, existing_schema, options), read_root(stats.fields)


def _first_round(engine: _Engine, output: _Output, plan: SchemaPlan, root: ReadNode, existing_schema):
    """Convert with the sampled plan, gathering the full statistics; keep the result when the
    full plan agrees (or only adds columns), else raise :class:`_PlanChanged`."""
    writer = output.writer(plan)
    engine.per_item = _PerItemRows(engine.inputs.scratch)
    try:
        stats, counts, rows = engine.run_round(plan, root, writer, with_stats=True)
        full_plan = plan_schema(stats, existing_schema, output.options)
        if full_plan == plan:
            counts = _summed(counts, engine.per_item.convert_into(writer, plan))
            return plan, writer.close(), counts
        if _extends(plan, full_plan) and engine.per_item.count <= max(10_000, rows // 20):
            # only attributes the sample missed: add their (null) columns to what is written and
            # convert the rows that hold them
            written = writer.close()
            writer = None
            files_out, more = _rewrite_with_plan(
                output.fs, output.dir, written, full_plan, output.options, engine.per_item
            )
            return full_plan, files_out, _summed(counts, more)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        engine.per_item.close()
    writer.abort()
    raise _PlanChanged(full_plan, stats)


def _exact_round(engine: _Engine, output: _Output, plan: SchemaPlan, stats: ValueStats):
    """Convert again with the plan decided from every value."""
    root = read_root(stats.fields)
    writer = output.writer(plan)
    engine.per_item = None
    try:
        _, counts, _ = engine.run_round(plan, root, writer, with_stats=False)
        return plan, writer.close(), counts
    except BaseException:
        writer.abort()
        raise


def _summed(a: dict, b: dict) -> dict:
    out = Counter(a)
    out.update(b)
    return dict(out)


def _extends(plan: SchemaPlan, full: SchemaPlan) -> bool:
    """Whether ``full`` only adds columns to ``plan`` (every column of ``plan`` unchanged)."""
    by_name = {c.name: c for c in full.columns}
    return all(by_name.get(c.name) == c for c in plan.columns)


class _PerItemRows:
    """Rows of round 1 that take the per-item path, kept aside (as native JSON lines on local
    disk) until the plan is final."""

    def __init__(self, scratch: str) -> None:
        self.path = os.path.join(scratch, f"per-item-{id(self)}.jsonl")
        self._file = open(self.path, "wb")
        self.count = 0

    def add(self, item: dict) -> None:
        self._file.write(orjson.dumps(item) + b"\n")
        self.count += 1

    def items(self):
        self._file.flush()
        with open(self.path, "rb") as f:
            for line in f:
                yield orjson.loads(line)

    def convert_into(self, writer: ParquetPartsWriter, plan: SchemaPlan) -> dict:
        counts: dict = {}
        if self.count:
            for batch, counts in python_engine.convert_items(self.items(), plan):  # noqa: B007 (last = totals)
                writer.write(batch)
        return dict(counts)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _rewrite_with_plan(fs, output_dir, written, plan: SchemaPlan, options, per_item: _PerItemRows):
    """Rewrite ``written`` files with ``plan``'s schema (new columns null), add the per-item rows,
    and move the result to ``part-NNNNN.parquet``. Returns the files and rescued counts."""
    import uuid

    import pyarrow.parquet as pq

    from .parquet_output import join_path

    staging = join_path(output_dir, f"_rewrite-{uuid.uuid4().hex[:12]}")
    writer = ParquetPartsWriter(fs, staging, plan.schema, options)
    try:
        for f in written:
            with fs.open_input_file(f.path) as source:
                parquet = pq.ParquetFile(source)
                for i in range(parquet.num_row_groups):
                    table = parquet.read_row_group(i)
                    arrays = [
                        table.column(field.name)
                        if field.name in table.column_names
                        else pa.nulls(table.num_rows, field.type)
                        for field in plan.schema
                    ]
                    for batch in pa.Table.from_arrays(arrays, schema=plan.schema).to_batches():
                        writer.write(batch)
        counts = per_item.convert_into(writer, plan)
        new_files = writer.close()
    except BaseException:
        writer.abort()
        raise
    for f in written:
        fs.delete_file(f.path)
    moved = []
    for i, f in enumerate(new_files):
        target = join_path(output_dir, f"part-{i:05d}.parquet")
        fs.move(f.path, target)
        moved.append(WrittenFile(target, f.rows, f.bytes))
    try:
        fs.delete_dir(staging)
    except OSError:
        pass
    return moved, counts


class _Engine:
    """One conversion round at a time over the export's files (see the module docstring): the
    files are read in windows; each window is scanned (:class:`_WindowScan`), then checked."""

    def __init__(self, inputs: InputFiles, table: str, options: ConversionOptions, bad_lines: BadLines) -> None:
        self.inputs = inputs
        self.files = inputs.files
        self.table = table
        self.options = options
        self.bad_lines = bad_lines
        self.per_item: _PerItemRows | None = None
        self.typed = True  # the typed read is tried (until a file fails its proof)

    def run_round(self, plan: SchemaPlan, root: ReadNode, writer, *, with_stats: bool):
        """Convert every file with ``plan`` into ``writer`` (anything with ``write(batch)``);
        returns the statistics, rescued counts and rows DuckDB returned."""
        background = _WriterThread(writer)
        scan = _WindowScan(BatchConverter(plan, root, with_stats), plan, background, self.per_item)
        bad_files: list[InputFile] = []
        reasons: list[str] = []
        try:
            for window in _windows(self.files, self.options):
                self.inputs.prepare(window)
                try:
                    todo = self._typed_scan(scan, root, window) if self._typed_ok(root, window) else window
                    if not todo:
                        continue
                    if len(todo) > 1 and all(f.size <= PER_FILE_BYTES for f in todo):
                        # one file per worker (see _WindowScan.run_per_file); a file's batches
                        # wait in memory for its turn, so not for large files
                        bad, refused = scan.run_per_file(todo, self._file_cursor)
                        if refused:
                            self.inputs.check_checksums(todo)  # a changed file says so before DuckDB's error
                        bad_files += bad + [f for f, _ in refused]  # located per line
                        reasons += [str(exc) for _, exc in refused]
                        bad_files += self._check_window(todo, bad_files)
                        continue
                    try:
                        bad_files += scan.run(todo, self._connect())
                    except _READ_ERRORS as exc:
                        self.inputs.check_checksums(todo)  # a changed file says so before DuckDB's error
                        bad_files += _named_first(todo, str(exc))  # located per line
                        reasons.append(str(exc))
                        continue
                    bad_files += self._check_window(todo, bad_files)
                finally:
                    self.inputs.release(window)
        finally:
            background.join()
        background.check()
        if bad_files:
            raise _BadFiles([f for f in self.files if any(f is b for b in bad_files)], "; ".join(reasons))
        return scan.stats, dict(scan.counts), scan.rows

    def _typed_ok(self, root: ReadNode, window: list[InputFile]) -> bool:
        """Whether the window's files take the typed read first (:mod:`.typed_read`): not once a
        file was sent to the exact path, only local native files."""
        return (
            self.typed
            and bool(root.fields)
            and all(f.local is not None and f.format == "native" and f.size <= TYPED_FILE_BYTES for f in window)
        )

    def _typed_scan(self, scan: _WindowScan, root: ReadNode, window: list[InputFile]) -> list[InputFile]:
        """Convert the window's files with the typed read, ``CONVERT_WORKERS`` files at a time,
        each kept once proven, in order; returns the files left for the exact path (from the
        first that failed on)."""
        stop = threading.Event()
        with ThreadPoolExecutor(CONVERT_WORKERS, thread_name_prefix="offload-typed") as pool:
            try:
                results = _in_order(pool, lambda f: self._typed_file(scan, f, root, stop), window)
                for i, (f, typed) in enumerate(results):
                    if typed is None:
                        self.typed = False  # the export's other files are likely alike
                        return window[i:]
                    done, held = typed
                    scan.commit_typed(f, done, held)
                    del typed, done, held
                    self.inputs.check_checksums([f])
                    self.inputs.check_item_counts([f])
            finally:
                stop.set()
        return []

    def _typed_file(self, scan: _WindowScan, f: InputFile, root: ReadNode, stop: threading.Event):
        if stop.is_set():
            return None
        plain = os.path.join(self.inputs.scratch, f"typed-{f.index:05d}.json")
        held = _HeldBatches(self.inputs.scratch, f"typed-{f.index:05d}-")
        done = None
        try:
            done = scan.typed_file(f, self._file_cursor(), root, stop, plain, held)
            return None if done is None else (done, held)
        except _READ_ERRORS + DECOMPRESS_ERRORS:
            return None
        finally:
            if done is None:
                held.discard()
            if os.path.exists(plain):
                os.unlink(plain)

    def _file_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one file on one worker thread (measured: two files on two one-thread
        cursors beat one query over both files on two threads)."""
        return _database(1, self.options.memory_limit).cursor()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return _database(self.options.threads or os.cpu_count() or 1, self.options.memory_limit).cursor()

    def _check_window(self, window: list[InputFile], bad_files: list[InputFile]) -> list[InputFile]:
        """Checksums first, then every line returned, then the manifest's item counts."""
        self.inputs.check_checksums(window)
        incomplete = self.inputs.incomplete([f for f in window if not any(f is b for b in bad_files)])
        if not incomplete and not bad_files:
            self.inputs.check_item_counts(window)
        return incomplete

    def locate_bad_lines(self, files: list[InputFile], reason: str = "") -> None:
        """Find the bad lines per line: raise for ``fail``, else quarantine them and let the next
        round read a cleaned copy. A file without a bad line stays as it is; when no file has one,
        DuckDB's error is raised with the table and files."""
        found_any = False
        for f in files:
            clean_path = os.path.join(self.inputs.scratch, f"clean-{f.index:05d}.json")
            found = 0
            with open(clean_path, "wb") as clean:
                for line in iter_parsed_lines(self.inputs.fs, f.path, table=self.table, input_format=f.format):
                    if line.problem is not None:
                        found += 1
                        self.bad_lines.add(f.path, line.line_no, line.problem, line.text)
                    else:
                        clean.write(orjson.dumps({"Item": line.item}) + b"\n")
            if not found:
                os.unlink(clean_path)
                continue
            found_any = True
            self.inputs.release([f])
            f.local, f.temporary, f.gzip, f.format = clean_path, True, False, "native"
            f.content_bytes, f.quarantined = None, f.quarantined + found
        if not found_any:
            names = ", ".join(f.path for f in files)
            raise RuntimeError(
                f"table {self.table!r}: DuckDB could not read {names}, yet every line is an item"
                + (f": {reason}" if reason else "")
            )


def _windows(files: list[InputFile], options: ConversionOptions) -> list[list[InputFile]]:
    """Groups of files read by one query: all of them when they are local native files (DuckDB
    spreads files over its threads), else about ``WINDOW_BYTES`` of copies at a time."""
    if all(f.local is not None and f.format == "native" for f in files):
        return [files]
    threads = options.threads or os.cpu_count() or 1
    windows, current, size = [], [], 0
    for f in files:
        if current and (size + f.size > WINDOW_BYTES and len(current) >= threads):
            windows.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        windows.append(current)
    return windows


class _WriterThread:
    """Writes batches into ``writer`` on a thread of its own, in the order given: Parquet encoding
    and compression release the GIL, so the thread handing batches to the converters never waits
    for a row group to be written (measured: it did, idling a core for most of the write time).
    At most ``WRITE_QUEUE`` batches wait."""

    def __init__(self, writer) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="offload-parquet-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(batch)
                except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread
                    self._error = exc

    def write(self, batch: pa.RecordBatch) -> None:
        self.check()
        self._queue.put(batch)

    def check(self) -> None:
        """Raise what writing raised."""
        if self._error is not None:
            raise self._error

    def join(self) -> None:
        """Wait until every batch given is written (or writing failed)."""
        self._queue.put(None)
        self._thread.join()


class _WindowScan:
    """DuckDB parses on its threads; ``CONVERT_WORKERS`` threads convert batches (Arrow compute
    releases the GIL); the calling thread writes Parquet, in the order DuckDB read. Gathers the
    round's statistics, rescued counts and rows across windows."""

    def __init__(self, converter: BatchConverter, plan: SchemaPlan, writer, per_item: _PerItemRows | None) -> None:
        self.converter = converter
        self.plan = plan
        self.writer = writer
        self.per_item = per_item
        self.stats = ValueStats()
        self.counts: Counter = Counter()
        self.rows = 0
        self.unproven = 0  # rows of typed files converted per item

    def run(self, window: list[InputFile], con: duckdb.DuckDBPyConnection) -> list[InputFile]:
        """Scan one window; returns the files with lines the per-item path could not read."""
        by_local = {f.local: f for f in window}
        groups: dict[bool, list[str]] = {}
        for f in window:
            groups.setdefault(f.gzip, []).append(f.local)
        bad: list[InputFile] = []
        pending: deque = deque()
        keep_aside = self.per_item is not None
        try:
            with ThreadPoolExecutor(CONVERT_WORKERS) as pool:
                for gz, paths in groups.items():
                    source = f"read_ndjson_objects({paths!r}, filename=true, compression='{'gzip' if gz else 'none'}')"
                    for batch in _stream(con, build_query(source, self.converter.root, paths)):
                        self.rows += batch.num_rows
                        pending.append(pool.submit(_convert_on_worker, batch, self.converter, self.plan, keep_aside))
                        del batch
                        while len(pending) > CONVERT_WORKERS:
                            bad += self._take(pending.popleft().result(), by_local)
                            _release_memory()
                while pending:
                    bad += self._take(pending.popleft().result(), by_local)
        finally:
            for future in pending:
                future.cancel()
            con.close()
        return bad

    def run_per_file(
        self, window: list[InputFile], cursor
    ) -> tuple[list[InputFile], list[tuple[InputFile, Exception]]]:
        """Scan the window one file per worker thread (``cursor()`` gives each its DuckDB
        cursor), converting on that thread, writing in file order. Returns the files with lines
        the per-item path could not read, and the files DuckDB refused with its error."""
        by_local = {f.local: f for f in window}
        keep_aside = self.per_item is not None
        bad: list[InputFile] = []
        refused: list[tuple[InputFile, Exception]] = []
        with ThreadPoolExecutor(CONVERT_WORKERS, thread_name_prefix="offload-file") as pool:
            for f, (outcome, rows) in _in_order(pool, lambda f: self._exact_file(f, cursor(), keep_aside), window):
                if isinstance(outcome, Exception):
                    refused.append((f, outcome))
                    continue
                self.rows += rows
                for out in outcome:
                    bad += self._take(out, by_local)
                del outcome
        return bad, refused

    def _exact_file(self, f: InputFile, con: duckdb.DuckDBPyConnection, keep_aside: bool):
        """``(converted batches, rows)`` of one file by the exact path, or ``(DuckDB's error, 0)``."""
        source = f"read_ndjson_objects({[f.local]!r}, filename=true, compression='{'gzip' if f.gzip else 'none'}')"
        results, rows = [], 0
        try:
            for batch in con.sql(build_query(source, self.converter.root, [f.local])).to_arrow_reader(BATCH_ROWS):
                rows += batch.num_rows
                results.append(_convert_on_worker(batch, self.converter, self.plan, keep_aside))
                del batch
                _release_memory()
        except _READ_ERRORS as exc:
            return exc, 0
        finally:
            con.close()
        return results, rows

    def typed_file(
        self,
        f: InputFile,
        con: duckdb.DuckDBPyConnection,
        root: ReadNode,
        stop: threading.Event,
        plain: str,
        held: _HeldBatches,
    ):
        """Convert one file with the typed read (:mod:`.typed_read`), on this thread (one file
        per worker, each with a one-thread DuckDB cursor: both cores busy, each file decompressed
        and parsed once, into ``plain``). The converted batches go to ``held``; returns what
        converting found, or ``None`` when the file is left to the exact path (or ``stop`` was
        set)."""
        done: list[_BatchResult] = []
        try:
            lines = plain_lines(f.local, f.gzip, plain)
            if lines is None:
                return None
            rows = 0
            keep_aside = self.per_item is not None
            for batch in con.sql(typed_query([lines.path], False, root)).to_arrow_reader(TYPED_BATCH_ROWS):
                if rows + batch.num_rows > len(lines):
                    return None
                out = _typed_on_worker(batch.column("item"), self.converter, self.plan, lines, rows, keep_aside)
                rows += batch.num_rows
                del batch
                if out is None or stop.is_set():
                    return None
                held.add(out.batches)
                out.batches = []
                done.append(out)
                _release_memory()
        finally:
            con.close()
        if rows != len(lines):
            return None
        f.tally = [rows, int(lines.lengths.sum())]
        return done

    def commit_typed(self, f: InputFile, done: list[_BatchResult], held: _HeldBatches) -> None:
        """Write a typed file's batches and merge what they found."""
        try:
            for batch in held.replay():
                self.writer.write(batch)
        finally:
            held.discard()
        for out in done:
            self.unproven += out.tally.pop("unproven", 0)
            self._take(out, {})
        self.rows += f.tally[0]

    def _take(self, out: _BatchResult, by_local: dict[str, InputFile]) -> list[InputFile]:
        """Write one converted batch and merge what it found; returns its bad files."""
        for b in out.batches:
            self.writer.write(b)
        if out.stats is not None:
            self.stats.merge(out.stats)
        self.counts.update(out.rescued)
        for item_obj in out.per_item:
            self.per_item.add(item_obj)
        for path, (rows, text_bytes) in out.tally.items():
            tally = by_local[path].tally
            tally[0] += rows
            tally[1] += text_bytes
        return [by_local[p] for p in out.bad_files if p in by_local]


class _HeldBatches:
    """A typed file's converted batches until the file is proven whole: in memory up to
    ``HOLD_BYTES``, then all of them in an Arrow IPC file of its own in ``scratch`` (uncompressed:
    writing and reading it back is a copy), so what waits does not grow with the file. (A file
    left behind by a round that stopped early goes with the scratch directory.)"""

    def __init__(self, scratch: str, prefix: str) -> None:
        self._scratch = scratch
        self._prefix = prefix
        self.path: str | None = None
        self._batches: list[pa.RecordBatch] = []
        self._bytes = 0
        self._sink = None
        self._writer = None

    def add(self, batches: list[pa.RecordBatch]) -> None:
        for batch in batches:
            if self._writer is None and self._bytes + batch.nbytes > HOLD_BYTES:
                fd, self.path = tempfile.mkstemp(suffix=".arrow", prefix=self._prefix, dir=self._scratch)
                os.close(fd)
                self._sink = pa.OSFile(self.path, "wb")
                self._writer = pa.ipc.new_file(self._sink, batch.schema)
                for b in self._batches:
                    self._writer.write_batch(b)
                self._batches = []
            if self._writer is not None:
                self._writer.write_batch(batch)
            else:
                self._batches.append(batch)
                self._bytes += batch.nbytes

    @property
    def spilled(self) -> bool:
        """Whether the batches went to disk."""
        return self.path is not None

    def replay(self):
        """The batches, in the order added."""
        if not self.spilled:
            yield from self._batches
            return
        self._close()
        with pa.OSFile(self.path, "rb") as source:  # read, not mapped: the pages do not stay resident
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def discard(self) -> None:
        self._close()
        self._batches = []
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)


#: A typed batch with more unproven rows than this share goes to the exact path (per item they
#: cost far more than the exact path's vectorised rows).
UNPROVEN_SHARE = 0.05


def _typed_on_worker(
    item: pa.Array, converter: BatchConverter, plan: SchemaPlan, lines: Lines, row0: int, keep_aside: bool
) -> _BatchResult | None:
    """Convert one batch of the typed read, rows ``row0``.. of ``lines`` (runs on a worker
    thread): the proven and valid rows vectorised, the others per item from their line's text
    (``tally["unproven"]``). ``None`` when the file should take the exact path: too many unproven
    rows, or one the per-item path cannot read (the exact path names its line)."""
    try:
        n = len(item)
        item, ok, size = typed_values(item, converter.root)
        ok = pc.and_(ok, pc.equal(size, pa.array(lines.lengths[row0 : row0 + n])))
        ok = converter.ok_rows(item, ok)
        n_ok = pc.sum(ok).as_py() or 0
        if n - n_ok > max(64, n * UNPROVEN_SHARE):
            return None
        out = _BatchResult()
        if n_ok:
            converted, out.stats, out.rescued = converter.convert(item, None if n_ok == n else ok)
            out.batches.append(converted)
        if n_ok < n:
            rest = np.flatnonzero(np.logical_not(ok.to_numpy(zero_copy_only=False))) + row0
            _per_item_rows(lines.texts(rest), [lines.path] * len(rest), converter, plan, out, keep_aside)
            if out.bad_files:
                return None
        out.tally = {"unproven": n - n_ok}
        return out
    finally:
        clear_caches()


def _convert_on_worker(batch: pa.RecordBatch, converter: BatchConverter, plan: SchemaPlan, keep_aside: bool):
    """Convert one batch (runs on a worker thread; touches no shared state)."""
    try:
        out = _convert_batch(batch, converter, plan, keep_aside)
        out.tally = tally_batch(batch)
        return out
    finally:
        clear_caches()  # per-thread memo of this batch's arrays


def _convert_batch(batch: pa.RecordBatch, converter: BatchConverter, plan: SchemaPlan, keep_aside: bool):
    """The covered and valid rows vectorised, the others per item (see :func:`_per_item_rows`)."""
    out = _BatchResult()
    item = batch.column("item")
    raw = batch.column("_raw")
    ok = converter.ok_rows(item, covered_rows(item, raw, converter.root))
    n_ok = pc.sum(ok).as_py() or 0
    if n_ok:
        converted, out.stats, out.rescued = converter.convert(item, None if n_ok == len(item) else ok)
        out.batches.append(converted)
    if n_ok < len(item):
        rest = pc.invert(ok)
        lines = batch.column("_raw").filter(rest).to_pylist()
        _per_item_rows(lines, batch.column("_file").filter(rest).to_pylist(), converter, plan, out, keep_aside)
    return out


def _per_item_rows(lines, files, converter: BatchConverter, plan: SchemaPlan, out: _BatchResult, keep_aside: bool):
    """The rows the vectorised path could not take, per item from the line's text (``files``: each
    line's file): kept aside (``keep_aside``: round 1, converted once the plan is final) or
    converted now."""
    items = []
    for line, file in zip(lines, files):
        try:
            item_obj = item_from_line(parse_line(line), "native")
        except (orjson.JSONDecodeError, NotAnItem, TypeError):
            out.bad_files.add(file)
            continue
        if converter.with_stats:
            if out.stats is None:
                out.stats = ValueStats()
            add_item(out.stats, item_obj)
        items.append(item_obj)
    if keep_aside:
        out.per_item = items
    else:
        local_counts: dict = {}
        for b, local_counts in python_engine.convert_items(items, plan):  # noqa: B007 (last = totals)
            out.batches.append(b)
        out.rescued.update(local_counts)


def _in_order(pool: ThreadPoolExecutor, work, items: list):
    """``(item, work(item))`` in the order of ``items``, ``work`` running on ``pool`` at most
    ``CONVERT_WORKERS`` items ahead (what is done waits in memory until its turn)."""
    pending: deque = deque()
    todo = iter(items)
    try:
        for item in todo:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= CONVERT_WORKERS:
                break
        while pending:
            item, future = pending.popleft()
            result = future.result()
            for following in todo:
                pending.append((following, pool.submit(work, following)))
                break
            yield item, result
            del result
    finally:
        for _, future in pending:
            future.cancel()


def _named_first(window: list[InputFile], message: str) -> list[InputFile]:
    """The window's files, the one DuckDB's error names first (scanned first per line)."""
    match = _ERROR_FILE.search(message)
    named = match.group(1) if match else None
    return sorted(window, key=lambda f: f.local != named)


def _release_memory() -> None:
    """Hand freed memory back to the OS after each batch: without it the allocators keep what
    they once held and peak RSS creeps up with the table size."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _ = _LIBC.malloc_trim  # probe: AttributeError where the libc has none
except (OSError, AttributeError):  # not glibc
    _LIBC = None


_DATABASES: dict[tuple, duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


def _database(threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process and settings (starting one costs ~30 ms); each
    conversion works on its own cursor."""
    key = (threads, memory_limit)
    with _DATABASES_LOCK:
        con = _DATABASES.get(key)
        if con is None:
            con = _DATABASES[key] = duckdb.connect(
                config={
                    "threads": threads,
                    "memory_limit": memory_limit,
                    "preserve_insertion_order": True,  # reproducible output
                    "temp_directory": os.path.join(tempfile.gettempdir(), f"offload-duckdb-{os.getpid()}"),
                }
            )
        return con


def _stream(con: duckdb.DuckDBPyConnection, sql: str):
    """Arrow batches of a query, produced in a background thread (DuckDB works while Python
    writes Parquet); at most two batches wait in memory."""
    q: queue.Queue = queue.Queue(maxsize=2)
    done = object()

    def produce():
        try:
            reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
            for batch in reader:
                q.put(batch)
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if thread.is_alive():
            con.interrupt()
            while thread.is_alive():
                try:
                    q.get(timeout=0.1)
                except queue.Empty:
                    pass
        thread.join()
