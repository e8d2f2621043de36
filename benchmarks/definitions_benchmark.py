"""Many tables in the UI: definitions load time and Dagster UI response times, 1 table vs N.

For each table count (the baseline of 1 and the target, 50 by default) this writes a tables file,
a code location that builds the project's definitions from it and a workspace, then measures:

- in process: CPU seconds to build the definitions and validate them (what every code-server
  start and every reload pays), the best of three;
- ``dagster-webserver`` on 127.0.0.1 (telemetry off, no daemon, no AWS traffic: nothing runs):
  seconds until the code location is loaded, then the median wall time of the GraphQL queries
  behind the UI's main pages (the global asset graph, the jobs list, the automation list).

    python benchmarks/definitions_benchmark.py --tables 50

Exit status 1 when N tables take 2 s or more of CPU to build and validate (issue 8's target).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

TARGET_SECONDS = 2.0

QUERIES = {
    "asset graph": "{ assetNodes { id assetKey { path } groupName dependencyKeys { path } partitionDefinition { description } } }",
    "jobs": "{ repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name description } } } } }",
    "automation": (
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name "
        "schedules { name cronSchedule scheduleState { status } } sensors { name sensorState { status } } } } } }"
    ),
}


def write_project(root: Path, tables: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "dynamodb_table": f"Table{i:02d}",
            "s3_bucket": f"bucket-{i % 5}",
            "export_method": ("scan", "native", "incremental")[i % 3],
            "export_hour": i % 24,
        }
        for i in range(tables)
    ]
    (root / "tables.yaml").write_text(yaml.safe_dump({"tables": entries}))
    (root / "defs.py").write_text(
        "from pathlib import Path\n\nfrom offload_assets.defs.definitions import build_definitions\n\n"
        "defs = build_definitions(Path(__file__).with_name('tables.yaml'))\n"
    )
    (root / "workspace.yaml").write_text(
        yaml.safe_dump(
            {"load_from": [{"python_file": {"relative_path": "defs.py", "location_name": f"tables_{tables}"}}]}
        )
    )
    return root


def load_cpu_seconds(tables_file: Path) -> float:
    import dagster as dg

    from offload_assets.defs.definitions import build_definitions

    build_definitions(tables_file, target="local")  # imports warm
    timings = []
    for _ in range(3):
        started = time.process_time()
        dg.Definitions.validate_loadable(build_definitions(tables_file, target="local"))
        timings.append(time.process_time() - started)
    return min(timings)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, timeout: float = 60.0) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with opener.open(request, timeout=timeout) as resp:
        body = json.loads(resp.read())
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def measure_webserver(root: Path, tables: int, repeats: int) -> dict[str, float]:
    from offload_assets.cli.common import prepare_dagster_home

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(prepare_dagster_home(root / "dagster_home")),
        "OFFLOAD_ASSETS_TARGET": "local",
    }
    log = open(root / "webserver.log", "wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            str(root / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        status_query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited: see {root / 'webserver.log'}")
            if time.monotonic() - started > 300:
                raise RuntimeError("the code location did not load within 300 s")
            with contextlib.suppress(OSError, RuntimeError, KeyError):
                entries = graphql(url, status_query, timeout=5)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    break
            time.sleep(0.2)
        figures = {"ready_s": time.monotonic() - started}
        nodes = graphql(url, QUERIES["asset graph"])["assetNodes"]
        assert len(nodes) >= tables * 4, f"{len(nodes)} asset nodes for {tables} tables"
        [repo] = graphql(url, QUERIES["automation"])["repositoriesOrError"]["nodes"]
        assert len(repo["schedules"]) == tables and len(repo["sensors"]) >= tables * 3, repo
        [repo] = graphql(url, QUERIES["jobs"])["repositoriesOrError"]["nodes"]
        assert len([j for j in repo["jobs"] if not j["name"].startswith("__")]) == tables, [
            j["name"] for j in repo["jobs"]
        ]
        for name, query in QUERIES.items():
            timings = []
            for _ in range(repeats):
                t = time.monotonic()
                graphql(url, query)
                timings.append(time.monotonic() - t)
            figures[name] = statistics.median(timings)
        return figures
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=50, help="table count to measure against the 1-table baseline")
    parser.add_argument("--repeats", type=int, default=5, help="times each GraphQL query is timed (median printed)")
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="definitions-benchmark-") as tmp:
        for count in (1, args.tables):
            root = write_project(Path(tmp) / f"tables_{count}", count)
            cpu = load_cpu_seconds(root / "tables.yaml")
            results[count] = {"build+validate_cpu_s": cpu, **measure_webserver(root, count, args.repeats)}
            print(f"{count:>3} table(s): " + ", ".join(f"{k} {v:.2f}" for k, v in results[count].items()), flush=True)

    base, big = results[1], results[args.tables]
    print(f"\n{'measure':<22}{'1 table':>10}{f'{args.tables} tables':>12}{'ratio':>8}")
    for key in base:
        print(f"{key:<22}{base[key]:>10.2f}{big[key]:>12.2f}{big[key] / base[key]:>8.1f}")
    ok = big["build+validate_cpu_s"] < TARGET_SECONDS
    print(
        f"\n{args.tables} tables build and validate in {big['build+validate_cpu_s']:.2f} s of CPU "
        f"(target < {TARGET_SECONDS:.0f} s): {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
