"""Reading DynamoDB export lines: native exports, Data Pipeline exports, incremental exports.

Three line formats exist:

* native full export: ``{"Item": {"attr": {"S": "x"}, ...}}`` with the tags ``S N B BOOL NULL M L
  SS NS BS``;
* AWS Data Pipeline export (older): the item itself, one per line, with the tags ``s n b sS nS bS
  m l bOOL nULLValue`` (and the newer lower-case ``ss ns bs bool null``);
* native incremental export: ``{"Metadata": {"WriteTimestampMicros": ...}, "Keys": {...},
  "NewImage": {...}, "OldImage": {...}}``; a line without ``NewImage`` is a delete.

Everything here turns a line into an item in the *native* DynamoDB JSON form (the form boto3's
``TypeDeserializer`` reads), validates it, and reports the file and line of anything that is not a
DynamoDB item. This module is the per-line reference path: the vectorised converter only falls back
to it to locate and quarantine bad lines.

What DynamoDB itself cannot hold is a bad line too, since no real export contains it: maps and
lists nested deeper than :data:`MAX_NESTING_LEVELS`, numbers beyond DynamoDB's range or precision
(:func:`number_problem`), and duplicate keys in one JSON object (:func:`parse_line`).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pyarrow.fs as pafs

from offload_assets.export.layout import MD5Reader

from .options import DataFileMismatch, ExpectedDataFile, ExportLineError

NATIVE_TAGS = frozenset(("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"))
DATA_PIPELINE_TAGS = {
    "s": "S",
    "n": "N",
    "b": "B",
    "sS": "SS",
    "nS": "NS",
    "bS": "BS",
    "m": "M",
    "l": "L",
    "bOOL": "BOOL",
    "nULLValue": "NULL",
    "ss": "SS",
    "ns": "NS",
    "bs": "BS",
    "bool": "BOOL",
    "null": "NULL",
}
INCREMENTAL_KEYS = frozenset(("Metadata", "Keys", "NewImage", "OldImage"))

NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

#: Maps and lists nested deeper than this (the top-level attribute's own map or list is level 1)
#: cannot come from DynamoDB: it refuses 32 levels counting the scalar at the bottom, so 31 maps
#: or lists; one level of slack is allowed.
MAX_NESTING_LEVELS = 32
#: DynamoDB numbers: up to 38 significant digits, magnitude from 1E-130 to 9.99…E+125 (or zero).
MAX_NUMBER_DIGITS = 38
MAX_NUMBER_EXPONENT = 125
MIN_NUMBER_EXPONENT = -130
BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class NotAnItem(ValueError):
    """The JSON value is not a DynamoDB item (message says why)."""


# ---------------------------------------------------------------------------------------------
# Opening files


def open_export_file(filesystem: pafs.FileSystem, path: str) -> io.BufferedIOBase:
    """Binary stream of an export file's decompressed bytes (gzip detected by magic bytes)."""
    return _decompressed(filesystem.open_input_stream(path, compression=None))


def _decompressed(raw) -> io.BufferedIOBase:
    head = raw.read(2)
    rest = _Prepend(head, raw)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=rest, mode="rb")  # type: ignore[return-value]
    return rest  # type: ignore[return-value]


