"""Benchmark: the project's converter against the per-item baseline, same files, same cores.

    python benchmarks/run_benchmark.py --items 1000000

Generates (once, cached under ``benchmarks/out/``) a Reviews-like native export with
``generate_reviews.py``, converts it with ``convert_export_to_parquet`` and with the per-item
baseline (json → boto3 TypeDeserializer → pyarrow, 2 processes, explicit schema), each in its own
child process so that peak RSS is measured per contender, and prints one JSON line: items/s, MB/s
(of uncompressed JSON), peak RSS, output bytes, the speed ratio and Parquet bytes / gzip bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def run_converter(files: list[str], out: str, compression: str) -> dict:
    import pyarrow.fs as pafs

    from offload_assets.conversion import ConversionOptions, convert_export_to_parquet

    fs = pafs.LocalFileSystem()
    started = time.perf_counter()
    result = convert_export_to_parquet(
        files, fs, out, fs, table_name="Reviews", options=ConversionOptions(compression=compression)
    )
    seconds = time.perf_counter() - started
    schema_path = Path(out).parent / "schema.arrow"
    schema_path.write_bytes(result.schema.serialize().to_pybytes())
    return {
        "seconds": seconds,
        "rows": result.rows,
        "files": len(result.files),
        "output_bytes": result.output_bytes,
        "rescued": result.rescued_counts,
        "columns": len(result.schema),
    }


def run_baseline(files: list[str], out: str, schema_file: str, processes: int) -> dict:
    import pyarrow as pa
    from baseline_per_item import convert_per_item

    schema = pa.ipc.read_schema(pa.py_buffer(Path(schema_file).read_bytes()))
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    rows, output_bytes = convert_per_item(files, out, schema, processes=processes)
    return {"seconds": time.perf_counter() - started, "rows": rows, "files": len(files), "output_bytes": output_bytes}


def child(args) -> None:
    """Runs one contender and prints its figures with its peak RSS (self and workers)."""
    files = json.loads(Path(args.files_json).read_text())
    if args.child == "converter":
        figures = run_converter(files, args.child_out, args.compression)
    else:
        figures = run_baseline(files, args.child_out, args.schema, args.processes)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    figures["peak_rss_bytes"] = max(self_rss, children_rss)
    figures["peak_rss_self_bytes"] = self_rss
    print(json.dumps(figures))


def contender(kind: str, files_json: Path, out: Path, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, __file__, "--child", kind, "--files-json", str(files_json), "--child-out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2, help="baseline worker processes")
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--work", type=Path, default=HERE / "out")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--child", choices=["converter", "baseline"])
    parser.add_argument("--files-json")
    parser.add_argument("--child-out")
    parser.add_argument("--schema")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from generate_reviews import generate

    export_dir = args.work / f"reviews-{args.items}"
    manifest = generate(export_dir, args.items, args.files)
    files_json = args.work / f"files-{args.items}.json"
    files_json.write_text(json.dumps(manifest["files"]))
    run_dir = args.work / f"run-{args.items}"
    run_dir.mkdir(parents=True, exist_ok=True)

    ours = contender("converter", files_json, run_dir / "converter", ["--compression", args.compression])
    report = {
        "items": manifest["items"],
        "json_bytes": manifest["json_bytes"],
        "gzip_bytes": manifest["gzip_bytes"],
        "input_files": len(manifest["files"]),
        "cpus": os.cpu_count(),
    }

    def figures(r: dict) -> dict:
        return {
            "seconds": round(r["seconds"], 2),
            "items_per_s": round(r["rows"] / r["seconds"]),
            "mb_per_s": round(manifest["json_bytes"] / 1e6 / r["seconds"], 1),
            "peak_rss_mb": round(r["peak_rss_bytes"] / 2**20),
            "output_bytes": r["output_bytes"],
            "output_files": r["files"],
            "rows": r["rows"],
        }

    report["converter"] = figures(ours) | {"rescued": ours["rescued"], "columns": ours["columns"]}
    report["parquet_vs_gzip"] = round(ours["output_bytes"] / manifest["gzip_bytes"], 3)
    if not args.skip_baseline:
        base = contender(
            "baseline",
            files_json,
            run_dir / "baseline",
            ["--schema", str(run_dir / "schema.arrow"), "--processes", str(args.processes)],
        )
        report["baseline"] = figures(base)
        report["speedup"] = round(base["seconds"] / ours["seconds"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
