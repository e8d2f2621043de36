"""Benchmark: the project's converter against the per-item baseline, the strongest DuckDB
comparators and the floors, on the same export and the same cores, in one run.

    python benchmarks/run_benchmark.py --items 1000000 --runs 3

Generates (once, cached under ``benchmarks/out/``) a Reviews-like native export with
``generate_reviews.py`` (the blog's Reviews plus maps, lists, sets, binary, 38-digit decimals, a
case collision and a few type mix-ups), then runs each contender ``--runs`` times, each run in its
own child process (so peak RSS and CPU are measured per contender, workers included):

* ``baseline``: per item, json → boto3 TypeDeserializer → pyarrow with an explicit schema, 2 processes;
* ``duckdb_hand``: DuckDB ``read_ndjson(records=true, columns=<hand-written>)`` + SQL unwrap + COPY zstd;
* ``duckdb_auto``: DuckDB ``read_ndjson(sample_size=-1)`` (schema autodetected) + the same unwrap + COPY;
* ``floor_gunzip`` and ``floor_parse``: gunzip alone, and gunzip + ``orjson.loads`` of every line (2 processes);
* ``project``: ``convert_export_to_parquet`` (schema inferred, every check on).

It prints a table (min of the runs: wall time, CPU time, peak RSS, output bytes, and the project's
time as a ratio of each) and the machine's load average before and after, then one JSON line.
The machine is shared: compare figures within one run, never across runs.
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
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

CONTENDERS = ("baseline", "duckdb_hand", "duckdb_auto", "floor_gunzip", "floor_parse", "project")
LABELS = {
    "baseline": "per item: json → TypeDeserializer → pyarrow (explicit schema, 2 processes)",
    "duckdb_hand": "DuckDB read_ndjson hand-written schema + SQL unwrap + COPY zstd",
    "duckdb_auto": "DuckDB read_ndjson autodetect (sample_size=-1) + SQL unwrap + COPY zstd",
    "floor_gunzip": "floor: gunzip (zlib, 2 processes)",
    "floor_parse": "floor: gunzip + orjson.loads per line (2 processes)",
    "project": "offload-assets convert (schema inferred, all checks)",
}


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def _gunzip(path: str) -> int:
    with open(path, "rb") as f:
        return len(zlib.decompress(f.read(), 31))


def _gunzip_parse(path: str) -> int:
    import orjson

    with open(path, "rb") as f:
        data = zlib.decompress(f.read(), 31)
    n = 0
    for line in data.splitlines():
        orjson.loads(line)
        n += 1
    return n


def run_contender(kind: str, files: list[str], out: Path, threads: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows = None
    if kind == "project":
        import pyarrow.fs as pafs

        from offload_assets.conversion import ConversionOptions, convert_export_to_parquet

        fs = pafs.LocalFileSystem()
        result = convert_export_to_parquet(
            files, fs, str(out), fs, table_name="Reviews", options=ConversionOptions(threads=threads)
        )
        rows = result.rows
        extra = {"rescued": result.rescued_counts, "columns": len(result.schema)}
    elif kind == "baseline":
        from baseline_per_item import convert_per_item

        rows, _ = convert_per_item(files, str(out), processes=threads)
        extra = {}
    elif kind in ("duckdb_hand", "duckdb_auto"):
        import duckdb_hand_schema

        convert = (
            duckdb_hand_schema.convert_hand_schema if kind == "duckdb_hand" else duckdb_hand_schema.convert_autodetect
        )
        convert(files, str(out / "data.parquet"), threads=threads)
        extra = {}
    else:
        with ProcessPoolExecutor(threads) as pool:
            counts = list(pool.map(_gunzip if kind == "floor_gunzip" else _gunzip_parse, files))
        rows = sum(counts) if kind == "floor_parse" else None
        extra = {}
    if rows is None and kind.startswith("duckdb"):
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out / "data.parquet").metadata.num_rows
    return {"rows": rows, "output_bytes": _tree_bytes(out), **extra}


def child(args) -> None:
    """Runs one contender and prints its figures: wall, CPU and peak RSS (self and workers)."""
    files = json.loads(Path(args.files_json).read_text())
    started = time.perf_counter()
    figures = run_contender(args.child, files, Path(args.child_out), args.threads)
    figures["seconds"] = time.perf_counter() - started
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures["cpu_seconds"] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    # workers run side by side: their peaks add up (2 processes), the parent's is separate
    figures["peak_rss_bytes"] = me.ru_maxrss * 1024 + (kids.ru_maxrss * 1024 * args.threads if kids.ru_maxrss else 0)
    print(json.dumps(figures))


def contender(kind: str, files_json: Path, out: Path, threads: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, __file__, "--child", kind, "--files-json", str(files_json), "--child-out", str(out)]
    proc = subprocess.run([*cmd, "--threads", str(threads)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="runs per contender; the minimum is reported")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="cores given to each contender")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--work", type=Path, default=HERE / "out")
    parser.add_argument("--child", choices=CONTENDERS)
    parser.add_argument("--files-json")
    parser.add_argument("--child-out")
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
    wanted = [c for c in CONTENDERS if c in args.only.split(",")]
    load_before = _load()
    results: dict[str, list[dict]] = {c: [] for c in wanted}
    for _ in range(args.runs):  # interleaved: a burst of load on the machine hits every contender
        for kind in wanted:
            r = contender(kind, files_json, run_dir / kind, args.threads)
            results[kind].append(r)
            print(f"  {kind}: {r['seconds']:.2f} s, {r['cpu_seconds']:.2f} CPU-s (load {_load()})", file=sys.stderr)
    load_after = _load()

    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in results.items()}
    for k, v in results.items():
        best[k]["cpu_seconds"] = min(r["cpu_seconds"] for r in v)
        best[k]["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in v)
    ours = best.get("project")
    print(
        f"{manifest['items']:,} items, {len(manifest['files'])} files, {manifest['gzip_bytes'] / 1e6:.1f} MB gzip "
        f"({manifest['json_bytes'] / 1e6:.1f} MB JSON); {args.threads} cores; min of {args.runs} runs; "
        f"load average (1/5/15 min) before {load_before}, after {load_after}"
    )
    header = f"| {'approach':<78} | time (s) | CPU (s) | peak RSS (MB) | output (MB) | project / this |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for kind in wanted:
        r = best[kind]
        ratio = f"{ours['seconds'] / r['seconds']:.2f}×" if ours else ""
        out_mb = f"{r['output_bytes'] / 1e6:.1f}" if r["output_bytes"] else "-"
        print(
            f"| {LABELS[kind]:<78} | {r['seconds']:8.2f} | {r['cpu_seconds']:7.2f} | "
            f"{r['peak_rss_bytes'] / 2**20:13.0f} | {out_mb:>11} | {ratio:>14} |"
        )
    report = {
        "items": manifest["items"],
        "gzip_bytes": manifest["gzip_bytes"],
        "json_bytes": manifest["json_bytes"],
        "runs": args.runs,
        "threads": args.threads,
        "load_before": load_before,
        "load_after": load_after,
        "contenders": best,
    }
    if ours:
        report["parquet_vs_gzip"] = round(ours["output_bytes"] / manifest["gzip_bytes"], 3)
        for kind in ("baseline", "duckdb_hand"):
            if kind in best:
                report[f"project_vs_{kind}"] = round(ours["seconds"] / best[kind]["seconds"], 3)
        print(
            f"project: Parquet / gzip = {report['parquet_vs_gzip']:.3f}; peak RSS {ours['peak_rss_bytes'] / 2**30:.2f} GiB"
            + (
                f"; {best['baseline']['seconds'] / ours['seconds']:.2f}× faster than per item"
                if "baseline" in best
                else ""
            )
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