class _Prepend(io.RawIOBase):
    def __init__(self, head: bytes, stream) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def iter_raw_lines(
    filesystem: pafs.FileSystem, path: str, *, table: str = "?", expected: ExpectedDataFile | None = None
) -> Iterator[tuple[int, bytes]]:
    """``(line_number, line)`` for every non-blank line (numbers start at 1).

    A corrupt or truncated gzip stream raises :class:`ExportLineError` at the line being read.
    With ``expected`` (what the export's manifest says of the file), the file's MD5 is computed
    from the bytes as they are read and, at the end, it and the count of non-blank lines are
    compared with the manifest: a difference raises :class:`DataFileMismatch`.
    """
    line_no = items = 0
    raw = filesystem.open_input_stream(path, compression=None)
    hashed = MD5Reader(raw) if expected is not None and expected.md5_checksum else None
    stream = _decompressed(hashed or raw)
    try:
        reader = io.BufferedReader(stream, buffer_size=1 << 20) if not isinstance(stream, gzip.GzipFile) else stream
        while True:
            try:
                line = reader.readline()
            except (OSError, EOFError, zlib.error) as exc:
                if hashed is not None:
                    _drain(hashed)
                    check_md5(table, path, expected, hashed.md5_base64())  # a changed file says so first
                raise ExportLineError(table, path, line_no + 1, f"cannot decompress: {exc}") from exc
            if not line:
                break
            line_no += 1
            if line.strip():
                items += 1
                yield line_no, line
        if hashed is not None:
            _drain(hashed)
            check_md5(table, path, expected, hashed.md5_base64())
        if expected is not None and expected.item_count is not None and items != expected.item_count:
            raise DataFileMismatch(table, path, "itemCount", expected.item_count, items)
    finally:
        stream.close()


def _drain(stream) -> None:
    while stream.read(1 << 20):
        pass


def check_md5(table: str, path: str, expected: ExpectedDataFile | None, actual: str) -> None:
    """Raise :class:`DataFileMismatch` when the manifest's ``md5Checksum`` is not ``actual``."""
    if expected is not None and expected.md5_checksum and expected.md5_checksum != actual:
        raise DataFileMismatch(table, path, "md5Checksum", expected.md5_checksum, actual)


# ---------------------------------------------------------------------------------------------
# Formats


def detect_line_format(obj: Any) -> str:
    """``"native"``, ``"incremental"`` or ``"data_pipeline"`` for one parsed line."""
    if not isinstance(obj, dict):
        raise NotAnItem("line is not a JSON object")
    keys = obj.keys()
    if keys == {"Item"} and isinstance(obj["Item"], dict):
        item = obj["Item"]
        if all(isinstance(v, dict) and len(v) == 1 and next(iter(v)) in NATIVE_TAGS for v in item.values()):
            return "native"
        # A native line with a bad value (an unknown tag, say) is still a native line, so the
        # error names that attribute; only a Data Pipeline item whose one attribute is called
        # "Item" looks like {"Item": {"<lower-case tag>": ...}}.
        if not (len(item) == 1 and next(iter(item)) in DATA_PIPELINE_TAGS):
            return "native"
    if keys and keys <= INCREMENTAL_KEYS and ("Keys" in keys or "NewImage" in keys):
        return "incremental"
    return "data_pipeline"


def item_from_line(obj: Any, line_format: str) -> dict[str, dict]:
    """The item of a parsed line, validated and in native DynamoDB JSON form.

    ``line_format`` is ``"native"``, ``"data_pipeline"`` or ``"auto"``. Raises :class:`NotAnItem`.
    """
    if line_format == "auto":
        line_format = detect_line_format(obj)
    if line_format == "native":
        if not isinstance(obj, dict) or obj.keys() != {"Item"}:
            raise NotAnItem('native export line must be {"Item": {...}}')
        return normalize_item(obj["Item"], native=True)
    if line_format == "incremental":
        raise NotAnItem(
            "incremental export line (Keys/NewImage/OldImage): apply it with "
            "read_incremental_change() before converting"
        )
    return normalize_item(obj, native=False)


def normalize_item(item: Any, *, native: bool) -> dict[str, dict]:
    if not isinstance(item, dict):
        raise NotAnItem("item is not a JSON object")
    return {name: normalize_value(value, native, name) for name, value in item.items()}


def number_problem(text: str) -> str | None:
    """Why DynamoDB could not hold the number ``text`` (which matches :data:`NUMBER_RE`), or
    ``None``: more than 38 significant digits, or a magnitude beyond 9.99…E+125 or below 1E-130.
    Leading ``+``, leading zeros, ``-0`` and exponents are accepted (their value is exact)."""
    if len(text) <= MAX_NUMBER_DIGITS and "e" not in text and "E" not in text:
        return None  # at most 38 digits and no exponent: always within range (the common case)
    value = Decimal(text)
    if value.is_zero():
        return None
    digits = "".join(map(str, value.as_tuple().digits)).strip("0")
    if len(digits) > MAX_NUMBER_DIGITS:
        return f"more than {MAX_NUMBER_DIGITS} significant digits (DynamoDB's precision)"
    if value.adjusted() > MAX_NUMBER_EXPONENT:
        return "magnitude beyond DynamoDB's largest number 9.99...E+125"
    if value.adjusted() < MIN_NUMBER_EXPONENT:
        return "magnitude below DynamoDB's smallest number 1E-130"
    return None


