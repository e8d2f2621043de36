"""What the converter proves about its input (issues #14 point 5, #15 points 2-3, #16 point 4).

* no silent drops: a truncated or garbage last line in one of 20 files is a bad line naming the
  table, file and line, on both engines (DuckDB's parallel scan alone once dropped it: N-1 rows);
* a data file whose bytes differ from its manifest's ``md5Checksum``, or whose line count differs
  from its ``itemCount``, fails naming table, file, expected and actual, and writes nothing;
* key attributes come first, ``_rescued_data`` last;
* the same export gives the same rows in the same order and the same bytes on every run.
"""

from __future__ import annotations

import gzip
import hashlib

import orjson
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from offload_assets.conversion import (
    ConversionOptions,
    DataFileMismatch,
    ExpectedDataFile,
    ExportLineError,
    convert_export_to_parquet,
)
from offload_assets.export.layout import file_md5_base64, md5_base64

LOCAL = pafs.LocalFileSystem()
ENGINES = ["duckdb", "python"]


def write_export(tmp_path, files=20, lines=200, broken=None):
    paths = []
    for i in range(files):
        body = b"".join(
            orjson.dumps({"Item": {"pk": {"S": f"{i}-{j}"}, "n": {"N": str(j)}, "Rating": {"N": "5"}}}) + b"\n"
            for j in range(lines)
        )
        if i == 7 and broken == "truncated":
            body = body.rstrip(b"\n")[:-1]  # the last record lacks its closing brace
        elif i == 7 and broken == "garbage":
            body += b"garbage\n"
        path = tmp_path / f"part-{i:02d}.json.gz"
        path.write_bytes(gzip.compress(body))
        paths.append(str(path))
    return paths


def convert(tmp_path, paths, engine, out="out", **kwargs):
    return convert_export_to_parquet(
        paths, LOCAL, str(tmp_path / out), LOCAL, table_name="T", options=ConversionOptions(engine=engine), **kwargs
    )


def written(tmp_path, out="out"):
    return [p for p in (tmp_path / out).rglob("*") if p.is_file()] if (tmp_path / out).exists() else []


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("broken,line", [("truncated", 200), ("garbage", 201)])
def test_a_broken_last_line_among_20_files_is_a_bad_line(tmp_path, engine, broken, line):
    paths = write_export(tmp_path, broken=broken)
    with pytest.raises(ExportLineError) as info:
        convert(tmp_path, paths, engine)
    assert (info.value.table, info.value.file, info.value.line) == ("T", paths[7], line)
    assert written(tmp_path) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_file_changed_after_the_export_fails_its_checksum(tmp_path, engine):
    paths = write_export(tmp_path, files=3)
    expected = {p: ExpectedDataFile(md5_checksum=file_md5_base64(LOCAL, p), item_count=200) for p in paths}
    assert convert(tmp_path, paths, engine, out="good", expected_files=expected).rows == 600
    # same line count, one value changed
    body = gzip.decompress(open(paths[1], "rb").read()).replace(b'"n":{"N":"7"}', b'"n":{"N":"8"}')
    open(paths[1], "wb").write(gzip.compress(body))
    with pytest.raises(DataFileMismatch) as info:
        convert(tmp_path, paths, engine, expected_files=expected)
    err = info.value
    assert (err.table, err.file, err.what) == ("T", paths[1], "md5Checksum")
    assert err.expected == expected[paths[1]].md5_checksum
    assert err.actual == md5_base64(open(paths[1], "rb").read()) != err.expected
    assert err.expected in str(err) and err.actual in str(err) and paths[1] in str(err)
    assert written(tmp_path) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_an_item_count_other_than_the_manifest_fails(tmp_path, engine):
    paths = write_export(tmp_path, files=2)
    expected = {paths[0]: ExpectedDataFile(item_count=201)}
    with pytest.raises(DataFileMismatch) as info:
        convert(tmp_path, paths, engine, expected_files=expected)
    assert (info.value.file, info.value.what, info.value.expected, info.value.actual) == (
        paths[0],
        "itemCount",
        201,
        200,
    )
    assert written(tmp_path) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_key_attributes_come_first_and_rescued_data_last(tmp_path, engine):
    path = tmp_path / "data.json"
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {"Item": {"Book": {"S": f"b{i}"}, "User": {"S": f"u{i}"}, "Age": {"N": "1"}, "Zed": {"S": "z"}}}
            )
            + b"\n"
            for i in range(5)
        )
    )
    result = convert_export_to_parquet(
        [str(path)],
        LOCAL,
        str(tmp_path / "out"),
        LOCAL,
        table_name="Reviews",
        options=ConversionOptions(engine=engine, key_attributes=("User", "Book")),
    )
    assert result.schema.names == ["user", "book", "age", "zed", "_rescued_data"]
    assert pq.read_schema(result.files[0].path).names == result.schema.names


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_export_gives_the_same_bytes_every_run(tmp_path, engine):
    paths = write_export(tmp_path, files=6, lines=3000)
    digests = []
    for run in range(3):
        result = convert(tmp_path, paths, engine, out=f"run{run}")
        digests.append([hashlib.sha256(open(f.path, "rb").read()).hexdigest() for f in result.files])
        rows = pq.read_table(result.files[0].path).column("pk").to_pylist()
        assert rows[:3] == ["0-0", "0-1", "0-2"] and rows[-1] == "5-2999"
    assert digests[0] == digests[1] == digests[2]


