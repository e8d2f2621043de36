"""The typed read: DuckDB hands over each line already typed with the declared read structure
(``read_ndjson(records=true, columns=...)``), without the line's text, and each *row* is proven
read whole and covered by its size.

The file is decompressed once (ISA-L) into a plain file in the scratch directory, which DuckDB
reads (cheaper than its own gzip) and whose line positions a newline scan gives
(:func:`plain_lines`). A file with a line that does not start with ``{`` (an empty or blank line,
leading spaces) is left to the exact path, so the n-th row DuckDB returns is the n-th line.

Every scalar payload (``S``, ``N``, ``B``, ``BOOL``, ``NULL`` and the elements of sets) is declared
as DuckDB's ``JSON`` type, so it arrives as its own JSON text: ``"abc"`` for a string, ``12`` for
a number. That makes two things exact that a ``VARCHAR`` declaration would blur (DuckDB reads
``{"S": 12}`` into a ``VARCHAR`` as ``"12"``, a size larger than the line's, which a dropped key
could cancel out):

* the payload's JSON type: a string must start with a quote, ``BOOL`` must be ``true`` or
  ``false``; anything else makes the row unproven (:func:`typed_values`);
* the size of what was read: the compact JSON size of the typed item (structure from the read
  structure, payloads by their JSON text) can only be *smaller* than the line when something was
  left out: a key the structure lacks (an attribute or map key the sample missed, the second of
  two names equal but for case: DuckDB matches keys case-sensitively), spaces, escapes written
  longer than DuckDB writes them back (``\\u0041`` for ``A``), a JSON ``null``. DuckDB refuses
  duplicate keys and payloads of another container type. So a row whose typed size is its line's
  length had every key typed (the **proof per row**).

The rows that fail (a size that does not add up, a payload of the wrong JSON type, a value that
is not valid) are converted per item from their line's text, as the exact path converts the rows
it cannot type; a file DuckDB refuses, that returns another number of rows than it has lines, or
with many unproven rows, is converted again by the exact path. So the result never depends on
the proof, only the time.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

try:  # ISA-L's gzip: about 3x zlib's speed
    from isal.igzip import open as _gzip_open
    from isal.isal_zlib import error as _isal_error
except ImportError:  # pragma: no cover (a dependency; kept working without it)
    from gzip import open as _gzip_open
    from zlib import error as _isal_error

from .arrow_coverage import object_size
from .arrow_values import all_true, list_parts, rows_all, struct_field
from .duckdb_sql import TAG_ORDER, ReadNode, sql_string

#: What decompressing a damaged file raises (the exact path then names its line).
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, _isal_error)

#: Files larger than this (compressed) take the exact path: the typed read keeps the file's plain
#: copy (about 5x the gzip bytes) and, until DuckDB returned as many rows as it has lines, its
#: converted rows (in memory up to a bound, then on disk) in the scratch directory.
TYPED_FILE_BYTES = 512 * 1024 * 1024
_CHUNK = 16 * 1024 * 1024
_OPEN_BRACE = ord("{")

_SCALAR_TAGS = ("S", "N", "B", "BOOL", "NULL")
_SET_TAGS = ("SS", "NS", "BS")


def duckdb_type(node: ReadNode) -> str:
    """The DuckDB type declared for a typed value at ``node`` (scalars as ``JSON``)."""
    parts = []
    for tag in TAG_ORDER:
        if tag not in node.tags:
            continue
        if tag in _SCALAR_TAGS:
            t = "JSON"
        elif tag in _SET_TAGS:
            t = "JSON[]"
        elif tag == "M":
            t = _struct_type(node.fields) if node.fields else "JSON"
        else:  # L
            t = (duckdb_type(node.element) if node.element is not None else "JSON") + "[]"
        parts.append(f'"{tag}" {t}')
    return "STRUCT(" + ", ".join(parts) + ")" if parts else 'STRUCT("NULL" JSON)'


def _struct_type(fields: dict[str, ReadNode]) -> str:
    return "STRUCT(" + ", ".join('"' + k.replace('"', '""') + '" ' + duckdb_type(v) for k, v in fields.items()) + ")"


def typed_query(paths: list[str], gzip: bool, root: ReadNode) -> str:
    """The typed read of ``paths``: the item (``item``) and its file (``_file``)."""
    item_type = _struct_type(root.fields) if root.fields else "JSON"
    columns = "{'Item': " + sql_string(item_type) + "}"
    return (
        f"SELECT Item AS item, filename AS _file FROM read_ndjson({paths!r}, records=true, columns={columns}, "
        f"filename=true, compression='{'gzip' if gzip else 'none'}')"
    )


def typed_values(item: pa.Array, root: ReadNode) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``(item, ok, size)`` for a batch of the typed read: the item with payloads as the exact
    path's ``json_transform`` gives them (strings unquoted and unescaped, ``BOOL``/``NULL`` as
    booleans), whether every payload had its tag's JSON type, and each line's compact JSON size
    from the read structure and the payloads' JSON text (see the module docstring)."""
    if not root.fields:  # nothing declared: the item is JSON text (only ``{}`` can be proven)
        ok = pc.fill_null(pc.equal(item, "{}"), False)
        return pa.nulls(len(item), pa.struct([])), ok, pc.add(pc.binary_length(item).cast(pa.int64()), 9)
    size = pc.fill_null(pc.add(object_size(item, root.fields, json_leaves=True), 9), 0)
    children, checks = [], [pc.is_valid(item)]
    for name, node in root.fields.items():
        child, ok = _value(struct_field(item, name), node)
        children.append(child)
        checks.append(ok)
    out = pa.StructArray.from_arrays(children, names=list(root.fields), mask=pc.is_null(item))
    ok = checks[0]
    for c in checks[1:]:
        ok = pc.and_(ok, c)
    return out, pc.fill_null(ok, False), size