def _check_number(text: Any, where: str, what: str) -> None:
    if not isinstance(text, str) or not NUMBER_RE.fullmatch(text):
        raise NotAnItem(f"attribute {where!r}: {what}")
    problem = number_problem(text)
    if problem is not None:
        raise NotAnItem(f"attribute {where!r}: number {_short(text)} has {problem}")


def normalize_value(value: Any, native: bool, where: str, level: int = 1) -> dict:
    """One attribute value in native form ``{"TAG": payload}``; raises :class:`NotAnItem`.
    ``level``: 1 for a top-level attribute, one more per enclosing map or list."""
    if not isinstance(value, dict) or len(value) != 1:
        raise NotAnItem(f"attribute {where!r}: not a DynamoDB typed value: {_short(value)}")
    ((tag, payload),) = value.items()
    if not native:
        if tag not in DATA_PIPELINE_TAGS:
            raise NotAnItem(f"attribute {where!r}: unknown Data Pipeline type {tag!r}")
        tag = DATA_PIPELINE_TAGS[tag]
    elif tag not in NATIVE_TAGS:
        raise NotAnItem(f"attribute {where!r}: unknown DynamoDB type {tag!r}")
    if tag == "S":
        if not isinstance(payload, str):
            raise NotAnItem(f"attribute {where!r}: S must be a string")
    elif tag == "N":
        if not isinstance(payload, str) or not NUMBER_RE.fullmatch(payload):
            raise NotAnItem(f"attribute {where!r}: N must be a number in a string")
        if len(payload) > MAX_NUMBER_DIGITS or "e" in payload or "E" in payload:
            _check_number(payload, where, "N must be a number in a string")
    elif tag == "B":
        if not isinstance(payload, str) or not BASE64_RE.fullmatch(payload):
            raise NotAnItem(f"attribute {where!r}: B must be base64")
    elif tag == "BOOL":
        if not isinstance(payload, bool):
            raise NotAnItem(f"attribute {where!r}: BOOL must be true or false")
    elif tag == "NULL":
        if payload is not True:
            raise NotAnItem(f"attribute {where!r}: NULL must be true")
    elif tag in ("SS", "NS", "BS"):
        if not isinstance(payload, list) or not all(isinstance(e, str) for e in payload):
            raise NotAnItem(f"attribute {where!r}: {tag} must be a list of strings")
        if tag == "NS":
            for e in payload:
                if not NUMBER_RE.fullmatch(e):
                    raise NotAnItem(f"attribute {where!r}: NS element is not a number")
                if len(e) > MAX_NUMBER_DIGITS or "e" in e or "E" in e:
                    _check_number(e, where, "NS element is not a number")
        if tag == "BS" and not all(BASE64_RE.fullmatch(e) for e in payload):
            raise NotAnItem(f"attribute {where!r}: BS element is not base64")
    elif tag == "M":
        if not isinstance(payload, dict):
            raise NotAnItem(f"attribute {where!r}: M must be an object")
        if level >= MAX_NESTING_LEVELS:
            _check_level(level, where)
        payload = {k: normalize_value(v, native, f"{where}.{k}", level + 1) for k, v in payload.items()}
    elif tag == "L":
        if not isinstance(payload, list):
            raise NotAnItem(f"attribute {where!r}: L must be a list")
        if level >= MAX_NESTING_LEVELS:
            _check_level(level, where)
        payload = [normalize_value(v, native, f"{where}[{i}]", level + 1) for i, v in enumerate(payload)]
    return {tag: payload}


