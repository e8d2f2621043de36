"""The input side of the vectorised converter: the files DuckDB reads, and the proof that it read
every line of them.

Each export file becomes an :class:`InputFile`: where DuckDB reads it (the file itself when it is
local, else a copy in the scratch directory), its line format, and what its manifest says of it.

Two checks run on every file, on this side of DuckDB:

* **Checksum** (when the manifest gives one): the MD5 of the file's bytes, computed while the
  bytes are copied for DuckDB (remote input) or, for a local file DuckDB reads itself, by a
  worker thread reading the same file alongside DuckDB (served from the page cache).
* **Every line read**: DuckDB's parallel JSON scan can end a file early without an error
  (measured, DuckDB 2.0: a last line missing its closing brace in one of 20 files gave N-1 rows
  and no error). So the rows and text bytes DuckDB returns per file are tallied and compared with
  the file's decompressed size (the gzip trailer's ``ISIZE``, or the plain file's size): equal
  when every line came back. Otherwise (blank lines, spaces around lines, several gzip members)
  the file's non-blank lines are counted per line; a count that differs from DuckDB's rows makes
  the file a bad file, whose bad line the per-line reader then names (table, file, line).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from offload_assets.export.layout import MD5Reader

from .export_lines import NotAnItem, check_md5, detect_line_format, item_from_line, iter_parsed_lines, iter_raw_lines
from .options import DataFileMismatch, ExpectedDataFile
from .value_stats import ValueStats, add_item

SAMPLE_LINES = 1000
#: Lines sampled over all files (at most ``SAMPLE_LINES`` and at least ``SAMPLE_LINES_MIN`` per file): the
#: files of an export are alike, and the sample runs before anything else, on one core.
SAMPLE_TOTAL = 4000
SAMPLE_LINES_MIN = 20
COPY_CHUNK = 8 << 20


@dataclass
class InputFile:
    path: str  # the name reported in errors (path on the input filesystem)
    index: int = 0  # position in the export's file list
    local: str | None = None  # local copy DuckDB reads (None: not prepared yet)
    temporary: bool = False  # the local copy is ours to delete
    gzip: bool = False
    format: str = "native"
    size: int = 0
    expected: ExpectedDataFile | None = None
    md5: Future | str | None = None  # the checksum of the original bytes (a Future while computed)
    content_bytes: int | None = None  # decompressed size of what DuckDB reads (mod 2**32 for gzip)
    quarantined: int = 0  # bad lines set aside (the cleaned copy lacks them)
    tally: list[int] = field(default_factory=lambda: [0, 0])  # rows and text bytes DuckDB returned

    @property
    def wants_md5(self) -> bool:
        return self.expected is not None and bool(self.expected.md5_checksum)


def describe(filesystem: pafs.FileSystem, path: str, index: int, input_format: str, expected) -> InputFile:
    info = filesystem.get_file_info(path)
    with filesystem.open_input_stream(path, compression=None) as raw:
        head = raw.read(2)
    f = InputFile(path=path, index=index, gzip=head == b"\x1f\x8b", size=info.size or 0, expected=expected)
    if isinstance(filesystem, pafs.LocalFileSystem):
        f.local = path
    f.format = input_format
    return f


def sample(filesystem: pafs.FileSystem, f: InputFile, stats: ValueStats, table: str, limit: int = SAMPLE_LINES) -> None:
    """Add the first ``limit`` items of ``f`` to ``stats`` and settle its line format
    (a guess only: whatever the sample misses or gets wrong the full pass finds)."""
    file_format = None if f.format == "auto" else f.format
    try:
        for n, (_, text) in enumerate(iter_raw_lines(filesystem, f.path, table=table)):
            if n >= limit:
                break
            # bad lines (duplicate keys included, which this skips looking for) are found and
            # reported by the full pass
            try:
                obj = orjson.loads(text)
                if file_format is None:
                    file_format = detect_line_format(obj)
                add_item(stats, item_from_line(obj, file_format))
            except (orjson.JSONDecodeError, NotAnItem):
                continue
    except Exception:  # noqa: BLE001 - corrupt files are reported by the full pass
        pass
    f.format = file_format or "native"


class InputFiles:
    """The export's files as DuckDB reads them: prepared per window, checked, released."""

    def __init__(self, filesystem: pafs.FileSystem, files: list[InputFile], scratch: str, table: str) -> None:
        self.fs = filesystem
        self.files = files
        self.scratch = scratch
        self.table = table
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="offload-md5")

    def close(self) -> None:
        self._hasher.shutdown(wait=True, cancel_futures=True)

    def prepare(self, window: list[InputFile]) -> None:
        """Make every file of ``window`` readable by DuckDB, its checksum and size under way."""
        for f in window:
            f.tally = [0, 0]
            if f.local is not None and f.format == "native":
                if f.wants_md5 and f.md5 is None:
                    f.md5 = self._hasher.submit(_file_md5, f.local)
                if f.content_bytes is None:
                    f.content_bytes = _content_bytes(f.local, f.gzip)
                continue
            target = os.path.join(
                self.scratch, f"in-{f.index:05d}.json" + (".gz" if f.gzip and f.format == "native" else "")
            )
            if f.format == "native":
                with MD5Reader(self.fs.open_input_stream(f.path, compression=None)) as src, open(target, "wb") as dst:
                    while chunk := src.read(COPY_CHUNK):
                        dst.write(chunk)
                    f.md5 = src.md5_base64()
            else:  # Data Pipeline lines: rewrite as native lines (legacy format, per line)
                with open(target, "wb") as dst:
                    check = ExpectedDataFile(md5_checksum=f.expected.md5_checksum) if f.wants_md5 else None
                    lines = iter_parsed_lines(self.fs, f.path, table=self.table, input_format=f.format, expected=check)
                    for line in lines:
                        if line.problem is None:
                            dst.write(orjson.dumps({"Item": line.item}) + b"\n")
                        else:
                            dst.write(line.text.rstrip(b"\r\n") + b"\n")  # reported by the full pass
                f.gzip = False
                f.md5 = f.expected.md5_checksum if f.wants_md5 else None  # checked while read
            f.local, f.temporary = target, True
            f.content_bytes = _content_bytes(target, f.gzip)

    def release(self, window: list[InputFile]) -> None:
        for f in window:
            if f.temporary and f.local and not f.local.startswith(os.path.join(self.scratch, "clean-")):
                try:
                    os.unlink(f.local)
                except FileNotFoundError:
                    pass
                f.local, f.temporary, f.content_bytes = None, False, None

    def check_checksums(self, window: list[InputFile]) -> None:
        """Raise :class:`DataFileMismatch` for the first file whose MD5 is not its manifest's."""
        for f in window:
            if not f.wants_md5:
                continue
            if isinstance(f.md5, Future):
                f.md5 = f.md5.result()
            check_md5(self.table, f.path, f.expected, f.md5)

    def incomplete(self, window: list[InputFile]) -> list[InputFile]:
        """Files of which DuckDB did not return every line (see the module docstring)."""
        out = []
        for f in window:
            rows, text_bytes = f.tally
            if f.content_bytes is not None and f.content_bytes in _sizes(rows, text_bytes, f.gzip):
                continue
            lines = sum(1 for _ in iter_raw_lines(pafs.LocalFileSystem(), f.local, table=self.table))
            if lines != rows:
                out.append(f)
        return out

    def check_item_counts(self, window: list[InputFile]) -> None:
        for f in window:
            if f.expected is not None and f.expected.item_count is not None:
                items = f.tally[0] + f.quarantined
                if items != f.expected.item_count:
                    raise DataFileMismatch(self.table, f.path, "itemCount", f.expected.item_count, items)


