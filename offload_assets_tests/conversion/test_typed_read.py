"""The typed read and its proof per row: a row is proven only when every key of its line was typed
and every payload had its tag's JSON type; rows that fail are converted per item and files that
cannot be read line by line take the exact per-row path, so the output is the reference engine's
either way."""

from __future__ import annotations

import os

import duckdb
import orjson
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from offload_assets.conversion import ConversionOptions, ExportLineError, convert_export_to_parquet, duckdb_engine
from offload_assets.conversion.arrow_convert import BatchConverter
from offload_assets.conversion.duckdb_sql import read_root
from offload_assets.conversion.export_lines import item_from_line
from offload_assets.conversion.schema_plan import plan_schema
from offload_assets.conversion.typed_read import plain_lines, typed_query
from offload_assets.conversion.value_stats import ValueStats, add_item

from .dynamodb_values import b64, native_line, sort_key, write_lines

LOCAL = pafs.LocalFileSystem()

ITEMS = [
    {
        "id": {"S": f"r{i}"},
        "n": {"N": str(i * 7)},
        "price": {"N": f"{i}.25"},
        "ok": {"BOOL": i % 2 == 0},
        "gone": {"NULL": True},
        "tags": {"SS": ["a", f"t{i}"]},
        "scores": {"NS": ["1", "2.5"]},
        "blob": {"B": b64(bytes([i % 256, 1, 2]))},
        "blobs": {"BS": [b64(b"x"), b64(b"yz")]},
        "product": {"M": {"brand": {"S": "B"}, "dims": {"M": {"h": {"N": "1.5"}}}}},
        "comments": {"L": [{"M": {"by": {"S": "u"}, "at": {"N": "3"}}}, {"M": {"by": {"S": "v"}}}]},
        "mixed": {"L": [{"S": "x"}, {"N": "1"}]},
        "text": {"S": 'say "hi" \\ back\nslash \t tab caf\u00e9 \u2028'},
    }
    for i in range(40)
]


def _write(tmp_path, lines, name="data.json.gz"):
    path = tmp_path / name
    write_lines(path, lines)
    return str(path)


def typed_proof(path: str, sample_lines: list[bytes]) -> bool:
    """Whether the typed read proves every row of the file (every payload of its JSON type,
    every value valid, each row's size its line's length), with the read structure and plan of
    ``sample_lines``."""
    stats = ValueStats()
    for line in sample_lines:
        add_item(stats, item_from_line(orjson.loads(line), "native"))
    root = read_root(stats.fields)
    plan = plan_schema(stats, None, ConversionOptions())
    converter = BatchConverter(plan, root, with_stats=True)
    lines = plain_lines(path, path.endswith(".gz"), path + ".plain")
    if lines is None:
        return False
    rows = unproven = 0
    try:
        for batch in duckdb.connect().sql(typed_query([lines.path], False, root)).to_arrow_reader(1000):
            out = duckdb_engine._typed_on_worker(batch.column("item"), converter, plan, lines, rows, True)
            if out is None:
                return False
            rows += batch.num_rows
            unproven += out.tally["unproven"]
    except duckdb.Error:
        return False
    return rows == len(lines) and unproven == 0


def both_engines(tmp_path, paths: list[str], ordered: bool = True, **options):
    """Convert with the DuckDB engine and the per-item reference; assert the same output (in the
    same order unless ``ordered`` is false: rows the exact path converts per item come last)."""
    out = convert_export_to_parquet(
        paths, LOCAL, str(tmp_path / "out"), LOCAL, table_name="T", options=ConversionOptions(**options)
    )
    ref = convert_export_to_parquet(
        paths,
        LOCAL,
        str(tmp_path / "ref"),
        LOCAL,
        table_name="T",
        options=ConversionOptions(engine="python", **options),
    )
    assert out.schema == ref.schema
    assert out.rescued_counts == ref.rescued_counts
    assert out.rows == ref.rows
    rows, ref_rows = pq.read_table(tmp_path / "out").to_pylist(), pq.read_table(tmp_path / "ref").to_pylist()
    if not ordered:
        rows, ref_rows = sorted(rows, key=sort_key), sorted(ref_rows, key=sort_key)
    assert rows == ref_rows
    return out, pq.read_table(tmp_path / "out")


def test_a_clean_file_is_proven_and_converts_as_the_reference(tmp_path):
    lines = [native_line(i) for i in ITEMS]
    path = _write(tmp_path, lines)
    assert typed_proof(path, lines)  # quotes, backslashes, newlines, tabs, non-ASCII: written as DuckDB writes them
    _, table = both_engines(tmp_path, [path])
    assert table.column("text").to_pylist()[0] == ITEMS[0]["text"]["S"]
    assert table.num_rows == len(ITEMS)