def _check_level(level: int, where: str) -> None:
    if level > MAX_NESTING_LEVELS:
        top = where.split(".", 1)[0].split("[", 1)[0]
        raise NotAnItem(
            f"attribute {top!r}: maps and lists nested more than {MAX_NESTING_LEVELS} levels deep (DynamoDB's limit)"
        )


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if value is not None else "null"
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------
# Parsing a line


def parse_line(line: bytes | str) -> Any:
    """The JSON value of one export line; raises ``orjson.JSONDecodeError`` if it is not JSON and
    :class:`NotAnItem` if an object in it has a key twice (DynamoDB never writes that; a JSON
    parser would silently keep the last one).

    The duplicate check costs one walk over the parsed value: every ``:`` of the line is a key's
    or inside a string, so the line has no duplicate key when its ``:`` count equals the parsed
    value's keys plus the ``:`` in its strings. Only lines where that cannot decide (an escaped
    ``\\u003a`` colon, or a mismatch) are parsed again, slowly, to find the key.
    """
    obj = orjson.loads(line)
    if isinstance(obj, (dict, list)):
        keys, colons = _keys_and_colons(obj)
        text = line if isinstance(line, bytes) else line.encode()
        if text.count(b":") != keys + colons or b"\\u003a" in text or b"\\u003A" in text:
            _find_duplicate_key(text)
    return obj


def _keys_and_colons(obj: dict | list) -> tuple[int, int]:
    """Keys of every object in ``obj``, and ``:`` characters in its strings (keys included)."""
    keys = colons = 0
    stack = [obj]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            keys += len(node)
            for k in node:
                if ":" in k:
                    colons += k.count(":")
            values = node.values()
        else:
            values = node
        for v in values:
            t = type(v)
            if t is str:
                if ":" in v:
                    colons += v.count(":")
            elif t is dict or t is list:
                push(v)
    return keys, colons


def _find_duplicate_key(text: bytes) -> None:
    def pairs(items: list[tuple[str, Any]]) -> dict:
        out = dict(items)
        if len(out) != len(items):
            seen: set[str] = set()
            for k, _ in items:
                if k in seen:
                    raise NotAnItem(f"duplicate key {k!r} in a JSON object of the line")
                seen.add(k)
        return out

    try:
        json.loads(text, object_pairs_hook=pairs)
    except RecursionError as exc:  # orjson took it, so it is nested far beyond DynamoDB's limit
        raise NotAnItem(f"nested more than {MAX_NESTING_LEVELS} levels deep") from exc


# ---------------------------------------------------------------------------------------------
# Items


@dataclass(frozen=True)
class ExportItem:
    """An item read from an export file, with where it came from."""

    file: str
    line: int
    item: dict[str, dict]


@dataclass(frozen=True)
class ParsedLine:
    """One non-blank line of an export file, read as an item: ``item`` in native form, or
    ``problem`` (why the line is not an item, for an error or the quarantine); ``line_format``
    is the file's line format as decided so far (``None`` until a line was JSON)."""

    line_no: int
    text: bytes
    item: dict[str, dict] | None
    problem: str | None = None
    line_format: str | None = None


def iter_parsed_lines(
    filesystem: pafs.FileSystem,
    path: str,
    *,
    table: str = "?",
    input_format: str = "auto",
    expected: ExpectedDataFile | None = None,
) -> Iterator[ParsedLine]:
    """Every non-blank line of one export file, parsed as an item: *the* line-parsing loop (the
    per-item engine, the DuckDB engine's bad-line search and sample, the readers all use it).

    ``input_format="auto"`` decides the line format (native or Data Pipeline) from the first line
    that is JSON. A line that is not JSON, or not an item, is yielded with its ``problem`` (and no
    item): the caller raises, quarantines or skips it. ``expected``: see :func:`iter_raw_lines`.
    """
    line_format = None if input_format == "auto" else input_format
    for line_no, line in iter_raw_lines(filesystem, path, table=table, expected=expected):
        try:
            obj = parse_line(line)
            if line_format is None:
                line_format = detect_line_format(obj)
            yield ParsedLine(line_no, line, item_from_line(obj, line_format), None, line_format)
        except orjson.JSONDecodeError as exc:
            yield ParsedLine(line_no, line, None, f"not JSON: {exc}", line_format)
        except NotAnItem as exc:
            yield ParsedLine(line_no, line, None, str(exc), line_format)


