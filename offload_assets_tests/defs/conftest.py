"""Helpers for orchestration tests: table specs, exports dropped into S3 as DynamoDB writes them.

``drop_export`` writes what ExportTableToPointInTime leaves in S3 (gzip ``{"Item": ...}`` data
files, ``manifest-files.json``, then ``manifest-summary.json`` last), so an export "started
outside Dagster" can be produced anywhere, complete or half-written, at any export time.
It is also runnable as a script, so a separate process can drop one (the daemon test).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.export.layout import ExportDataFile, export_dir_key, md5_base64, utc_iso, write_export_manifests
from offload_assets.local.demo_data import to_low_level
from offload_assets.table_spec import TableSpec, parse_tables


def make_spec(**fields: Any) -> TableSpec:
    entry = {"dynamodb_table": "Reviews", "s3_bucket": "orchestration-test", "partitions_start": "2026-01-01", **fields}
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def reviews(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "User": f"user-{n:05d}",
            "Book": f"book-{n % 7}",
            "Author": "J.K. Rowling" if n % 3 == 0 else "Tolkien",
            "Rating": n % 5 + 1,
        }
        for n in range(start, start + count)
    ]


def drop_export(
    s3: Any,
    *,
    bucket: str,
    prefix: str,
    items: list[dict[str, Any]],
    table_name: str = "Reviews",
    export_time: dt.datetime | None = None,
    complete: bool = True,
    export_id: str | None = None,
    files: int = 1,
    export_type: str = "FULL_EXPORT",
) -> str:
    """Write one export below ``prefix`` (``<prefix>/AWSDynamoDB/<id>/``); returns its id."""
    ensure_bucket(s3, bucket)
    export_id = export_id or f"{int(dt.datetime.now().timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}"
    export_time = export_time or dt.datetime.now(dt.UTC)
    base = export_dir_key(prefix, export_id)
    data_files = []
    per_file = max(1, -(-len(items) // files))
    for i in range(files):
        chunk = items[i * per_file : (i + 1) * per_file]
        body = gzip.compress(b"".join(json.dumps({"Item": to_low_level(item)}).encode() + b"\n" for item in chunk))
        key = f"{base}/data/{uuid.uuid4().hex}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        data_files.append(ExportDataFile(key=key, item_count=len(chunk), md5=md5_base64(body), size_bytes=len(body)))
    if not complete:
        return export_id
    write_export_manifests(
        s3,
        bucket=bucket,
        export_prefix=prefix,
        export_id=export_id,
        data_files=data_files,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{table_name}",
        export_time=utc_iso(export_time),
        start_time=utc_iso(export_time),
        export_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{table_name}/export/{export_id}",
        billed_size_bytes=1234,
        export_type=export_type,
    )
    return export_id


if __name__ == "__main__":  # python -m offload_assets_tests.defs.conftest ENDPOINT BUCKET PREFIX COUNT [EXPORT_ID]
    from offload_assets.aws.connection import resolve_connection

    endpoint, bucket, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    connection = resolve_connection(target="local", endpoint_url=endpoint)
    print(
        drop_export(
            connection.client("s3"),
            bucket=bucket,
            prefix=prefix,
            items=reviews(count),
            export_id=sys.argv[5] if len(sys.argv) > 5 else None,
        )
    )


# --------------------------------------------------------------------------- Dagster fixtures

import pytest  # noqa: E402


class Project:
    """One configured table on the emulator: its definitions, spec, asset keys and an instance."""

    def __init__(self, tmp_path: Path, emulator, aws, **table_fields: Any) -> None:
        import dagster as dg

        from offload_assets.defs.definitions import build_definitions
        from offload_assets.defs.table_assets import asset_keys, partitions_for
        from offload_assets.table_spec import load_tables_file
        from offload_assets_tests.conftest import write_tables_file

        entry = {
            "dynamodb_table": "Reviews",
            "s3_bucket": "orchestration-test",
            "sensor_interval_seconds": 5,
            "partitions_start": "2026-01-01",  # past days exist (tests adopt and check them)
            **table_fields,
        }
        self.tables_file = write_tables_file(tmp_path / "tables.yaml", entry)
        self.defs = build_definitions(self.tables_file, target="local", endpoint_url=emulator.endpoint_url)
        self.spec = load_tables_file(self.tables_file).tables[0]
        self.keys = asset_keys(self.spec)
        self.partitions = partitions_for(self.spec)
        self.today = self.partitions.get_last_partition_key()
        self.aws = aws
        self.instance = dg.DagsterInstance.ephemeral()

    def seed(self, items: list[dict[str, Any]]) -> None:
        from offload_assets.local.demo_data import create_reviews_table, put_items

        ddb = self.aws.client("dynamodb")
        create_reviews_table(ddb, self.spec.dynamodb_table)
        put_items(ddb, self.spec.dynamodb_table, items)

    def job(self, suffix: str = "offload_job"):
        return self.defs.resolve_job_def(f"{self.spec.name}_{suffix}")

    def run_request(self, request, **kwargs):
        """Execute a schedule's or sensor's RunRequest in process the way the daemon launches it: its job, subset, tags."""
        kwargs.setdefault("instance", self.instance)
        return self.job().execute_in_process(
            partition_key=request.partition_key,
            tags=request.tags,
            asset_selection=list(request.asset_selection) if request.asset_selection is not None else None,
            **kwargs,
        )

    def export_only(self, partition_key: str, **kwargs):
        """What the nightly schedule launches: the offload job's raw export step alone."""
        import dagster as dg

        schedule = self.defs.resolve_schedule_def(f"{self.spec.name}_nightly_export")
        partitions = self.defs.resolve_assets_def(self.keys["export"]).partitions_def
        tick = partitions.time_window_for_partition_key(partition_key).start
        context = dg.build_schedule_context(
            scheduled_execution_time=tick, repository_def=self.defs.get_repository_def()
        )
        [request] = schedule.evaluate_tick(context).run_requests
        assert request.partition_key == partition_key, (request.partition_key, partition_key, tick)
        return self.run_request(request, **kwargs)

    def convert(self, partition_key: str, **kwargs):
        """What the export sensors launch: the offload job's conversion and registration steps (with their checks)."""
        return self.job().execute_in_process(
            partition_key=partition_key,
            instance=self.instance,
            asset_selection=[self.keys["parquet"], self.keys["catalog"]],
            **kwargs,
        )

    def run_selection(self, selection, partition_key: str):
        """Run any asset/check selection of this table for one partition (what the UI's "Materialize" and "Execute checks" do)."""
        import dagster as dg

        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[dg.define_asset_job("adhoc", selection=selection)]))
        job = defs.resolve_job_def("adhoc")
        if job.partitions_def is None:
            # Dagster 1.13 infers no partitions for a checks-only job: the partition goes in as a run tag.
            return job.execute_in_process(
                tags={"dagster/partition": partition_key}, instance=self.instance, raise_on_error=False
            )
        return job.execute_in_process(partition_key=partition_key, instance=self.instance, raise_on_error=False)

    def tick(self, sensor: str, cursor: str | None = None):
        import dagster as dg

        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor, definitions=self.defs, resources=self.defs.resources
        )
        return self.defs.resolve_sensor_def(f"{self.spec.name}_{sensor}")(context)

    def launch(self, result) -> list:
        """What the daemon does with a sensor result: store its events, run its run requests."""
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        return [self.run_request(request, raise_on_error=False) for request in result.run_requests or []]