def test_an_attribute_the_sample_missed_fails_the_proof(tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_engine, "SAMPLE_LINES", 2)
    items = [dict(i) for i in ITEMS]
    items[30]["late"] = {"M": {"x": {"S": "y"}}}
    items[31]["product"] = {"M": {"brand": {"S": "B"}, "extra": {"N": "5"}}}  # a map key the sample missed
    lines = [native_line(i) for i in items]
    path = _write(tmp_path, lines)
    assert not typed_proof(path, lines[:2])
    result, table = both_engines(tmp_path, [path], ordered=False)
    assert "late" in result.schema.names
    assert table.num_rows == len(items)


def test_a_tag_the_sample_missed_fails_the_proof(tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_engine, "SAMPLE_LINES", 2)
    items = [dict(i) for i in ITEMS]
    items[35]["n"] = {"S": "seven"}  # a number column holding a string: rescued
    lines = [native_line(i) for i in items]
    path = _write(tmp_path, lines)
    assert not typed_proof(path, lines[:2])
    result, _ = both_engines(tmp_path, [path], ordered=False)
    assert result.rescued_counts == {"n": 1}


def test_a_value_that_does_not_fit_is_rescued_on_the_typed_path(tmp_path):
    items = [dict(i) for i in ITEMS]
    items[5]["n"] = {"S": "seven"}  # seen by the sample: declared, proven, rescued
    lines = [native_line(i) for i in items]
    path = _write(tmp_path, lines)
    assert typed_proof(path, lines)
    result, _ = both_engines(tmp_path, [path])
    assert result.rescued_counts == {"n": 1}


@pytest.mark.parametrize(
    "bad",
    [
        b'{"Item":{"id":{"S":12}}}',  # a number where a string must be (DuckDB would read "12")
        b'{"Item":{"id":{"S":"x"},"ok":{"BOOL":"true"}}}',  # a string where a boolean must be
        b'{"Item":{"id":{"S":"x"},"n":{"N":"12abc"}}}',  # not a number
        b'{"Item":{"id":{"S":"x"},"gone":{"NULL":false}}}',
        b'{"Item":{"id":{"S":"x"},"tags":{"SS":["a",1]}}}',
    ],
)
def test_a_payload_of_the_wrong_type_fails_the_proof_and_is_a_bad_line(tmp_path, bad):
    lines = [native_line(i) for i in ITEMS[:10]] + [bad] + [native_line(i) for i in ITEMS[10:]]
    path = _write(tmp_path, lines)
    assert not typed_proof(path, lines[:10])
    with pytest.raises(ExportLineError) as fast:
        convert_export_to_parquet([path], LOCAL, str(tmp_path / "out"), LOCAL, table_name="T")
    with pytest.raises(ExportLineError) as ref:
        convert_export_to_parquet(
            [path], LOCAL, str(tmp_path / "ref"), LOCAL, table_name="T", options=ConversionOptions(engine="python")
        )
    assert fast.value.line == ref.value.line == 11


@pytest.mark.parametrize(
    "line",
    [
        b'{"Item":{"id":{"S":"caf\\u00e9 \\/ \\u0041"}}}',  # escapes DuckDB writes back shorter
        b'{"Item": {"id": {"S": "spaced"}}}',  # spaces
        b'{"Item":{"id":{"S":"x"},"id2":null}}',  # a JSON null
        b'{"Item":{"id":{"S":"x"}},"Other":1}',  # a key beside the item
    ],
)
def test_lines_written_longer_fail_the_proof_and_convert_as_the_reference(tmp_path, line):
    lines = [native_line({"id": {"S": f"r{i}"}}) for i in range(20)] + [line]
    path = _write(tmp_path, lines)
    assert not typed_proof(path, lines[:20])
    if b"null" in line or b"Other" in line:  # not items: both engines name the line
        with pytest.raises(ExportLineError):
            convert_export_to_parquet([path], LOCAL, str(tmp_path / "out"), LOCAL, table_name="T")
        return
    both_engines(tmp_path, [path])


@pytest.fixture
def no_exact_path(monkeypatch):
    """Fail if any file takes the exact path: the typed read must convert them all."""

    def refuse(*args, **kwargs):
        raise AssertionError("a file took the exact path")

    monkeypatch.setattr(duckdb_engine._WindowScan, "run_per_file", refuse)
    monkeypatch.setattr(duckdb_engine._WindowScan, "run", refuse)


def test_names_equal_but_for_case_are_converted_per_item_on_the_typed_path(tmp_path, no_exact_path):
    items = [{"Name": {"S": f"n{i}"}} for i in range(200)]
    items[3]["name"] = {"S": "lower"}  # DuckDB matches keys case-sensitively: dropped, so unproven
    items[7] = {"name": {"S": "only lower"}}  # the same length as "Name": unproven all the same
    lines = [native_line(i) for i in items]
    path = _write(tmp_path, lines)
    assert not typed_proof(path, lines)
    result, table = both_engines(tmp_path, [path], ordered=False)
    assert len(result.schema) == 3  # Name, name (renamed) and _rescued_data
    (lower,) = [f.name for f in result.schema if f.metadata[b"original_name"] == b"name"]
    assert sorted(v for v in table.column(lower).to_pylist() if v) == ["lower", "only lower"]


