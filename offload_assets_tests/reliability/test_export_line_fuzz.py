"""Hostile export lines: the converter fails only with ExportLineError, and then writes nothing.

Lines mix valid items with deep nesting, ~400 KB items, invalid UTF-8, numbers at and past
DynamoDB's limits, empty sets, duplicate JSON keys, unknown type tags and truncated gzip.
Whatever the mix, a conversion either succeeds with every row readable back, or raises the
documented :class:`ExportLineError` (naming table, file and line) and leaves no file behind.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload_assets.conversion import ConversionOptions, ExportLineError, convert_export_to_parquet


def _item(attrs: dict) -> bytes:
    return json.dumps({"Item": {"pk": {"S": "k"}, **attrs}}).encode()


def _nested(depth: int) -> bytes:
    value = '{"S":"leaf"}'
    for _ in range(depth):
        value = '{"M":{"a":' + value + "}}"
    return b'{"Item":{"pk":{"S":"k"},"deep":' + value.encode() + b"}}"


# DynamoDB nests maps and lists up to 32 levels (the converter types 24, then keeps DynamoDB JSON
# text); deeper lines are bad lines, and past ~1000 levels not even JSON to the parsers.
NESTING_DEPTHS = [5, 10, 20, 31, 32, 33, 100, 1000, 5000]

# Lines DynamoDB could never have exported: each is a bad line (ExportLineError, or quarantined).
BAD_LINES = [
    _item({"d39": {"N": "123456789012345678901234567890123456789"}}),
    _item({"past": {"N": "1e126"}}),
    _item({"tiny": {"N": "1e-131"}}),
    _item({"nan": {"N": "NaN"}}),
    _item({"inf": {"N": "Infinity"}}),
    _item({"bad": {"N": "12abc"}}),
    _item({"x": {"X": "1"}}),
    _item({"b": {"B": "!!not base64!!"}}),
    _item({"s": {"S": 1}}),
    _item({"n2": {"N": 2}}),
    _item({"bt": {"BOOL": "true"}}),
    _item({"b1": {"BOOL": 1}}),
    _item({"two": {"S": "a", "N": "1"}}),
    _item({"empty": {}}),
    _item({"null": {"NULL": False}}),
    b'{"Item":{"pk":{"S":"k"},"dup":{"S":"a"},"dup":{"N":"1"}}}',
    b'{"Item":{"pk":{"S":"a"},"pk":{"S":"b"}}}',
    b'{"Item":{"pk":{"S":"k"},"t":{"S":"a","S":"b"}}}',
    b'{"Item":{"pk":{"S":"k"},"m":{"M":{"k":{"S":"1:2"},"k":{"S":"3"}}}}}',
    b'{"Item":{"pk":{"S":"\xff\xfe invalid utf-8"}}}',
    b"\xff\xfe\x00 not json at all",
    b'{"Item": [1, 2, 3]}',
    b"[]",
    b"null",
    b'"text"',
    b"{",
] + [_nested(d) for d in NESTING_DEPTHS if d > 32]

HOSTILE_LINES = st.one_of(
    st.builds(lambda n: _item({"n": {"N": str(n)}}), st.integers(-(10**6), 10**6)),  # valid
    st.builds(lambda s: _item({"s": {"S": s}}), st.text(max_size=20)),  # valid
    st.sampled_from(
        [  # valid, at DynamoDB's limits
            _item({"big": {"N": "1e125"}}),
            _item({"small": {"N": "-1e-130"}}),
            _item({"d38": {"N": "12345678901234567890123456789012345678"}}),
            _item({"ss": {"SS": []}}),
            _item({"ns": {"NS": []}}),
            _item({"bs": {"BS": []}}),
            _item({"l": {"L": [{"S": "a"}, {"N": "1"}, {"M": {}}]}}),
            _item({"colons": {"S": 'a:b":'}}),
            b'{"Item":{"pk":{"S":"\\u003a"},"u":{"S":":"}}}',
            b'{"Item":{}}',
            _item({"huge": {"S": "x" * 400_000}}),
        ]
    ),
    st.builds(_nested, st.sampled_from([d for d in NESTING_DEPTHS if d <= 32])),
    st.sampled_from(BAD_LINES),
)


def _write_input(directory: Path, lines: list[bytes], gzipped: bool, truncate_to: float | None) -> Path:
    data = b"\n".join(lines) + b"\n"
    if gzipped:
        data = gzip.compress(data)
    if truncate_to is not None:
        data = data[: max(1, int(len(data) * truncate_to))]
    path = directory / ("data.json.gz" if gzipped else "data.json")
    path.write_bytes(data)
    return path


def _files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


@given(
    lines=st.lists(HOSTILE_LINES, min_size=1, max_size=8),
    gzipped=st.booleans(),
    truncate_to=st.one_of(st.none(), st.floats(0.1, 0.95)),
    bad_lines=st.sampled_from(["fail", "quarantine"]),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_hostile_export_never_crashes_nor_leaves_partial_output(lines, gzipped, truncate_to, bad_lines):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = _write_input(tmp, lines, gzipped, truncate_to)
        out = tmp / "out"
        out.mkdir()
        fs = pafs.LocalFileSystem()
        try:
            result = convert_export_to_parquet(
                [str(source)],
                fs,
                str(out),
                fs,
                table_name="Fuzz",
                options=ConversionOptions(bad_lines=bad_lines),
            )
        except ExportLineError as err:
            assert err.table == "Fuzz" and err.file.endswith(source.name) and err.line >= 1 and err.reason
            assert _files_under(out) == [], f"partial output left after {err}"
            if truncate_to is None:  # whole input: the line named is one DynamoDB could not write
                assert lines[err.line - 1] in BAD_LINES, (err, lines[err.line - 1][:200])
            return
        parquet = sorted(p for p in _files_under(out) if p.suffix == ".parquet")
        assert parquet and sum(pq.read_metadata(p).num_rows for p in parquet) == result.rows
        assert result.rows + result.quarantined_lines <= len(lines)
        if bad_lines == "fail":
            assert result.quarantined_lines == 0
        if truncate_to is None:  # whole input: every line is converted or (if bad) quarantined
            bad = sum(line in BAD_LINES for line in lines)
            assert (result.rows, result.quarantined_lines) == (len(lines) - bad, bad)


def test_native_line_with_an_unknown_tag_is_one_bad_line_not_a_format_change(tmp_path):
    """The first line's bad tag must not make the file look like a Data Pipeline export (which
    would turn every following native line into a bad line too)."""
    source = _write_input(tmp_path, [_item({"x": {"X": "1"}}), _item({"n": {"N": "0"}})], False, None)
    out = tmp_path / "out"
    out.mkdir()
    fs = pafs.LocalFileSystem()
    result = convert_export_to_parquet(
        [str(source)], fs, str(out), fs, table_name="Fuzz", options=ConversionOptions(bad_lines="quarantine")
    )
    assert (result.rows, result.quarantined_lines) == (1, 1)
    (bad,) = [json.loads(line) for line in (out / "_quarantine" / "bad-lines.jsonl").read_text().splitlines()]
    assert bad["line"] == 1 and "'x'" in bad["reason"] and "'X'" in bad["reason"]
