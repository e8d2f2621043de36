"""Soak of the publish protocol (issue 14's acceptance): concurrent writers, random SIGKILLs, N rounds.

Each round changes the DynamoDB table a little, then 3 writer processes run random operations on
the same partition at once — ``export`` (scan export), ``convert`` (Parquet snapshot + blocking
checks), ``publish`` (convert, then publish: a whole Parquet + catalog run), ``catalog`` (a
catalog-only publish) and ``retention`` — while the driver SIGKILLs some of them at random moments.
Then:

1. before anything repairs it, the catalog must be consistent: the Glue partition points at a run
   directory that exists, and ``<table>_latest`` answers that snapshot's row count;
2. a re-run of the partition (export, convert, publish) converges, and then ``_latest`` equals the
   table's item count, every Glue location exists, and only the run directories the protocol keeps
   remain (``docs/publish-protocol.md``: the committed one, the one it replaced, Glue's), with one
   export of the partition.

Workers are forked from the driver (modules already imported, so a round costs no interpreter
start-up); the driver itself only talks to DynamoDB and S3 through boto3, and everything that
runs DuckDB or pyarrow (operations, SQL checks) runs in forked children.

    python -m offload_assets_tests.reliability.publish_soak --rounds 50   # against a fresh emulator
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offload_assets.aws import connection as aws_connection
from offload_assets.aws.connection import resolve_connection
from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.catalog.glue_tables import ensure_database, list_partitions
from offload_assets.catalog.latest_view import latest_view_name
from offload_assets.catalog.retention import apply_retention
from offload_assets.export.errors import ExportOwnershipError
from offload_assets.export.layout import latest_completed_export, list_export_ids
from offload_assets.export.partition_export import export_partition
from offload_assets.local.demo_data import create_reviews_table, put_items
from offload_assets.snapshot.build import (
    MissingExportError,
    MissingSnapshotError,
    build_snapshot,
    list_run_dirs,
    read_snapshot_manifest,
)
from offload_assets.snapshot.publish import (
    PublishRefusedErrors,
    UnpublishableSnapshotError,
    publish_snapshot,
    read_commit_marker,
)
from offload_assets.snapshot.verdict import blocking_checks_verifier, run_blocking_checks
from offload_assets.sql import duckdb_local  # noqa: F401  (imported once here, not in every forked child)
from offload_assets.sql.query import run_query
from offload_assets.table_spec import TableSpec, parse_tables

OPERATIONS = ("export", "convert", "publish", "catalog", "retention")
WRITERS = 3
#: Short leases so a killed exporter's export is taken over within the round (the default is minutes).
SCAN_OPTIONS = {"resume_lease_seconds": 2.0, "heartbeat_seconds": 0.5, "checkpoint_seconds": 0, "page_limit": 40}
REFUSALS = (
    ExportOwnershipError,
    MissingExportError,
    MissingSnapshotError,
    UnpublishableSnapshotError,
    *PublishRefusedErrors,
)


def soak_spec(bucket: str = "soak-test") -> TableSpec:
    entry = {
        "dynamodb_table": "Soak",
        "s3_bucket": bucket,
        "export_method": "scan",
        "scan_segments": 2,
        "partitions_start": "2026-01-01",
        "retention_snapshots": 1,
    }
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def current_partition() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


@dataclass
class SoakFigures:
    rounds: int = 0
    kills: int = 0
    operations: Counter = field(default_factory=Counter)  # "<op>:<outcome>" -> count
    publishes_committed: int = 0  # publishes that switched the commit marker
    publishes_unchanged: int = 0  # publishes that found nothing newer to commit (the marker stayed)
    races_lost: int = 0  # marker compare-and-swaps lost to another publisher, each followed by a re-decision
    refusals: Counter = field(default_factory=Counter)  # error type -> count (conflicts lost, nothing to publish)
    # Worker errors that are neither refusals nor kills, all loud (e.g. a conversion whose export was
    # replaced under it by a concurrent export): listed so they can be read, they publish nothing.
    failed_loudly: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        ops = ", ".join(f"{k}={v}" for k, v in sorted(self.operations.items()))
        return [
            f"rounds={self.rounds} kills={self.kills} seconds={self.seconds:.1f}",
            f"publishes committed={self.publishes_committed} unchanged={self.publishes_unchanged} "
            f"races lost and re-decided={self.races_lost}",
            f"refusals: {dict(self.refusals)}",
            f"operations: {ops}",
            f"operations that failed loudly: {len(self.failed_loudly)}; invariant violations: {len(self.violations)}",
            *[f"  failed: {u}" for u in self.failed_loudly[:5]],
            *[f"  VIOLATION: {v}" for v in self.violations[:10]],
        ]


# --------------------------------------------------------------------------- operations (in children)


def _clients(endpoint: str) -> dict[str, Any]:
    aws_connection._SESSIONS.__dict__.clear()  # a forked child must not reuse the parent's sessions
    conn = resolve_connection(target="local", endpoint_url=endpoint)
    return {
        "conn": conn,
        "ddb": conn.client("dynamodb"),
        "s3": conn.client("s3"),
        "glue": conn.client("glue"),
        "fs": conn.arrow_filesystem(),
    }


def run_operation(op: str, c: dict[str, Any], spec: TableSpec, partition: str) -> dict[str, Any]:
    s3, glue, ddb, fs = c["s3"], c["glue"], c["ddb"], c["fs"]
    if op == "export":
        export_partition(spec, partition, dynamodb=ddb, s3=s3, scan_options=SCAN_OPTIONS)
        return {}
    if op in ("convert", "publish"):
        snapshot = build_snapshot(s3, fs, glue, spec, partition, run_id=uuid.uuid4().hex[:12])
        verdict = run_blocking_checks(s3, fs, ddb, spec, snapshot)
        if op == "convert" or not verdict.publishable:
            return {"verdict": verdict.describe()[:80]}
    if op in ("publish", "catalog"):
        result = publish_snapshot(glue, s3, spec, partition, verify=blocking_checks_verifier(s3, fs, ddb, spec))
        return {"committed": result.committed, "lost_races": result.lost_races}
    if op == "retention":
        apply_retention(glue, s3, spec, keep=1)
        return {}
    return {}


def _worker(endpoint: str, spec: TableSpec, partition: str, ops: list[str], out: str) -> None:
    c = _clients(endpoint)
    with open(out, "a") as log:
        for op in ops:
            started = time.monotonic()
            record: dict[str, Any] = {"op": op}
            try:
                record.update(run_operation(op, c, spec, partition), outcome="ok")
            except REFUSALS as err:
                record.update(outcome="refused", error=type(err).__name__, message=str(err)[:300])
            except Exception as err:  # counted and printed: a conversion may read an export being replaced
                record.update(outcome="failed", error=type(err).__name__, message=str(err)[:300])
            record["seconds"] = round(time.monotonic() - started, 2)
            log.write(json.dumps(record) + "\n")
            log.flush()


def _check_catalog(endpoint: str, spec: TableSpec, partition: str, settled: bool, out: str) -> None:
    """The invariants, written to ``out`` as a JSON list of violations (run in a forked child)."""
    c = _clients(endpoint)
    s3, glue, ddb = c["s3"], c["glue"], c["ddb"]
    problems: list[str] = []
    try:
        marker = read_commit_marker(s3, spec, partition)
        parts = list_partitions(glue, database=spec.catalog_database, table=spec.catalog_table) if marker else []
        glue_dirs = {}
        for p in parts:
            run_dir = p.location.removeprefix(f"s3://{spec.s3_bucket}/").rstrip("/")
            glue_dirs[p.value] = run_dir
            if read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=run_dir) is None:
                problems.append(f"Glue partition {p.value} points at {run_dir}, which has no complete snapshot")
        if marker and partition in glue_dirs:
            snapshot = read_snapshot_manifest(s3, bucket=spec.s3_bucket, run_dir=glue_dirs[partition])
            view = f'"{spec.catalog_database}"."{latest_view_name(spec.catalog_table)}"'
            answered = run_query(f"SELECT count(*) FROM {view}", connection=c["conn"]).scalar()
            expected = snapshot.rows if snapshot else None
            if settled:
                expected = ddb.describe_table(TableName=spec.dynamodb_table)["Table"]["ItemCount"]
            if answered != expected:
                problems.append(f"_latest answers {answered} rows, expected {expected} (settled={settled})")
        elif settled:
            problems.append("after the re-run the partition is not published")
        if settled and marker:
            if glue_dirs.get(partition) != marker.run_dir:
                problems.append(f"Glue points at {glue_dirs.get(partition)}, the marker at {marker.run_dir}")
            kept = {marker.run_dir, marker.previous_run_dir, glue_dirs.get(partition)}
            dirs = list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix(partition))
            orphans = [d for d in dirs if d not in kept]
            if orphans:
                problems.append(f"orphan run dirs beyond the documented cleanup: {orphans}")
            exports = list_export_ids(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(partition))
            newest = latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix(partition))
            if newest is None or exports != [newest.export_id]:
                problems.append(f"exports of the partition after the re-run: {exports}")
    except Exception:
        problems.append("check crashed: " + traceback.format_exc()[-600:])
    Path(out).write_text(json.dumps(problems))


def _fork(target, *args) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _run_child(target, *args, timeout: float = 300) -> None:
    proc = _fork(target, *args)
    proc.join(timeout)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        raise RuntimeError(f"{target.__name__} hung for {timeout:.0f} s")


def _settle(endpoint: str, spec: TableSpec, partition: str, out: str) -> None:
    """The re-run after a round: export, convert, publish, retrying while a killed owner's lease runs out."""
    c = _clients(endpoint)
    errors = []
    for op in ("export", "publish"):
        for _attempt in range(5):
            try:
                run_operation(op, c, spec, partition)
                break
            except ExportOwnershipError as err:
                errors.append(str(err)[:200])
                time.sleep(SCAN_OPTIONS["resume_lease_seconds"])
        else:
            errors.append(f"{op} did not succeed in 5 attempts")
    Path(out).write_text(json.dumps(errors[-1:] if errors and "did not succeed" in errors[-1] else []))