def test_both_engines_write_rescued_data_byte_identically(tmp_path):
    """A rescued map keeps one key order (and rescued attributes one order) whichever engine
    wrote it: the Parquet column ``_rescued_data`` holds the same text on both."""
    items = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "when": {"S": "2026"}} for i in range(50)]
    odd = {"M": {"zeta": {"N": "1"}, "Alpha": {"S": "x"}, "mid": {"L": [{"BOOL": True}, {"NULL": True}]}}}
    items[7] = {"when": {"N": "2026"}, "pk": {"S": "k7"}, "n": odd}  # two misfits, attributes out of order
    # the same keys in the other order: DuckDB reads both rows into one struct (one key order)
    items[9] = {"pk": {"S": "k9"}, "n": {"M": {"mid": {"L": []}, "Alpha": {"S": "2"}, "zeta": {"N": "3"}}}}
    path = tmp_path / "data.json"
    path.write_bytes(b"".join(orjson.dumps({"Item": item}) + b"\n" for item in items))
    texts = {}
    for engine in ENGINES:
        result = convert_export_to_parquet(
            [str(path)], LOCAL, str(tmp_path / engine), LOCAL, table_name="T", options=ConversionOptions(engine=engine)
        )
        assert result.rescued_counts == {"n": 2, "when": 1}
        texts[engine] = pq.read_table(result.files[0].path).column("_rescued_data").to_pylist()
    assert texts["duckdb"] == texts["python"]
    assert orjson.loads(texts["python"][7]) == {"n": odd, "when": {"N": "2026"}}
    assert texts["python"][9] == '{"n":{"M":{"Alpha":{"S":"2"},"mid":{"L":[]},"zeta":{"N":"3"}}}}'  # keys sorted


@pytest.mark.parametrize("engine", ENGINES)
def test_only_columns_whose_values_repeat_get_a_dictionary(tmp_path, engine):
    """Unique values (the key, free text) are written plain; repeating ones (a rating, a map's
    repeating field, a set's repeating elements) dictionary encoded: the file is smaller and
    cheaper to write, and reads back the same."""
    items = [
        {
            "pk": {"S": f"review-{i}"},
            "Rating": {"N": str(i % 5)},
            "Product": {"M": {"Brand": {"S": ["acme", "zeta"][i % 2]}, "Serial": {"S": f"s{i}"}}},
            "Tags": {"SS": ["a", "b"]},
        }
        for i in range(3000)
    ]
    path = tmp_path / "data.json"
    path.write_bytes(b"".join(orjson.dumps({"Item": item}) + b"\n" for item in items))
    result = convert_export_to_parquet(
        [str(path)], LOCAL, str(tmp_path / "out"), LOCAL, table_name="Reviews", options=ConversionOptions(engine=engine)
    )
    (written_file,) = result.files
    metadata = pq.ParquetFile(written_file.path).metadata
    encodings = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i).encodings
        for i in range(metadata.num_columns)
    }
    dictionary = {path for path, used in encodings.items() if "RLE_DICTIONARY" in used}
    assert dictionary == {"rating", "product.brand", "tags.list.element", "_rescued_data"}
    table = pq.read_table(written_file.path)
    assert table.num_rows == 3000
    assert table.column("pk").to_pylist()[2999] == "review-2999"
    assert table.column("product").to_pylist()[3] == {"brand": "zeta", "serial": "s3"}
