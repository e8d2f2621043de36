"""Local PySpark vs the in-process converter on the same export: identical schema, rows and rescued values."""

from __future__ import annotations

import gzip

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from offload_assets.conversion import RESCUED_COLUMN, ConversionOptions, convert_export_to_parquet
from offload_assets.spark.spark_conversion import FilesystemSpec, convert_export_on_spark
from offload_assets_tests.spark.export_generator import write_export

ITEMS = 100_000


def read_sorted(directory: str):
    table = ds.dataset(directory, format="parquet").to_table()
    return table.sort_by("pk"), pq.read_schema(
        sorted(str(p) for p in __import__("pathlib").Path(directory).glob("part-*.parquet"))[0]
    )


def test_spark_output_equals_in_process_output_on_100k_items(spark, tmp_path):
    files = [str(p) for p in write_export(tmp_path / "export", ITEMS, files=4)]
    fs = pafs.LocalFileSystem()
    local = convert_export_to_parquet(files, fs, str(tmp_path / "local"), fs, table_name="Reviews")
    on_spark = convert_export_on_spark(
        spark, files, FilesystemSpec("local"), str(tmp_path / "spark"), table_name="Reviews"
    )

    assert on_spark.rows == local.rows == ITEMS
    assert on_spark.schema.equals(local.schema, check_metadata=True)
    assert on_spark.rescued_counts == local.rescued_counts
    assert set(local.rescued_counts) >= {"rating", "ledger", "product"}  # the mix-ups were really rescued
    assert on_spark.renamed_columns == local.renamed_columns and local.renamed_columns  # the case collision

    local_table, local_file_schema = read_sorted(str(tmp_path / "local"))
    spark_table, spark_file_schema = read_sorted(str(tmp_path / "spark"))
    assert spark_file_schema.equals(local_file_schema, check_metadata=True)
    assert spark_table.num_rows == ITEMS and pc.count_distinct(spark_table["pk"]).as_py() == ITEMS
    assert spark_table.equals(local_table)
    assert (
        spark_table.filter(pc.is_valid(spark_table[RESCUED_COLUMN])).num_rows
        == local_table.filter(pc.is_valid(local_table[RESCUED_COLUMN])).num_rows
        > 0
    )
    kinds = {f.name: str(f.type) for f in spark_table.schema}
    assert kinds["thumb"] == "binary" and kinds["hashes"] == "list<element: binary>"
    assert kinds["ledger"].startswith("decimal128(38") and kinds["moderation"] == "string"


def test_spark_keeps_the_catalog_schema_and_an_empty_export_gets_a_file(spark, tmp_path):
    files = [str(p) for p in write_export(tmp_path / "export", 400, files=2)]
    fs = pafs.LocalFileSystem()
    first = convert_export_to_parquet(files, fs, str(tmp_path / "first"), fs, table_name="Reviews")
    existing = first.schema.remove(first.schema.get_field_index("title")).insert(0, first.schema.field("title"))
    local = convert_export_to_parquet(
        files,
        fs,
        str(tmp_path / "local"),
        fs,
        table_name="Reviews",
        existing_schema=existing,
        options=ConversionOptions(compression="snappy"),
    )
    on_spark = convert_export_on_spark(
        spark,
        files,
        FilesystemSpec("local"),
        str(tmp_path / "spark"),
        table_name="Reviews",
        existing_schema=existing,
        options=ConversionOptions(compression="snappy"),
    )
    assert on_spark.schema.names[0] == "title" and on_spark.schema.equals(local.schema, check_metadata=True)
    assert pq.ParquetFile(on_spark.files[0].path).metadata.row_group(0).column(0).compression == "SNAPPY"

    empty = tmp_path / "empty.json.gz"
    empty.write_bytes(gzip.compress(b""))
    result = convert_export_on_spark(
        spark, [str(empty)], FilesystemSpec("local"), str(tmp_path / "none"), table_name="Reviews"
    )
    assert result.rows == 0 and len(result.files) == 1 and pq.read_table(result.files[0].path).num_rows == 0


def test_a_bad_line_fails_naming_table_file_and_line_and_leaves_no_parquet(spark, tmp_path):
    files = [str(p) for p in write_export(tmp_path / "export", 300, files=2)]
    bad = tmp_path / "export" / "part-bad.json.gz"
    bad.write_bytes(gzip.compress(b'{"Item": {"pk": {"S": "ok"}}}\n{"Item": {"pk": \n'))
    with pytest.raises(Exception, match=r"table 'Reviews'.*part-bad\.json\.gz, line 2"):
        convert_export_on_spark(
            spark, [*files, str(bad)], FilesystemSpec("local"), str(tmp_path / "out"), table_name="Reviews"
        )
    assert not list((tmp_path / "out").glob("*.parquet")) if (tmp_path / "out").exists() else True


def test_a_file_changed_after_the_export_fails_naming_file_and_checksums_and_leaves_no_parquet(spark, tmp_path):
    """The Spark job checks each data file's md5Checksum (from manifest-files.json) while it reads it."""
    from offload_assets.conversion import ExpectedDataFile
    from offload_assets.export.layout import file_md5_base64

    fs = pafs.LocalFileSystem()
    files = [str(p) for p in write_export(tmp_path / "export", 300, files=2)]
    expected = {p: ExpectedDataFile(file_md5_base64(fs, p), 150) for p in files}
    lines = gzip.decompress(open(files[1], "rb").read()).split(b"\n")
    lines[3] = lines[3].replace(b'"item#', b'"ITEM#', 1)  # same line count, one value altered
    open(files[1], "wb").write(gzip.compress(b"\n".join(lines), mtime=0))
    actual = file_md5_base64(fs, files[1])

    out = tmp_path / "out"
    with pytest.raises(Exception) as raised:
        convert_export_on_spark(
            spark, files, FilesystemSpec("local"), str(out), table_name="Reviews", expected_files=expected
        )
    message = str(raised.value)
    assert "table 'Reviews'" in message and "part-1.json.gz" in message and "md5Checksum" in message
    assert expected[files[1]].md5_checksum in message and actual in message
    assert not out.exists() or not list(out.glob("*.parquet"))


def test_spark_puts_the_key_attributes_first(spark, tmp_path):
    files = [str(p) for p in write_export(tmp_path / "export", 200, files=2)]
    result = convert_export_on_spark(
        spark,
        files,
        FilesystemSpec("local"),
        str(tmp_path / "out"),
        table_name="Reviews",
        options=ConversionOptions(key_attributes=("pk", "Title")),
    )
    assert result.schema.names[:2] == ["pk", "title"] and result.schema.names[-1] == RESCUED_COLUMN
    for f in result.files:
        assert pq.read_schema(f.path).names == result.schema.names