def tally_batch(batch: pa.RecordBatch) -> dict[str, tuple[int, int]]:
    """Rows and text bytes per file of one batch DuckDB returned (``_file`` is a dictionary)."""
    files = batch.column("_file")
    lengths = pc.binary_length(batch.column("_raw")).cast(pa.int64())
    if not isinstance(files, pa.DictionaryArray):
        files = pc.dictionary_encode(files)
    grouped = pa.table({"f": files.indices, "n": lengths}).group_by("f").aggregate([("n", "sum"), ("n", "count")])
    names = files.dictionary.to_pylist()
    return {
        names[i]: (count, total or 0)
        for i, total, count in zip(
            grouped.column("f").to_pylist(), grouped.column("n_sum").to_pylist(), grouped.column("n_count").to_pylist()
        )
    }


def _sizes(rows: int, text_bytes: int, gzip: bool) -> set[int]:
    """The decompressed sizes a file of ``rows`` lines of ``text_bytes`` has: every line ends
    with a newline, or the last one does not."""
    sizes = {text_bytes + rows, text_bytes + max(rows - 1, 0)}
    return {s % 2**32 for s in sizes} if gzip else sizes


def _content_bytes(path: str, gzip: bool) -> int:
    """Decompressed size: the plain file's size, or a gzip file's ``ISIZE`` (its last member's
    size mod 2**32: a file of several members takes the per-line count)."""
    size = os.path.getsize(path)
    if not gzip:
        return size
    if size < 18:
        return -1
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _file_md5(path: str) -> str:
    with MD5Reader(open(path, "rb")) as reader:
        while reader.read(COPY_CHUNK):
            pass
        return reader.md5_base64()
