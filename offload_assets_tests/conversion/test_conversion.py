"""Conversion cases a user checks: types, names, rescue, schema evolution, bad input, files."""

from __future__ import annotations

import gzip
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from offload_assets.conversion import (
    ORIGINAL_NAME_KEY,
    ConversionOptions,
    ExportLineError,
    convert_export_to_parquet,
)

from .dynamodb_values import boto3_view, canonical_json, native_line, read_back, write_lines

LOCAL = pafs.LocalFileSystem()
ENGINES = ["python", "duckdb"]

# The two items of the AWS blog post this project improves on.
BLOG_ITEMS = [
    {
        "Id": {"N": "101"},
        "Title": {"S": "Book 101 Title"},
        "ISBN": {"S": "111-1111111111"},
        "Authors": {"L": [{"S": "Author1"}]},
        "Price": {"N": "2"},
        "Dimensions": {"S": "8.5 x 11.0 x 0.5"},
        "PageCount": {"N": "500"},
        "InPublication": {"BOOL": True},
        "ProductCategory": {"S": "Book"},
    },
    {
        "Id": {"N": "103"},
        "Title": {"S": "Book 103 Title"},
        "ISBN": {"S": "333-3333333333"},
        "Authors": {"L": [{"S": "Author1"}, {"S": "Author2"}]},
        "Price": {"N": "2000"},
        "Dimensions": {"S": "8.5 x 11.0 x 1.5"},
        "PageCount": {"N": "600"},
        "InPublication": {"BOOL": False},
        "ProductCategory": {"S": "Book"},
    },
]

EVERY_TYPE = {
    "pk": {"S": "all"},
    "price": {"N": "12345678901234567890.123456789012345678"},
    "count": {"N": "42"},
    "blob": {"B": "AAEC/w=="},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
    "tags": {"SS": ["a", "b"]},
    "scores": {"NS": ["1", "2.5"]},
    "blobs": {"BS": ["AA==", "AQ=="]},
    "details": {"M": {"S": {"S": "only key is S"}, "n": {"N": "1"}}},
    "tagged": {"M": {"S": {"S": "a map whose only key is S"}}},
    "mixed": {"L": [{"S": "x"}, {"N": "1"}, {"BOOL": False}]},
    "same": {"L": [{"N": "1"}, {"N": "2"}]},
}


def convert(tmp_path, lines, *, engine="python", name="data.json.gz", existing_schema=None, **options):
    path = tmp_path / name
    write_lines(path, lines, gzipped=name.endswith(".gz"))
    out = tmp_path / "out"
    result = convert_export_to_parquet(
        [str(path)],
        LOCAL,
        str(out),
        LOCAL,
        table_name="Books",
        existing_schema=existing_schema,
        options=ConversionOptions(engine=engine, **options),
    )
    return result, out


@pytest.mark.parametrize("engine", ENGINES)
def test_blog_items_convert_with_exact_types(tmp_path, engine):
    result, out = convert(tmp_path, [native_line(i) for i in BLOG_ITEMS], engine=engine)
    table = pq.read_table(out)
    assert result.rows == table.num_rows == 2
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("price").type == pa.int64()
    assert table.schema.field("authors").type.value_type == pa.string()
    assert table.column("title").to_pylist() == ["Book 101 Title", "Book 103 Title"]
    assert result.renamed_columns["ProductCategory"] == "productcategory"
    assert result.rescued_counts == {}
    assert [canonical_json(r) for r in read_back(out)] == [canonical_json(boto3_view(i)) for i in BLOG_ITEMS]


@pytest.mark.parametrize("engine", ENGINES)
def test_every_type_round_trips(tmp_path, engine):
    result, out = convert(tmp_path, [native_line(EVERY_TYPE)], engine=engine)
    schema = result.schema
    assert schema.field("price").type == pa.decimal128(38, 18)
    assert pq.read_table(out).column("price").to_pylist() == [Decimal("12345678901234567890.123456789012345678")]
    assert schema.field("count").type == pa.int64()
    assert schema.field("blob").type == pa.binary()
    assert schema.field("flag").type == pa.bool_()
    assert schema.field("tags").type.value_type == pa.string()
    assert schema.field("blobs").type.value_type == pa.binary()
    assert schema.field("details").type == pa.struct([("n", pa.int64()), ("s", pa.string())])
    assert schema.field("tagged").type == pa.struct([("s", pa.string())])
    assert schema.field("mixed").type.value_type == pa.string()
    assert schema.field("same").type.value_type == pa.int64()
    assert all(ORIGINAL_NAME_KEY in f.metadata for f in schema)
    assert read_back(out) == [boto3_view(EVERY_TYPE)]
    table = pq.read_table(out)
    assert table.column("blob").to_pylist() == [b"\x00\x01\x02\xff"]
    assert table.column("mixed").to_pylist() == [['{"S":"x"}', '{"N":"1"}', '{"BOOL":false}']]


