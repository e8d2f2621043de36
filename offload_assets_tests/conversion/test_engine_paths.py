"""The vectorised engine's less common paths: a sample that misses attributes or types, rows
that need the per-item path, and the vectorised helpers against the reference."""

from __future__ import annotations

import tempfile
from decimal import Decimal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.conversion import ConversionOptions, convert_export_to_parquet, duckdb_engine
from offload_assets.conversion.arrow_values import base64_decode, number_codes
from offload_assets.conversion.value_stats import number_shape

from .dynamodb_values import b64, boto3_view, canonical_json, items, native_line, number_texts, read_back, write_lines

LOCAL = pafs.LocalFileSystem()


@pytest.fixture
def tiny_sample(monkeypatch):
    monkeypatch.setattr(duckdb_engine, "SAMPLE_LINES", 3)


def convert(tmp_path, lines, **options):
    path = tmp_path / "data.json.gz"
    write_lines(path, lines)
    result = convert_export_to_parquet(
        [str(path)],
        LOCAL,
        str(tmp_path / "out"),
        LOCAL,
        table_name="T",
        options=ConversionOptions(**options),
    )
    return result, tmp_path / "out"


def test_attribute_missed_by_the_sample_gets_its_column(tmp_path, tiny_sample):
    items_ = [{"id": {"S": str(i)}, "n": {"N": str(i)}} for i in range(50)]
    items_[40]["late"] = {"M": {"x": {"BS": [b64(b"\x01")]}}}
    result, out = convert(tmp_path, [native_line(i) for i in items_], row_group_rows=10)
    assert "late" in result.schema.names
    table = pq.read_table(out)
    assert table.num_rows == 50 and table.schema == result.schema
    assert sorted(map(canonical_json, read_back(out))) == sorted(canonical_json(boto3_view(i)) for i in items_)
    assert [f.path.rsplit("/", 1)[-1] for f in result.files] == [
        f"part-{i:05d}.parquet" for i in range(len(result.files))
    ]
    assert not [p for p in out.rglob("*") if "_rewrite" in str(p)]


def test_type_change_after_the_sample_converts_again(tmp_path, tiny_sample):
    items_ = [{"id": {"S": str(i)}, "n": {"N": str(i)}} for i in range(30)]
    for i in range(10, 30):
        items_[i]["n"] = {"N": f"{i}.25"}
    result, out = convert(tmp_path, [native_line(i) for i in items_])
    assert result.schema.field("n").type == pa.decimal128(38, 2)
    assert result.rescued_counts == {}
    assert sorted(map(canonical_json, read_back(out))) == sorted(canonical_json(boto3_view(i)) for i in items_)


def test_non_canonical_numbers_take_the_per_item_path_exactly(tmp_path):
    numbers = ["1.50", "1E+2", "0.0", "+7", "007", "2.5e-1"]
    items_ = [{"n": {"N": n}} for n in numbers]
    result, out = convert(tmp_path, [native_line(i) for i in items_])
    assert result.schema.field("n").type == pa.decimal128(38, 2)
    values = sorted(pq.read_table(out).column("n").to_pylist())
    assert values == sorted(Decimal(n) for n in numbers)


@given(st.lists(items, min_size=1, max_size=15))
@settings(max_examples=60)
def test_round_trip_with_a_tiny_sample(batch):
    original = duckdb_engine.SAMPLE_LINES
    duckdb_engine.SAMPLE_LINES = 1
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/data.json.gz"
            write_lines(path, [native_line(i) for i in batch])
            result = convert_export_to_parquet(
                [path], LOCAL, f"{tmp}/out", LOCAL, table_name="T", options=ConversionOptions(max_map_keys=4)
            )
            reference = convert_export_to_parquet(
                [path],
                LOCAL,
                f"{tmp}/ref",
                LOCAL,
                table_name="T",
                options=ConversionOptions(engine="python", max_map_keys=4),
            )
            assert result.schema == reference.schema
            assert result.rescued_counts == reference.rescued_counts
            assert sorted(map(canonical_json, read_back(f"{tmp}/out"))) == sorted(
                canonical_json(boto3_view(i)) for i in batch
            )
    finally:
        duckdb_engine.SAMPLE_LINES = original