# --------------------------------------------------------------------------- the driver


def run_soak(endpoint: str, rounds: int, *, seed: int = 14, kill_probability: float = 0.7) -> SoakFigures:
    rng = random.Random(seed)
    spec, partition = soak_spec(), current_partition()
    conn = resolve_connection(target="local", endpoint_url=endpoint)
    ddb, s3 = conn.client("dynamodb"), conn.client("s3")
    create_reviews_table(ddb, spec.dynamodb_table)
    ensure_bucket(s3, spec.s3_bucket)
    ensure_database(conn.client("glue"), spec.catalog_database)
    next_item = 0

    def add(n: int) -> None:
        nonlocal next_item
        put_items(
            ddb,
            spec.dynamodb_table,
            [{"User": f"u{next_item + i:05d}", "Book": "b", "Rating": i % 5} for i in range(n)],
        )
        next_item += n

    add(60)
    figures = SoakFigures()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="publish-soak-") as tmp:
        for round_no in range(rounds):
            add(rng.randint(1, 8))
            if next_item > 10 and rng.random() < 0.5:  # deletes change the count too
                victim = rng.randrange(next_item)
                ddb.delete_item(
                    TableName=spec.dynamodb_table, Key={"User": {"S": f"u{victim:05d}"}, "Book": {"S": "b"}}
                )
            logs, workers = [], []
            for w in range(WRITERS):
                ops = [rng.choice(OPERATIONS) for _ in range(rng.randint(1, 3))]
                log = f"{tmp}/round{round_no}-w{w}.jsonl"
                logs.append(log)
                workers.append(_fork(_worker, endpoint, spec, partition, ops, log))
            if rng.random() < kill_probability:
                time.sleep(rng.uniform(0.2, 4.0))
                alive = [p for p in workers if p.is_alive()]
                if alive:
                    os.kill(rng.choice(alive).pid, signal.SIGKILL)
                    figures.kills += 1
            for p in workers:
                p.join(300)
                if p.is_alive():
                    os.kill(p.pid, signal.SIGKILL)
                    p.join()
                    figures.violations.append(f"round {round_no}: a worker hung for 300 s")
            for log in logs:
                for line in Path(log).read_text().splitlines() if Path(log).exists() else []:
                    r = json.loads(line)
                    figures.operations[f"{r['op']}:{r['outcome']}"] += 1
                    if r["outcome"] == "refused":
                        figures.refusals[r["error"]] += 1
                    elif r["outcome"] == "failed":
                        figures.failed_loudly.append(f"round {round_no} {r['op']}: {r['error']}: {r['message'][:160]}")
                    if "committed" in r:
                        figures.publishes_committed += r["committed"]
                        figures.publishes_unchanged += not r["committed"]
                        figures.races_lost += r.get("lost_races", 0)
            for settled in (False, True):
                if settled:
                    _run_child(_settle, endpoint, spec, partition, f"{tmp}/settle{round_no}.json")
                    figures.violations += [
                        f"round {round_no}: re-run: {e}"
                        for e in json.loads(Path(f"{tmp}/settle{round_no}.json").read_text())
                    ]
                out = f"{tmp}/check{round_no}-{settled}.json"
                _run_child(_check_catalog, endpoint, spec, partition, settled, out)
                figures.violations += [f"round {round_no}: {v}" for v in json.loads(Path(out).read_text())]
            figures.rounds += 1
    figures.seconds = time.monotonic() - started
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--endpoint", help="a running emulator (default: start one in a temporary directory)")
    args = parser.parse_args(argv)
    if args.endpoint:
        figures = run_soak(args.endpoint, args.rounds, seed=args.seed)
    else:
        from offload_assets.local.emulator import ensure_local_emulator, stop_local_emulator

        with tempfile.TemporaryDirectory(prefix="publish-soak-state-") as state:
            emulator = ensure_local_emulator(state)
            try:
                figures = run_soak(emulator.endpoint_url, args.rounds, seed=args.seed)
            finally:
                stop_local_emulator(state)
    print("\n".join(figures.lines()))
    return 1 if figures.violations else 0


if __name__ == "__main__":
    sys.exit(main())
