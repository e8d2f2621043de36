"""The vectorised converter: DuckDB parses, Arrow compute converts, Python only orchestrates.

Flow:

1. **Sample**: the first ``SAMPLE_LINES`` lines of every file are read per item to guess the
   *read structure* (every attribute, map key and DynamoDB type seen) and the schema plan.
2. **Round 1**: DuckDB reads every line (``read_ndjson_objects``) and types it with
   ``json_transform`` (:mod:`.duckdb_sql`); batches of Arrow data go to worker threads that
   check coverage (:mod:`.arrow_coverage`) and validity, gather the full statistics and convert
   (:mod:`.arrow_convert`); this thread writes Parquet. Rows DuckDB could not type completely
   (attributes the sample missed, names equal but for case, numbers not in DynamoDB's canonical
   form) take the per-item path (:mod:`.python_engine`), which adds them to the statistics; in
   round 1 they are kept aside until the plan is final.
3. The plan decided from the full statistics is compared with the sampled one: equal, round 1
   stands; only new columns (attributes the sample missed), the written files are rewritten with
   the new (null) columns; anything else, the files are dropped and **round 2** converts again
   with the exact plan. So the result never depends on the sample, only the time does.

Bad lines: the file is scanned per line to find them; ``fail`` raises :class:`ExportLineError`
with file and line, ``quarantine`` sets them aside and the round restarts on cleaned copies.
Memory stays bounded: DuckDB streams small Arrow batches (its own memory is capped), a few are in
flight at a time, the writer holds at most one row group, and freed memory is handed back to the
OS after each batch.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import tempfile
import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from . import python_engine
from .arrow_convert import BatchConverter
from .arrow_coverage import covered_rows
from .arrow_values import clear_caches
from .duckdb_sql import ReadNode, build_query, read_fields
from .export_lines import (
    NotAnItem,
    detect_line_format,
    item_from_line,
    iter_raw_lines,
    parse_line,
)
from .options import ConversionOptions, WrittenFile
from .parquet_output import ParquetPartsWriter
from .quarantine import BadLines
from .schema_plan import SchemaPlan, plan_schema
from .value_stats import ValueStats, add_item

SAMPLE_LINES = 1000
BATCH_ROWS = 16 * 1024  # small batches keep peak memory flat (measured: 64k rows +25%)
WINDOW_BYTES = 512 * 1024 * 1024


@dataclass
class InputFile:
    path: str  # the name reported in errors (path on the input filesystem)
    local: str | None = None  # local copy DuckDB reads (None: not prepared yet)
    temporary: bool = False  # the local copy is ours to delete
    gzip: bool = False
    format: str = "native"
    size: int = 0


CONVERT_WORKERS = 2


@dataclass
class _Processed:
    """What converting one batch produced."""

    batches: list = field(default_factory=list)
    stats: ValueStats | None = None
    rescued: Counter = field(default_factory=Counter)
    per_item: list = field(default_factory=list)
    bad_files: set = field(default_factory=set)


class _BadFiles(Exception):
    def __init__(self, files: list[InputFile]):
        self.files = files


def convert(
    input_files,
    input_filesystem: pafs.FileSystem,
    output_dir: str,
    output_filesystem: pafs.FileSystem,
    table_name: str,
    existing_schema: pa.Schema | None,
    options: ConversionOptions,
    bad_lines: BadLines,
):
    """Run the conversion; returns ``(plan, written files, rescued counts)``."""
    scratch = tempfile.mkdtemp(prefix="offload-convert-", dir=options.scratch_dir)
    try:
        files = [_describe(input_filesystem, p, options, table_name) for p in input_files]
        sample = ValueStats()
        for f in files:
            _sample(input_filesystem, f, sample, table_name)
        plan = plan_schema(sample, existing_schema, options)
        root = ReadNode(tags=("M",), fields=read_fields(sample.fields))
        engine = _Engine(input_filesystem, files, scratch, table_name, options, bad_lines)
        while True:
            writer = ParquetPartsWriter(output_filesystem, output_dir, plan.schema, options)
            engine.per_item = _PerItemRows(scratch)
            try:
                stats, counts, rows = engine.run_round(plan, root, writer, with_stats=True)
                full_plan = plan_schema(stats, existing_schema, options)
                if full_plan == plan:
                    counts = _add(counts, engine.per_item.convert_into(writer, plan))
                    return plan, writer.close(), counts
                if _extends(plan, full_plan) and engine.per_item.count <= max(10_000, rows // 20):
                    # only attributes the sample missed: add their (null) columns to what is
                    # written and convert the rows that hold them
                    written = writer.close()
                    writer = None
                    files_out, more = _rewrite_with_plan(
                        output_filesystem, output_dir, written, full_plan, options, engine.per_item
                    )
                    return full_plan, files_out, _add(counts, more)
            except _BadFiles as bad:
                if writer is not None:
                    writer.abort()
                engine.handle_bad_files(bad.files)  # raises, or quarantines and cleans
                continue
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            finally:
                engine.per_item.close()
            writer.abort()
            plan = full_plan
            root = ReadNode(tags=("M",), fields=read_fields(stats.fields))
            writer = ParquetPartsWriter(output_filesystem, output_dir, plan.schema, options)
            engine.per_item = None
            try:
                _, counts, _ = engine.run_round(plan, root, writer, with_stats=False)
                return plan, writer.close(), counts
            except BaseException:
                writer.abort()
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _add(a: dict, b: dict) -> dict:
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


def _describe(filesystem: pafs.FileSystem, path: str, options, table: str) -> InputFile:
    info = filesystem.get_file_info(path)
    with filesystem.open_input_stream(path, compression=None) as raw:
        head = raw.read(2)
    f = InputFile(path=path, gzip=head == b"\x1f\x8b", size=info.size or 0)
    if isinstance(filesystem, pafs.LocalFileSystem):
        f.local = path
    f.format = options.input_format
    return f


def _sample(filesystem, f: InputFile, stats: ValueStats, table: str) -> None:
    file_format = None if f.format == "auto" else f.format
    try:
        for n, (_, line) in enumerate(iter_raw_lines(filesystem, f.path, table=table)):
            if n >= SAMPLE_LINES:
                break
            try:
                obj = orjson.loads(line)  # a guess only: duplicate keys are found by the full pass
                if file_format is None:
                    file_format = detect_line_format(obj)
                add_item(stats, item_from_line(obj, file_format))
            except (orjson.JSONDecodeError, NotAnItem):
                continue  # found and reported by the full pass
    except Exception:  # noqa: BLE001 - corrupt files are reported by the full pass
        pass
    f.format = file_format or "native"


class _Engine:
    def __init__(
        self,
        filesystem,
        files: list[InputFile],
        scratch: str,
        table: str,
        options: ConversionOptions,
        bad_lines: BadLines,
    ) -> None:
        self.fs = filesystem
        self.files = files
        self.scratch = scratch
        self.table = table
        self.options = options
        self.bad_lines = bad_lines
        self.per_item: _PerItemRows | None = None
        self.rows = 0

    # -- input -----------------------------------------------------------------------------
    def _windows(self) -> list[list[InputFile]]:
        threads = self.options.threads or os.cpu_count() or 1
        windows, current, size = [], [], 0
        for f in self.files:
            if current and (size + f.size > WINDOW_BYTES and len(current) >= threads):
                windows.append(current)
                current, size = [], 0
            current.append(f)
            size += f.size
        if current:
            windows.append(current)
        if all(f.local is not None and f.format == "native" for f in self.files):
            return [self.files]  # already local: one query, DuckDB spreads files over threads
        return windows

    def _prepare(self, window: list[InputFile]) -> None:
        for f in window:
            if f.local is not None and f.format == "native":
                continue
            target = os.path.join(
                self.scratch, f"in-{self.files.index(f):05d}.json" + (".gz" if f.gzip and f.format == "native" else "")
            )
            if f.format == "native":
                with self.fs.open_input_stream(f.path, compression=None) as src, open(target, "wb") as dst:
                    while chunk := src.read(8 << 20):
                        dst.write(chunk)
            else:  # Data Pipeline lines: rewrite as native lines (legacy format, per line)
                with open(target, "wb") as dst:
                    for _, line in iter_raw_lines(self.fs, f.path, table=self.table):
                        try:
                            item = item_from_line(parse_line(line), f.format)
                            dst.write(orjson.dumps({"Item": item}) + b"\n")
                        except (orjson.JSONDecodeError, NotAnItem):
                            dst.write(line.rstrip(b"\r\n") + b"\n")  # reported by the full pass
                f.gzip = False
            f.local, f.temporary = target, True

    def _release(self, window: list[InputFile]) -> None:
        for f in window:
            if f.temporary and f.local and not f.local.startswith(os.path.join(self.scratch, "clean-")):
                try:
                    os.unlink(f.local)
                except FileNotFoundError:
                    pass
                f.local, f.temporary = None, False

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return _database(self.options.threads or os.cpu_count() or 1, self.options.memory_limit).cursor()

    # -- one round ---------------------------------------------------------------------------
    def run_round(self, plan: SchemaPlan, root: ReadNode, writer: ParquetPartsWriter, *, with_stats: bool):
        stats = ValueStats()
        counts: Counter = Counter()
        bad_files: list[InputFile] = []
        self.rows = 0
        for window in self._windows():
            self._prepare(window)
            try:
                bad_files += self._run_window(window, plan, root, writer, stats, counts, with_stats)
            except (duckdb.InvalidInputException, duckdb.IOException, duckdb.ConversionException):
                bad_files += window  # located per line below
            finally:
                self._release(window)
        if bad_files:
            raise _BadFiles([f for f in self.files if any(f is b for b in bad_files)])
        return stats, dict(counts), self.rows

    def _run_window(self, window, plan, root, writer, stats, counts, with_stats) -> list[InputFile]:
        by_local = {f.local: f for f in window}
        groups: dict[bool, list[str]] = {}
        for f in window:
            groups.setdefault(f.gzip, []).append(f.local)
        bad: list[InputFile] = []
        converter = BatchConverter(plan, root, with_stats)
        con = self._connect()
        # DuckDB parses on its threads; CONVERT_WORKERS threads convert batches (Arrow compute
        # releases the GIL); this thread writes Parquet, keeping results in order.
        pending: deque = deque()

        def collect(future) -> None:
            out = future.result()
            for b in out.batches:
                writer.write(b)
            if out.stats is not None:
                stats.merge(out.stats)
            counts.update(out.rescued)
            for item_obj in out.per_item:
                self.per_item.add(item_obj)
            bad.extend(by_local[p] for p in out.bad_files if p in by_local)

        try:
            with ThreadPoolExecutor(CONVERT_WORKERS) as pool:
                for gz, paths in groups.items():
                    source = f"read_ndjson_objects({paths!r}, filename=true, compression='{'gzip' if gz else 'none'}')"
                    for batch in _stream(con, build_query(source, root, paths)):
                        self.rows += batch.num_rows
                        pending.append(pool.submit(self._process, batch, converter, plan))
                        del batch
                        while len(pending) > CONVERT_WORKERS:
                            collect(pending.popleft())
                            _release_memory()
                while pending:
                    collect(pending.popleft())
        finally:
            for future in pending:
                future.cancel()
            con.close()
        return bad

    def _process(self, batch: pa.RecordBatch, converter: BatchConverter, plan: SchemaPlan) -> _Processed:
        """Convert one batch (runs on a worker thread; touches no shared state)."""
        try:
            return self._process_batch(batch, converter, plan)
        finally:
            clear_caches()  # per-thread memo of this batch's arrays

    def _process_batch(self, batch: pa.RecordBatch, converter: BatchConverter, plan: SchemaPlan) -> _Processed:
        out = _Processed()
        item = batch.column("item")
        raw = batch.column("_raw")
        ok = converter.ok_rows(item, covered_rows(item, raw, converter.root))
        n_ok = pc.sum(ok).as_py() or 0
        if n_ok:
            converted, out.stats, out.rescued = converter.convert(item if n_ok == len(item) else item.filter(ok))
            out.batches.append(converted)
        if n_ok == len(item):
            return out
        # the rest, per item from the line's text
        rest = pc.invert(ok)
        items = []
        for line, file in zip(raw.filter(rest).to_pylist(), batch.column("_file").filter(rest).to_pylist()):
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
        if self.per_item is not None:
            out.per_item = items  # converted once the plan is final
        else:
            local_counts: dict = {}
            for b, local_counts in python_engine.convert_items(items, plan):  # noqa: B007 (last = totals)
                out.batches.append(b)
            out.rescued.update(local_counts)
        return out

    # -- bad lines ---------------------------------------------------------------------------
    def handle_bad_files(self, files: list[InputFile]) -> None:
        """Find the bad lines per line: raise for ``fail``, else quarantine them and let the next
        round read a cleaned copy."""
        for f in files:
            clean_path = os.path.join(self.scratch, f"clean-{self.files.index(f):05d}.json")
            found = False
            with open(clean_path, "wb") as clean:
                for line_no, line in iter_raw_lines(self.fs, f.path, table=self.table):
                    try:
                        item = item_from_line(parse_line(line), f.format)
                    except orjson.JSONDecodeError as exc:
                        found = True
                        self.bad_lines.add(f.path, line_no, f"not JSON: {exc}", line)
                        continue
                    except NotAnItem as exc:
                        found = True
                        self.bad_lines.add(f.path, line_no, str(exc), line)
                        continue
                    clean.write(orjson.dumps({"Item": item}) + b"\n")
            if not found:
                raise RuntimeError(f"table {self.table!r}: DuckDB could not read {f.path} but every line is valid")
            f.local, f.temporary, f.gzip, f.format = clean_path, True, False, "native"


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
                    "preserve_insertion_order": False,
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