@pytest.mark.parametrize("engine", ENGINES)
def test_type_mix_up_keeps_majority_type_and_rescues_the_rest(tmp_path, engine):
    items = [{"id": {"S": str(i)}, "rating": {"N": str(i % 5)}} for i in range(9)]
    items.append({"id": {"S": "odd"}, "rating": {"S": "five stars"}})
    result, out = convert(tmp_path, [native_line(i) for i in items], engine=engine)
    assert result.schema.field("rating").type == pa.int64()
    assert result.rescued_counts == {"rating": 1}
    table = pq.read_table(out).to_pylist()
    odd = next(r for r in table if r["id"] == "odd")
    assert odd["rating"] is None
    assert orjson.loads(odd["_rescued_data"]) == {"rating": {"S": "five stars"}}
    assert sorted(map(canonical_json, read_back(out))) == sorted(canonical_json(boto3_view(i)) for i in items)


@pytest.mark.parametrize("engine", ENGINES)
def test_numbers_beyond_decimal_are_rescued_not_rounded(tmp_path, engine):
    numbers = ["1.5", "2.25", "-3", "1E+100", "0.000000000000000000000000000000000000001"]
    items = [{"n": {"N": n}} for n in numbers]
    result, out = convert(tmp_path, [native_line(i) for i in items], engine=engine)
    assert result.schema.field("n").type == pa.decimal128(38, 2)
    assert result.rescued_counts == {"n": 2}
    assert sorted(map(canonical_json, read_back(out))) == sorted(canonical_json(boto3_view(i)) for i in items)


@pytest.mark.parametrize("engine", ENGINES)
def test_colliding_names_are_resolved_deterministically(tmp_path, engine):
    items = [{"Author": {"S": "A"}, "author": {"S": "a"}, "e-mail": {"S": "x"}, "1st": {"N": "1"}}]
    result, out = convert(tmp_path, [native_line(i) for i in items], engine=engine)
    assert result.renamed_columns == {"Author": "author_2", "e-mail": "e_mail", "1st": "c_1st"}
    row = pq.read_table(out).to_pylist()[0]
    assert (row["author"], row["author_2"]) == ("a", "A")


@pytest.mark.parametrize("engine", ENGINES)
def test_second_partition_keeps_existing_types_and_adds_columns(tmp_path, engine):
    first, _ = convert(tmp_path, [native_line({"id": {"N": "1"}, "name": {"S": "x"}})], engine=engine)
    glue_schema = pa.schema([pa.field(f.name, f.type) for f in first.schema])  # no metadata
    items = [{"id": {"N": "1.5"}, "name": {"S": "y"}, "Added": {"BOOL": True}}]
    result, out = convert(
        tmp_path,
        [native_line(i) for i in items],
        engine=engine,
        name="second.json.gz",
        existing_schema=glue_schema,
    )
    assert result.schema.names == ["id", "name", "added", "_rescued_data"]  # _rescued_data stays last
    assert result.schema.field("id").type == pa.int64()
    assert result.rescued_counts == {"id": 1}
    assert read_back(out) == [boto3_view(items[0])]


@pytest.mark.parametrize("engine", ENGINES)
def test_large_maps_become_json(tmp_path, engine):
    item = {"wide": {"M": {f"k{i}": {"N": str(i)} for i in range(5)}}}
    result, out = convert(tmp_path, [native_line(item)], engine=engine, max_map_keys=3)
    assert result.schema.field("wide").type == pa.string()
    assert read_back(out) == [boto3_view(item)]


