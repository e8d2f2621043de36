"""Where the converter's time goes, stage by stage (CPU seconds, one thread each, no overlap).

    python benchmarks/profile_stages.py --items 200000

Runs the DuckDB engine's steps one after the other on the cached benchmark export (see
``run_benchmark.py``): sample + plan, DuckDB's read (decompress + split + ``json_transform`` +
Arrow export, with and without the raw line text, and the typed ``read_ndjson(records=true,
columns=...)`` read for comparison), the engine's typed read and its per-row proof, the
coverage check, validity, statistics + conversion (rescue included), and the Parquet write.
Prints CPU seconds per stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _cpu() -> float:
    return time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=HERE / "out")
    args = parser.parse_args()

    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs

    from offload_assets.conversion import ConversionOptions
    from offload_assets.conversion.arrow_convert import BatchConverter
    from offload_assets.conversion.arrow_coverage import covered_rows
    from offload_assets.conversion.duckdb_engine import _sample_plan
    from offload_assets.conversion.duckdb_input import describe
    from offload_assets.conversion.duckdb_sql import build_query, item_structure, sql_string
    from offload_assets.conversion.parquet_output import ParquetPartsWriter
    from offload_assets.conversion.typed_read import typed_query, typed_values

    files = json.loads((args.work / f"reviews-{args.items}" / "manifest.json").read_text())["files"]
    fs = pafs.LocalFileSystem()
    options = ConversionOptions()
    stages: dict[str, float] = {}

    def stage(name: str, started: float) -> None:
        stages[name] = stages.get(name, 0.0) + _cpu() - started

    t = _cpu()
    inputs = [describe(fs, p, i, "native", None) for i, p in enumerate(files)]
    plan, root = _sample_plan(fs, inputs, "Reviews", None, options)
    stage("sample + plan", t)

    con = duckdb.connect(config={"threads": 1, "preserve_insertion_order": True})
    source = f"read_ndjson_objects({files!r}, filename=true, compression='gzip')"
    batches = []
    t = _cpu()
    for b in con.sql(build_query(source, root, files)).to_arrow_reader(16 * 1024):
        batches.append(b)
    stage("read: gunzip + split + json_transform + Arrow (with raw text)", t)
    t = _cpu()
    query = build_query(source, root, files).replace("json::VARCHAR AS _raw,", "")
    for _ in con.sql(query).to_arrow_reader(16 * 1024):
        pass
    stage("read: the same without raw text", t)
    columns = "{'Item': " + sql_string(duckdb_type(item_structure(root)["Item"])) + "}"
    t = _cpu()
    typed = f"SELECT Item FROM read_ndjson({files!r}, records=true, columns={columns}, compression='gzip')"
    for _ in con.sql(typed).to_arrow_reader(16 * 1024):
        pass
    stage("read: read_ndjson(records=true, columns=...) (comparison)", t)
    t = _cpu()
    typed_batches = list(con.sql(typed_query(files, True, root)).to_arrow_reader(16 * 1024))
    stage("typed read: read_ndjson(records=true), scalars as JSON (the engine's)", t)
    t = _cpu()
    typed_items = [typed_values(b.column("item"), root) for b in typed_batches]
    stage("typed read: unquote payloads + JSON types + sizes (per-row proof)", t)
    del typed_batches, typed_items
    t = _cpu()
    for _ in con.sql(f"SELECT count(*) FROM read_ndjson_objects({files!r}, compression='gzip')").fetchall():
        pass
    stage("read: gunzip + split only (read_ndjson_objects, count)", t)

    converter = BatchConverter(plan, root, with_stats=True)
    oks = []
    t = _cpu()
    covers = [covered_rows(b.column("item"), b.column("_raw"), root) for b in batches]
    stage("coverage", t)
    t = _cpu()
    for b, covered in zip(batches, covers):
        oks.append(converter.ok_rows(b.column("item"), covered))
    stage("validity", t)
    out = []
    t = _cpu()
    for b, ok in zip(batches, oks):
        item = b.column("item")
        n_ok = pc.sum(ok).as_py() or 0
        out.append(converter.convert(item if n_ok == len(item) else item.filter(ok))[0])
    stage("statistics + convert + rescue", t)
    t = _cpu()
    plain = BatchConverter(plan, root, with_stats=False)
    for b, ok in zip(batches, oks):
        item = b.column("item")
        plain.convert(item.filter(ok))
    stage("  of which convert + rescue (no statistics)", t)
    t = _cpu()
    with tempfile.TemporaryDirectory() as written:
        writer = ParquetPartsWriter(fs, written, plan.schema, options)
        for b in out:
            writer.write(b)
        writer.close()
    stage("write Parquet (the engine's ParquetPartsWriter)", t)
    rows = sum(b.num_rows for b in batches)
    print(f"{rows:,} rows; CPU seconds per stage (one thread each):")
    for name, seconds in stages.items():
        print(f"  {name:<68} {seconds:6.2f}")
    del pa


def duckdb_type(structure) -> str:
    """A ``json_transform`` structure as a DuckDB type."""
    if isinstance(structure, dict):
        return (
            "STRUCT("
            + ", ".join('"' + k.replace('"', '""') + '" ' + duckdb_type(v) for k, v in structure.items())
            + ")"
        )
    if isinstance(structure, list):
        return duckdb_type(structure[0]) + "[]"
    return structure


if __name__ == "__main__":
    main()
