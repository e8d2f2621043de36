"""DuckDB reads Parquet through a pyarrow filesystem (``offload://``) with exact file row numbers, on many threads."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from offload_assets.iceberg.positions import duckdb_url, register_files


def test_row_numbers_are_exact_when_threads_share_a_file(tmp_path):
    rows = 120_000
    table = pa.table({"n": pa.array(range(rows), pa.int64()), "text": [f"review text {i} " * 4 for i in range(rows)]})
    paths = []
    for f in range(3):  # several files of several row groups: DuckDB's threads read one file at once
        path = str(tmp_path / f"part-{f}.parquet")
        pq.write_table(table, path, row_group_size=10_000, compression="zstd")
        paths.append(duckdb_url("file://" + path))
    with duckdb.connect() as con:
        con.execute("SET threads = 4")
        register_files(con, pafs.LocalFileSystem())
        for _ in range(3):
            wrong, total, distinct = con.sql(
                f"SELECT count(*) FILTER (WHERE n <> file_row_number), count(*), count(DISTINCT (filename, n)) "
                f"FROM read_parquet({paths}, filename=true, file_row_number=true)"
            ).fetchall()[0]
            assert (wrong, total, distinct) == (0, 3 * rows, 3 * rows)