@dataclass(frozen=True)
class CodeLocationFiles:
    """A code location building the project's definitions from a tables file against one emulator."""

    workspace: Path
    dagster_home: Path
    env: dict[str, str]


def write_code_location(directory: Path, tables_file: Path, endpoint_url: str, location_name: str) -> CodeLocationFiles:
    """Its module, workspace.yaml, a DAGSTER_HOME with telemetry off (storage created up front) and the env for dagster processes."""
    import os

    import dagster as dg
    import yaml

    from offload_assets.cli.common import prepare_dagster_home

    module = f"{location_name}_defs.py"
    (directory / module).write_text(
        "from offload_assets.defs.definitions import build_definitions\n"
        f"defs = build_definitions({str(tables_file)!r}, target='local', endpoint_url={endpoint_url!r})\n"
    )
    workspace = directory / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_file": {
                            "relative_path": module,
                            "working_directory": str(directory),
                            "location_name": location_name,
                        }
                    }
                ]
            }
        )
    )
    home = prepare_dagster_home(directory / "dagster_home")
    assert yaml.safe_load((home / "dagster.yaml").read_text())["telemetry"] == {"enabled": False}
    # Create the instance's SQLite storage before dagster's processes start: on a fresh
    # DAGSTER_HOME, processes creating it at once can race on the schema migration.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    instance.get_backfills(limit=1)
    instance.dispose()
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OFFLOAD_ASSETS_TARGET": "local",
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    }
    return CodeLocationFiles(workspace, home, env)


def wait_for(what: str, predicate, timeout: float, log: Path, interval: float = 1.0):
    """Poll ``predicate`` until it returns something truthy; on time-out fail with the tail of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; log tail:\n{tail}")


def stop_process_group(proc) -> None:
    """SIGINT to the whole process group (dagster stops its webserver, daemon and code servers), then SIGKILL."""
    import contextlib
    import os
    import signal
    import subprocess

    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def short_name(key) -> str:
    return {"s3": key.path[1], "glue": "catalog"}.get(key.path[0], key.to_user_string())


def check_results(result) -> dict[str, Any]:
    """Check name (``asset/check``) -> its evaluation, from an in-process run."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            out[f"{short_name(data.asset_key)}/{data.check_name}"] = data
    return out


@pytest.fixture()
def project(tmp_path, emulator, aws) -> Project:
    return Project(tmp_path, emulator, aws)
