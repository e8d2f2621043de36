"""Export line readers (native, Data Pipeline, incremental) and column naming."""

from __future__ import annotations

import orjson
import pyarrow.fs as pafs
import pytest

from offload_assets.conversion import (
    ExportLineError,
    assign_column_names,
    detect_line_format,
    iter_export_items,
    iter_incremental_changes,
    read_incremental_change,
    safe_column_name,
)

from .dynamodb_values import write_lines

LOCAL = pafs.LocalFileSystem()


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("Author", "author"),
        ("e-mail", "e_mail"),
        ("1st", "c_1st"),
        ("Café", "cafe"),
        ("", "c_"),
        ("a.b c", "a_b_c"),
        ("x" * 300, "x" * 255),
    ],
)
def test_safe_column_name(name, safe):
    assert safe_column_name(name) == safe


def test_collisions_are_resolved_the_same_way_whatever_the_order():
    names = ["Author", "author", "AUTHOR", "_rescued_data"]
    first = assign_column_names(names, reserved=["_rescued_data"])
    assert first == {"author": "author", "AUTHOR": "author_2", "Author": "author_3", "_rescued_data": "_rescued_data_2"}
    assert assign_column_names(list(reversed(names)), reserved=["_rescued_data"]) == first


def test_existing_columns_keep_their_attribute():
    # a previous partition had only "Author" (column "author"); now "author" appears too
    taken = {"author": "Author"}
    assert assign_column_names(["author", "Author"], taken) == {"Author": "author", "author": "author_2"}
    # without metadata the exact name claims the column
    assert assign_column_names(["Author", "author"], {"author": None}) == {"author": "author", "Author": "author_2"}


def test_line_formats_are_detected():
    assert detect_line_format({"Item": {"a": {"S": "x"}}}) == "native"
    assert detect_line_format({"a": {"s": "x"}}) == "data_pipeline"
    assert detect_line_format({"Item": {"s": "x"}}) == "data_pipeline"  # an attribute named Item
    assert detect_line_format({"Keys": {"id": {"S": "1"}}, "NewImage": {}}) == "incremental"


def test_iter_export_items_reads_both_formats(tmp_path):
    native = tmp_path / "a.json.gz"
    write_lines(native, [orjson.dumps({"Item": {"id": {"S": "1"}, "m": {"M": {"S": {"S": "x"}}}}})])
    pipeline = tmp_path / "b.json"
    write_lines(
        pipeline, [orjson.dumps({"id": {"s": "2"}, "tags": {"sS": ["a"]}, "ok": {"bOOL": True}})], gzipped=False
    )
    items = [e.item for e in iter_export_items([str(native), str(pipeline)], LOCAL, table_name="T")]
    assert items == [
        {"id": {"S": "1"}, "m": {"M": {"S": {"S": "x"}}}},
        {"id": {"S": "2"}, "tags": {"SS": ["a"]}, "ok": {"BOOL": True}},
    ]


def test_incremental_lines_are_classified(tmp_path):
    lines = [
        {
            "Metadata": {"WriteTimestampMicros": 1700000000000001},
            "Keys": {"id": {"S": "1"}},
            "NewImage": {"id": {"S": "1"}, "n": {"N": "5"}},
        },
        {
            "Metadata": {"WriteTimestampMicros": 1700000000000002},
            "Keys": {"id": {"S": "2"}},
            "OldImage": {"id": {"S": "2"}},
        },
    ]
    path = tmp_path / "inc.json.gz"
    write_lines(path, [orjson.dumps(x) for x in lines])
    put, delete = list(iter_incremental_changes([str(path)], LOCAL, table_name="T"))
    assert (put.kind, put.keys, put.new_image["n"], put.write_timestamp_micros) == (
        "put",
        {"id": {"S": "1"}},
        {"N": "5"},
        1700000000000001,
    )
    assert (delete.kind, delete.new_image, delete.old_image) == ("delete", None, {"id": {"S": "2"}})
    with pytest.raises(ValueError):
        read_incremental_change({"Item": {"id": {"S": "1"}}})


def test_incremental_lines_are_refused_by_the_converter_reader(tmp_path):
    path = tmp_path / "inc.json.gz"
    write_lines(path, [orjson.dumps({"Keys": {"id": {"S": "1"}}, "NewImage": {"id": {"S": "1"}}})])
    with pytest.raises(ExportLineError, match="incremental"):
        list(iter_export_items([str(path)], LOCAL, table_name="T"))


def test_type_mapping_markdown_matches_the_file():
    from pathlib import Path

    import offload_assets.conversion as conversion

    text = conversion.type_mapping_markdown()
    assert text == (Path(conversion.__file__).with_name("TYPE_MAPPING.md")).read_text()
    # The README shows the same text (users read it there).
    readme = (Path(conversion.__file__).parents[2] / "README.md").read_text()
    assert text.strip() in readme
    assert "| `N` | `decimal128(38, s)`" in text and "_rescued_data" in text