@pytest.mark.parametrize("engine", ENGINES)
def test_data_pipeline_lines(tmp_path, engine):
    line = orjson.dumps(
        {
            "id": {"s": "1"},
            "n": {"n": "5"},
            "m": {"m": {"s": {"s": "x"}}},
            "sset": {"sS": ["a"]},
            "nset": {"ns": ["1"]},
            "flag": {"bOOL": True},
            "nul": {"nULLValue": True},
            "l": {"l": [{"b": "AA=="}]},
            "b2": {"bool": False},
        }
    )
    result, out = convert(tmp_path, [line], engine=engine)
    row = pq.read_table(out).to_pylist()[0]
    assert row["m"] == {"s": "x"}
    assert row["sset"] == ["a"] and row["nset"] == [1] and row["l"] == [b"\x00"]
    assert row["flag"] is True and row["b2"] is False and row["n"] == 5


BAD_LINES = {
    "not json": b'{"Item": {"id": {"S": "x"}',
    "not an item": b'{"Item": {"id": "plain"}}',
    "unknown tag": b'{"Item": {"id": {"X": "1"}}}',
    "bad number": b'{"Item": {"id": {"N": "one"}}}',
    "two tags": b'{"Item": {"id": {"S": "a", "N": "1"}}}',
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bad", list(BAD_LINES))
def test_bad_line_fails_with_file_and_line_and_publishes_nothing(tmp_path, engine, bad):
    lines = [native_line({"id": {"S": str(i)}}) for i in range(5)]
    lines.insert(3, BAD_LINES[bad])
    with pytest.raises(ExportLineError) as info:
        convert(tmp_path, lines, engine=engine)
    assert (info.value.table, info.value.line) == ("Books", 4)
    assert info.value.file.endswith("data.json.gz")
    assert "Books" in str(info.value) and "line 4" in str(info.value)
    assert not list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("engine", ENGINES)
def test_quarantine_sets_bad_lines_aside(tmp_path, engine):
    lines = [native_line({"id": {"S": str(i)}}) for i in range(5)]
    lines.insert(1, b"garbage")
    lines.insert(4, b'{"Item": {"id": {"N": "x"}}}')
    result, out = convert(tmp_path, lines, engine=engine, bad_lines="quarantine")
    assert result.rows == 5 and result.quarantined_lines == 2
    (qfile,) = result.quarantine_files
    records = [orjson.loads(x) for x in open(qfile, "rb")]
    assert [r["line"] for r in records] == [2, 5]
    assert records[0]["text"] == "garbage"


@pytest.mark.parametrize("engine", ENGINES)
def test_corrupt_gzip_fails_with_line_number(tmp_path, engine):
    path = tmp_path / "data.json.gz"
    data = gzip.compress(b"".join(native_line({"id": {"S": str(i)}}) + b"\n" for i in range(2000)))
    path.write_bytes(data[: len(data) // 2])  # truncated member
    with pytest.raises(ExportLineError) as info:
        convert_export_to_parquet(
            [str(path)],
            LOCAL,
            str(tmp_path / "out"),
            LOCAL,
            table_name="Books",
            options=ConversionOptions(engine=engine),
        )
    assert info.value.line > 1 and "decompress" in info.value.reason
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize("engine", ENGINES)
def test_output_is_split_by_target_size_and_rerun_replaces(tmp_path, engine):
    items = [{"id": {"S": f"{i:06d}"}, "text": {"S": f"review number {i} " * 20}} for i in range(6000)]
    options = dict(target_file_bytes=50_000, row_group_rows=1000, compression="snappy")
    result, out = convert(tmp_path, [native_line(i) for i in items], engine=engine, **options)
    assert len(result.files) > 2
    assert sum(f.rows for f in result.files) == 6000 == pq.read_table(out).num_rows
    assert all(f.path.rsplit("/", 1)[-1] == f"part-{n:05d}.parquet" for n, f in enumerate(result.files))
    again, _ = convert(tmp_path, [native_line(i) for i in items[:10]], engine=engine)
    assert len(again.files) == 1 and pq.read_table(out).num_rows == 10


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_export_writes_schema_only_file(tmp_path, engine):
    result, out = convert(tmp_path, [], engine=engine)
    assert result.rows == 0 and len(result.files) == 1
    assert result.schema.names == ["_rescued_data"]


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_rerun_leaves_the_previous_output_untouched(tmp_path, engine):
    good = [native_line({"id": {"S": str(i)}}) for i in range(5)]
    first, out = convert(tmp_path, good, engine=engine)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ExportLineError):
        convert(tmp_path, good + [b"not json"], engine=engine)
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and list(before) == ["part-00000.parquet"]
    assert [p.name for p in out.iterdir()] == ["part-00000.parquet"]  # no staging left behind
