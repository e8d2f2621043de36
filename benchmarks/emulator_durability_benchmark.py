"""What saving every change before answering costs the local emulator.

Runs the same workloads against moto's plain in-memory server (``moto_server``, nothing saved)
and against the project's emulator (every change on disk before the request is answered), each
in its own process on a loopback port, and prints both times side by side:

- ``batch write N``: N demo reviews with BatchWriteItem (25 items a request);
- ``put_item x M``: M single puts in a row (one save per put: the worst case);
- ``s3 put x K``: K objects of 100 KB while the table above is loaded (S3 saves alone).

    python benchmarks/emulator_durability_benchmark.py --items 3000 --puts 300 --objects 40
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offload_assets.aws.connection import resolve_connection
from offload_assets.local.demo_data import create_reviews_table, generate_reviews, put_items
from offload_assets.local.emulator import ensure_local_emulator, stop_local_emulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plain_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto_server did not start")


def _workloads(endpoint: str, items: int, puts: int, objects: int) -> dict[str, float]:
    conn = resolve_connection(target="local", endpoint_url=endpoint)
    ddb, s3 = conn.client("dynamodb"), conn.client("s3")
    create_reviews_table(ddb, "Bench")
    ddb.create_table(
        TableName="Puts",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket="bench")
    reviews = generate_reviews(items)
    times = {}
    t = time.perf_counter()
    put_items(ddb, "Bench", reviews)
    times[f"batch write {items} items"] = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(puts):
        ddb.put_item(TableName="Puts", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    times[f"put_item x {puts}"] = time.perf_counter() - t
    body = os.urandom(100_000)
    t = time.perf_counter()
    for i in range(objects):
        s3.put_object(Bucket="bench", Key=f"o/{i}", Body=body)
    times[f"s3 put_object 100 KB x {objects}"] = time.perf_counter() - t
    count = sum(page["Count"] for page in ddb.get_paginator("scan").paginate(TableName="Bench", Select="COUNT"))
    assert count == len({(r["User"], r["Book"]) for r in reviews}), count
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--puts", type=int, default=300)
    parser.add_argument("--objects", type=int, default=40)
    args = parser.parse_args(argv)

    proc, url = _plain_moto()
    try:
        plain = _workloads(url, args.items, args.puts, args.objects)
    finally:
        proc.kill()
        proc.wait()
    with tempfile.TemporaryDirectory() as state:
        emu = ensure_local_emulator(state)
        try:
            durable = _workloads(emu.endpoint_url, args.items, args.puts, args.objects)
            files = list((Path(state) / "emulator" / "state").glob("*.pickle"))
            state_bytes = sum(f.stat().st_size for f in files)
        finally:
            stop_local_emulator(state)
    print(f"{'workload':34} {'in memory (s)':>14} {'durable (s)':>12} {'ratio':>6}")
    for name, seconds in plain.items():
        print(f"{name:34} {seconds:14.2f} {durable[name]:12.2f} {durable[name] / seconds:6.2f}")
    print(f"saved state at the end: {state_bytes / 1e6:.1f} MB in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