def iter_export_items(
    input_files,
    input_filesystem: pafs.FileSystem,
    *,
    table_name: str = "?",
    input_format: str = "auto",
) -> Iterator[ExportItem]:
    """Every item of the given export files, in native DynamoDB JSON form, one by one.

    Native and Data Pipeline lines are recognised (``input_format="auto"``: per file, from its
    first line). Raises :class:`ExportLineError` (table, file, line) on anything that is not an
    item, including incremental-export lines (read those with :func:`iter_incremental_changes`).
    """
    for path in input_files:
        for line in iter_parsed_lines(input_filesystem, path, table=table_name, input_format=input_format):
            if line.problem is not None:
                raise ExportLineError(table_name, path, line.line_no, line.problem)
            yield ExportItem(path, line.line_no, line.item)


# ---------------------------------------------------------------------------------------------
# Incremental exports


@dataclass(frozen=True)
class IncrementalChange:
    """One line of a native incremental export, in native DynamoDB JSON form.

    ``kind`` is ``"put"`` (``new_image`` holds the item after the write: insert or update) or
    ``"delete"`` (no ``new_image``). ``keys`` is the item's primary key, ``old_image`` the item
    before the write when the export was requested with both images (else ``None``), and
    ``write_timestamp_micros`` the write time from ``Metadata.WriteTimestampMicros`` (``None``
    when absent). Apply changes per key in ``write_timestamp_micros`` order, last one wins.
    """

    kind: str
    keys: dict[str, dict]
    new_image: dict[str, dict] | None
    old_image: dict[str, dict] | None
    write_timestamp_micros: int | None
    metadata: dict


def is_incremental_line(obj: Any) -> bool:
    """Whether a parsed line is a native incremental-export line."""
    return isinstance(obj, dict) and detect_line_format(obj) == "incremental"


def read_incremental_change(obj: Any) -> IncrementalChange:
    """Classify and validate one parsed incremental-export line (raises :class:`NotAnItem`)."""
    if not is_incremental_line(obj):
        raise NotAnItem("not an incremental export line (needs Keys and/or NewImage)")
    metadata = obj.get("Metadata") or {}
    if not isinstance(metadata, dict):
        raise NotAnItem("Metadata must be an object")
    new_image = normalize_item(obj["NewImage"], native=True) if obj.get("NewImage") else None
    old_image = normalize_item(obj["OldImage"], native=True) if obj.get("OldImage") else None
    keys_obj = obj.get("Keys")
    keys = normalize_item(keys_obj, native=True) if keys_obj is not None else {}
    if not keys and new_image is None:
        raise NotAnItem("incremental line has neither Keys nor NewImage")
    ts = metadata.get("WriteTimestampMicros")
    if isinstance(ts, dict):  # {"N": "123"} in some exports
        ts = ts.get("N")
    return IncrementalChange(
        kind="put" if new_image is not None else "delete",
        keys=keys,
        new_image=new_image,
        old_image=old_image,
        write_timestamp_micros=int(ts) if ts is not None else None,
        metadata=metadata,
    )


def iter_incremental_changes(
    input_files, input_filesystem: pafs.FileSystem, *, table_name: str = "?"
) -> Iterator[IncrementalChange]:
    """Every change of the given incremental-export data files, in file and line order.

    Raises :class:`ExportLineError` (table, file, line) on a line that is not an incremental line.
    """
    for path in input_files:
        for line_no, line in iter_raw_lines(input_filesystem, path, table=table_name):
            try:
                yield read_incremental_change(parse_line(line))
            except orjson.JSONDecodeError as exc:
                raise ExportLineError(table_name, path, line_no, f"not JSON: {exc}") from exc
            except NotAnItem as exc:
                raise ExportLineError(table_name, path, line_no, str(exc)) from exc