def test_rows_the_sample_missed_stay_on_the_typed_path(tmp_path, monkeypatch, no_exact_path):
    monkeypatch.setattr(duckdb_engine, "SAMPLE_LINES", 2)
    items = [dict(i) for i in ITEMS * 5]
    items[150] = dict(items[150], late={"N": "5"})
    lines = [native_line(i) for i in items]
    path = _write(tmp_path, lines)
    result, table = both_engines(tmp_path, [path], ordered=False)
    assert table.column("late").drop_null().to_pylist() == [5]


def test_a_last_line_without_newline_is_proven(tmp_path, no_exact_path):
    lines = [native_line(i) for i in ITEMS]
    path = tmp_path / "data.json"
    path.write_bytes(b"\n".join(lines))
    assert typed_proof(str(path), lines)
    _, table = both_engines(tmp_path, [str(path)])
    assert table.num_rows == len(ITEMS)


@pytest.mark.parametrize(
    "layout",
    ["blank line", "leading spaces", "crlf"],
)
def test_lines_not_one_object_each_take_the_exact_path(tmp_path, layout):
    lines = [native_line(i) for i in ITEMS * 5]
    if layout == "blank line":
        data = b"\n".join(lines[:50]) + b"\n\n" + b"\n".join(lines[50:]) + b"\n"
    elif layout == "leading spaces":
        data = b"\n".join(lines[:50]) + b"\n  " + b"\n".join(lines[50:]) + b"\n"
    else:  # every row unproven: more than the typed read converts per item
        data = b"".join(line + b"\r\n" for line in lines)
    path = tmp_path / "data.json"
    path.write_bytes(data)
    assert not typed_proof(str(path), lines)
    _, table = both_engines(tmp_path, [str(path)])
    assert table.num_rows == len(lines)


def test_proven_and_unproven_files_keep_the_order_of_the_files(tmp_path):
    clean = [native_line(i) for i in ITEMS[:20]]
    escaped = [line.replace(b"caf\xc3\xa9", b"caf\\u00e9") for line in clean]  # written longer: not proven
    assert escaped != clean
    paths = [
        _write(tmp_path, clean, "a.json.gz"),
        _write(tmp_path, escaped, "b.json.gz"),
        _write(tmp_path, clean, "c.json.gz"),
    ]
    assert typed_proof(paths[0], clean) and not typed_proof(paths[1], clean)
    _, table = both_engines(tmp_path, paths)
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(20)] * 3


@pytest.fixture()
def held_on_disk(monkeypatch):
    """Every typed batch waits for its file's proof on disk (``HOLD_BYTES`` of 1); records, for
    each file's held batches when discarded, whether they were on disk, and asserts they are gone."""
    monkeypatch.setattr(duckdb_engine, "HOLD_BYTES", 1)
    monkeypatch.setattr(duckdb_engine, "TYPED_BATCH_ROWS", 7)
    seen = []
    discard = duckdb_engine._HeldBatches.discard

    def recording_discard(self):
        seen.append((self.spilled, self.path is not None and os.path.exists(self.path)))
        discard(self)
        assert self.path is None or not os.path.exists(self.path)

    monkeypatch.setattr(duckdb_engine._HeldBatches, "discard", recording_discard)
    return seen


def test_batches_held_on_disk_are_written_in_order(tmp_path, no_exact_path, held_on_disk):
    lines = [native_line(i) for i in ITEMS]
    paths = [_write(tmp_path, lines[:25], "a.json.gz"), _write(tmp_path, lines[25:], "b.json.gz")]
    _, table = both_engines(tmp_path, paths)
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(40)]
    assert held_on_disk == [(True, True), (True, True)]


def test_a_file_failing_after_its_batches_went_to_disk_leaves_nothing_behind(tmp_path, held_on_disk):
    lines = [native_line(i) for i in ITEMS]
    lines[30] = lines[30].replace(b'"n":{"N":"210"}', b'"n":{"N":210}')  # a number payload not a string
    assert b'"N":210}' in lines[30]
    path = _write(tmp_path, lines)
    with pytest.raises(ExportLineError, match="line 31"):
        convert_export_to_parquet([path], LOCAL, str(tmp_path / "out"), LOCAL, table_name="T")
    assert (True, True) in held_on_disk  # the first batches had gone to disk, then were removed
    assert not list((tmp_path / "out").rglob("*.parquet"))