@given(st.lists(st.one_of(number_texts(), st.text("0123456789.-+eE", max_size=6)), max_size=30))
@settings(max_examples=200)
def test_vectorised_number_codes_match_the_reference(texts):
    codes = number_codes(pa.array(texts, pa.string())).to_pylist()
    for text, code in zip(texts, codes):
        if code == -1:
            continue  # not canonical: the per-item path decides
        shape = number_shape(text)
        assert code == (shape.int_digits * 512 + shape.frac_digits) * 2 + shape.fits_int64


@given(st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=20))
@settings(max_examples=100)
def test_vectorised_base64_decode(values):
    texts = [None if v is None else b64(v) for v in values]
    decoded, ok = base64_decode(pa.array(texts, pa.string()))
    assert decoded.to_pylist() == values and all(ok.to_pylist())


def test_spaced_json_and_escaped_strings_are_converted_exactly(tmp_path, tiny_sample):
    import json

    items_ = [
        {"id": {"S": f"{i}"}, "text": {"S": 'a "quoted"\\ line\nwith é and \u2603'}, "n": {"N": str(i)}}
        for i in range(20)
    ]
    items_[15]["extra"] = {"M": {"k": {"S": "x"}}}  # unseen by the sample
    lines = [json.dumps({"Item": i}).encode() for i in items_]  # ", " and ": " separators
    result, out = convert(tmp_path, lines)
    assert "extra" in result.schema.names
    assert sorted(map(canonical_json, read_back(out))) == sorted(canonical_json(boto3_view(i)) for i in items_)


def _oracle_covered(value: dict, node) -> bool:
    """Every key of a native value is declared by the read structure (JSON-read parts count)."""
    for tag, payload in value.items():
        if tag not in node.tags:
            return False
        if tag == "M" and node.fields:
            for k, v in payload.items():
                if k not in node.fields or not _oracle_covered(v, node.fields[k]):
                    return False
        if tag == "L" and node.element is not None:
            if not all(_oracle_covered(v, node.element) for v in payload):
                return False
    return True


@given(st.lists(items, min_size=2, max_size=10), st.integers(1, 3), st.booleans())
@settings(max_examples=150)
def test_coverage_never_passes_a_row_with_an_undeclared_key(batch, seen, spaced):
    import json

    import duckdb

    from offload_assets.conversion.arrow_coverage import covered_rows
    from offload_assets.conversion.arrow_values import clear_caches
    from offload_assets.conversion.duckdb_sql import ReadNode, build_query, read_fields
    from offload_assets.conversion.value_stats import ValueStats, add_item

    stats = ValueStats()
    for i in batch[:seen]:
        add_item(stats, i)
    root = ReadNode(tags=("M",), fields=read_fields(stats.fields))
    with tempfile.TemporaryDirectory() as tmp:
        lines = [json.dumps({"Item": i}).encode() if spaced else native_line(i) for i in batch]
        write_lines(f"{tmp}/d.json", lines, gzipped=False)
        table = (
            duckdb.connect()
            .sql(build_query(f"read_ndjson_objects(['{tmp}/d.json'], filename=true)", root))
            .to_arrow_table()
        )
    table = table.combine_chunks()
    item, raw = table.column("item").chunk(0), table.column("_raw").chunk(0)
    covered = covered_rows(item, raw, root).to_pylist()
    clear_caches()
    for _value, line, ok in zip(item.to_pylist(), raw.to_pylist(), covered):
        original = json.loads(line)["Item"]
        oracle = all(k in root.fields and _oracle_covered(v, root.fields[k]) for k, v in original.items())
        if ok:
            assert oracle, line