def _value(v: pa.Array, node: ReadNode) -> tuple[pa.Array, pa.Array]:
    """One typed value's payloads converted; ``ok`` per row (true where absent)."""
    n = len(v)
    children, names, checks = [], [], []
    for tag in node.tags:
        t = struct_field(v, tag)
        if tag in ("S", "N", "B"):
            out, ok = _strings(t)
        elif tag in ("BOOL", "NULL"):
            out = pc.equal(t, "true")
            ok = pc.or_(pc.is_null(t), pc.or_(out, pc.equal(t, "false")))
        elif tag in _SET_TAGS:
            offsets, elements, parents = list_parts(t)
            converted, element_ok = _strings(elements)
            out = pa.ListArray.from_arrays(offsets, converted, mask=pc.is_null(t))
            ok = rows_all(n, element_ok, parents)
        elif tag == "M":
            if node.fields:
                out, ok = _map(t, node.fields)
            else:
                out, ok = t, all_true(n)
        else:  # L
            if node.element is not None:
                offsets, elements, parents = list_parts(t)
                converted, element_ok = _value(elements, node.element)
                out = pa.ListArray.from_arrays(offsets, converted, mask=pc.is_null(t))
                ok = rows_all(n, element_ok, parents)
            else:
                out, ok = t, all_true(n)
        children.append(out)
        names.append(tag)
        checks.append(pc.fill_null(ok, True))
    if not children:
        return v, all_true(n)
    ok = checks[0]
    for c in checks[1:]:
        ok = pc.and_(ok, c)
    return pa.StructArray.from_arrays(children, names=names, mask=pc.is_null(v)), ok


def _map(m: pa.Array, fields: dict[str, ReadNode]) -> tuple[pa.Array, pa.Array]:
    children, checks = [], []
    for name, node in fields.items():
        child, ok = _value(struct_field(m, name), node)
        children.append(child)
        checks.append(ok)
    ok = checks[0]
    for c in checks[1:]:
        ok = pc.and_(ok, c)
    return pa.StructArray.from_arrays(children, names=list(fields), mask=pc.is_null(m)), ok


def _strings(t: pa.Array) -> tuple[pa.Array, pa.Array]:
    """JSON string texts → their values; ``ok``: the text was a JSON string (true where null)."""
    quoted = pc.starts_with(t, '"')
    ok = pc.fill_null(quoted, True)
    if len(t) == 0:
        return t, ok
    unquoted = pc.binary_slice(t.view(pa.binary()), 1, -1).view(pa.string())
    if not _holds_backslash(t):  # one search over the text, not one per value (most text has no escape)
        return unquoted, ok
    escaped = pc.fill_null(pc.and_(quoted, pc.match_substring(t, "\\")), False)
    if pc.any(escaped).as_py():
        texts = [orjson.loads(x) for x in pc.filter(t, escaped).to_pylist()]
        unquoted = pc.replace_with_mask(unquoted, escaped, pa.array(texts, pa.string()))
    return unquoted, ok


_BACKSLASH = re.compile(rb"\\")


def _holds_backslash(t: pa.Array) -> bool:
    if t.type != pa.string():
        return True  # (no shortcut)
    _, offsets, data = t.buffers()
    if data is None or len(t) == 0:
        return False
    offsets = pa.Array.from_buffers(pa.int32(), len(t) + 1, [None, offsets], offset=t.offset)
    return _BACKSLASH.search(memoryview(data)[offsets[0].as_py() : offsets[len(t)].as_py()]) is not None


@dataclass
class Lines:
    """Where each line of a plain (decompressed) export file lies: ``starts`` and ``lengths``
    (without the newline) in bytes."""

    path: str
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def texts(self, rows: np.ndarray) -> list[bytes]:
        """The text of the lines at ``rows``."""
        with open(self.path, "rb") as f:
            fd = f.fileno()
            return [os.pread(fd, int(self.lengths[r]), int(self.starts[r])) for r in rows]


def plain_lines(source: str, gzip: bool, plain_path: str) -> Lines | None:
    """Decompress ``source`` into ``plain_path`` (a plain ``source`` is only scanned) and find its
    lines, 16 MiB at a time; ``None`` when a line does not start with ``{``."""
    ends: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    pos = 0
    at_line_start = True
    with _gzip_open(source, "rb") if gzip else open(source, "rb") as src:
        dst = open(plain_path, "wb") if gzip else None
        try:
            while chunk := src.read(_CHUNK):
                if dst is not None:
                    dst.write(chunk)
                a = np.frombuffer(chunk, np.uint8)
                nl = np.flatnonzero(a == 10)
                starts = nl[nl + 1 < len(a)] + 1
                if at_line_start:
                    starts = np.concatenate([[0], starts])
                if len(starts) and not (a[starts] == _OPEN_BRACE).all():
                    return None
                firsts.append(starts + pos)
                ends.append(nl + pos)
                at_line_start = a[-1] == 10
                pos += len(a)
        finally:
            if dst is not None:
                dst.close()
    starts = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    ends_all = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    if len(ends_all) < len(starts):  # the last line has no newline
        ends_all = np.concatenate([ends_all, [pos]])
    return Lines(plain_path if gzip else source, starts.astype(np.int64), (ends_all - starts).astype(np.int64))
