"""Backfills launched the way the Dagster UI launches them, run by the real daemon.

``dagster dev`` (webserver + daemon, telemetry off) runs on a free loopback port against the
session's local emulator. The tests send the UI's own GraphQL mutation (``LaunchPartitionBackfill``
with an asset selection, partition names and the run config typed in the launch dialog: what
"Materialize" > "Launch backfill" sends from the asset graph) and read the outcome from the Dagster instance, S3 and Glue.

- ``native``: 7 past days of a table whose point-in-time recovery has 8 days of history (made up
  with the emulator's PITR route, since moto starts the window when PITR is switched on) give 7
  published partitions, each with every item and every check passed; the exports share the
  ``dynamodb_export`` pool, so at most 2 run at once. The emulator's exports read the table as it
  is now whatever ExportTime says, so every partition holds today's items: the test checks the
  orchestration (past instants accepted, one export per day, per-partition checks), not history.
- ``scan``: a backfill of a past day fails with the refusal that says to use ``native``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow.dataset as pads
import pytest
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, BulkActionStatus, PartitionBackfill

from offload_assets.aws.connection import AwsConnection, resolve_connection
from offload_assets.catalog.glue_tables import list_partitions
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.local.demo_data import create_reviews_table, put_items
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.table_spec import TableSpec, load_tables_file
from offload_assets_tests.conftest import reset_emulator, write_tables_file
from offload_assets_tests.defs.conftest import reviews, stop_process_group, wait_for, write_code_location

ITEMS = 50
DAYS = 7
PITR_DAYS = 8  # the oldest of the 7 past partitions is less than 8 days old
PARTITION_CHECKS = ("row_count_parity", "unique_primary_keys", "schema_drift")
CATALOG_CHECKS = ("sql_row_count_parity",)
EXPORT_POOL_LIMIT = 2  # offload_assets.cli.common.DAGSTER_YAML

# The UI's mutation (dagster-webserver's LaunchPartitionBackfill), with the answers the tests need.
LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
  }
}
"""
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterUI:
    url: str
    instance: dg.DagsterInstance
    log: Path
    aws: AwsConnection
    native: TableSpec
    scan: TableSpec

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 120) -> dict:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with opener.open(request, timeout=timeout) as resp:
            answer = json.loads(resp.read())
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def launch_asset_backfill(self, spec: TableSpec, partition_names: list[str]) -> str:
        """What the UI sends for "Materialize" > "Launch backfill" on the table's three assets (no job name)."""
        keys = asset_keys(spec)
        params = {
            "tags": [],
            "fromFailure": False,
            "partitionNames": partition_names,
            "assetSelection": [{"path": keys[name].path} for name in ("export", "parquet", "catalog")],
        }
        launched = self.graphql(LAUNCH_PARTITION_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return launched["backfillId"]

    def wait_for(self, what: str, predicate, timeout: float, interval: float = 1.0):
        return wait_for(what, predicate, timeout, self.log, interval)

    def wait_for_backfill(self, backfill_id: str, timeout: float) -> PartitionBackfill:
        def finished():
            backfill = self.instance.get_backfill(backfill_id)
            return backfill if backfill is not None and backfill.status in BULK_ACTION_TERMINAL_STATUSES else None

        return self.wait_for(f"backfill {backfill_id}", finished, timeout)

    def backfill_runs(self, backfill_id: str) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})))

    def failures(self, run: dg.DagsterRun) -> list[str]:
        return [
            (
                e.dagster_event.step_failure_data.user_failure_data.description
                if e.dagster_event.is_step_failure and e.dagster_event.step_failure_data.user_failure_data
                else e.message
            )
            for e in self.instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.is_failure
        ]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, emulator) -> DagsterUI:
    reset_emulator(emulator)
    aws = resolve_connection(target="local", endpoint_url=emulator.endpoint_url)
    tmp = tmp_path_factory.mktemp("ui_backfill")
    # The nightly schedules are on: put their tick half a day away so only the backfills run.
    export_hour = (dt.datetime.now(dt.UTC).hour + 12) % 24
    common = {"s3_bucket": "ui-backfill-test", "export_hour": export_hour, "sensor_interval_seconds": 30}
    tables = write_tables_file(
        tmp / "tables.yaml",
        {"dynamodb_table": "Reviews", "export_method": "native", **common},
        # a scan table's partitions start the day it is added: this one is older, so it has past days to refuse
        {"dynamodb_table": "ScannedReviews", "export_method": "scan", "partitions_start": "2026-01-01", **common},
    )
    native, scan = load_tables_file(tables).tables
    ddb = aws.client("dynamodb")
    for spec in (native, scan):
        create_reviews_table(ddb, spec.dynamodb_table)
        put_items(ddb, spec.dynamodb_table, reviews(ITEMS))

    location = write_code_location(tmp, tables, emulator.endpoint_url, "offload_ui_test")
    workspace, env = location.workspace, location.env
    instance = dg.DagsterInstance.from_config(str(location.dagster_home))

    port = _free_port()
    dagster_bin = Path(sys.executable).with_name("dagster")
    command = [str(dagster_bin)] if dagster_bin.exists() else [sys.executable, "-m", "dagster"]
    log = tmp / "dagster_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    ui = DagsterUI(f"http://127.0.0.1:{port}", instance, log, aws, native, scan)
    try:

        def location_loaded():
            with contextlib.suppress(OSError, ValueError):
                entries = ui.graphql(LOCATIONS, timeout=10)["workspaceOrError"]["locationEntries"]
                loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
                assert all(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in loaded), entries
                return bool(loaded)
            return False

        ui.wait_for("dagster dev to serve the code location", location_loaded, 240)
        yield ui
    finally:
        stop_process_group(proc)
        instance.dispose()


def _past_partitions(spec: TableSpec, days: int) -> list[str]:
    """The ``days`` partitions before today's (today's export instant may be in the past or not)."""
    today = dt.date.fromisoformat(partitions_for(spec).get_last_partition_key())
    return [(today - dt.timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def _latest_check_outcomes(instance: dg.DagsterInstance, key: dg.AssetKey, check: str) -> dict[str, tuple[bool, str]]:
    """Partition -> (passed, description) of the newest evaluation of one check."""
    out: dict[str, tuple[bool, str]] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, check), limit=100):
        evaluation = record.evaluation
        if evaluation is not None and evaluation.partition not in out:  # newest first
            out[evaluation.partition] = (evaluation.passed, evaluation.description or "")
    return out


def _max_simultaneous(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@dataclass
class Launched:
    native_id: str
    native_days: list[str]
    scan_id: str
    scan_day: str
    launched_at: float


@pytest.fixture(scope="module")
def launched(ui: DagsterUI) -> Launched:
    """Both backfills at once, as two clicks would: the daemon runs them side by side (one wait, not two)."""
    days = _past_partitions(ui.native, DAYS)
    earliest = backdate_point_in_time_recovery(ui.aws.endpoint_url, ui.native.dynamodb_table, days=PITR_DAYS)
    assert earliest < ui.native.export_time(days[0])
    [scan_day] = _past_partitions(ui.scan, 1)
    started = time.monotonic()
    return Launched(
        native_id=ui.launch_asset_backfill(ui.native, days),
        native_days=days,
        scan_id=ui.launch_asset_backfill(ui.scan, [scan_day]),
        scan_day=scan_day,
        launched_at=started,
    )


def test_native_backfill_of_seven_past_days_from_the_ui_publishes_seven_checked_partitions(
    ui: DagsterUI, launched: Launched
):
    spec, keys = ui.native, asset_keys(ui.native)
    days, backfill_id = launched.native_days, launched.native_id
    backfill = ui.wait_for_backfill(backfill_id, timeout=420)
    elapsed = time.monotonic() - launched.launched_at
    runs = ui.backfill_runs(backfill_id)
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, (
        backfill.status,
        {r.run_id: (r.status, ui.failures(r)) for r in runs},
    )
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert sorted({r.tags["dagster/partition"] for r in runs}) == days
    print(f"\nnative backfill of {DAYS} partitions: {len(runs)} runs, {elapsed:.0f} s from launch to completion")

    # One export per day, asked for that day's instant, read no table capacity.
    for day in days:
        [raw] = ui.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys["export"], asset_partitions=[day]), limit=5
        ).records
        meta = raw.asset_materialization.metadata
        assert meta["export_method"].value == "native" and meta["dagster/row_count"].value == ITEMS
        assert dt.datetime.fromisoformat(meta["export_time"].value.replace("Z", "+00:00")) == spec.export_time(day)
        assert meta["read_capacity_consumed"].value == 0.0

    # Seven partitions in Glue, each pointing at Parquet that holds every item once.
    registered = list_partitions(ui.aws.client("glue"), database=spec.catalog_database, table=spec.catalog_table)
    assert [p.value for p in registered] == days
    filesystem = ui.aws.arrow_filesystem()
    for partition in registered:
        table = pads.dataset(
            partition.location.removeprefix("s3://"), filesystem=filesystem, format="parquet"
        ).to_table()
        assert table.num_rows == ITEMS, (partition.value, partition.location)
        assert sorted(table.column("user").to_pylist()) == sorted(r["User"] for r in reviews(ITEMS)), partition.value

    # Every check of every partition ran and passed.
    for key, checks in ((keys["parquet"], PARTITION_CHECKS), (keys["catalog"], CATALOG_CHECKS)):
        for check in checks:
            outcomes = _latest_check_outcomes(ui.instance, key, check)
            assert sorted(outcomes) == days, (check, sorted(outcomes))
            assert all(passed for passed, _ in outcomes.values()), (check, outcomes)

    # Every run's export step was in the dynamodb_export pool (limit 2, every slot given back),
    # and never more than the limit ran at once.
    export_step = keys["export"].to_python_identifier()  # the raw export asset's op
    pool = ui.instance.event_log_storage.get_concurrency_info("dynamodb_export")
    assert (pool.limit, pool.claimed_slots, pool.pending_steps) == (EXPORT_POOL_LIMIT, [], [])
    intervals = []
    for run in runs:
        plan = ui.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        assert {s.key: s.pool for s in plan.steps}[export_step] == "dynamodb_export"
        events = [e for e in ui.instance.all_logs(run.run_id) if e.dagster_event and e.step_key]
        starts = {e.step_key: e.timestamp for e in events if e.dagster_event.event_type_value == "STEP_START"}
        ends = {
            e.step_key: e.timestamp
            for e in events
            if e.dagster_event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")
        }
        assert export_step in starts and export_step in ends, (run.run_id, sorted(starts))
        intervals.append((starts[export_step], ends[export_step]))
    peak = _max_simultaneous(intervals)
    print(f"at most {peak} exports ran at once (pool limit {EXPORT_POOL_LIMIT})")
    assert 1 <= peak <= EXPORT_POOL_LIMIT

    # Neither the export sensors nor automation started anything besides the two backfills.
    others = [
        r for r in ui.instance.get_runs() if r.tags.get("dagster/backfill") not in (backfill_id, launched.scan_id)
    ]
    assert others == [], [(r.job_name, r.tags) for r in others]


def test_scan_backfill_of_a_past_day_from_the_ui_fails_with_the_refusal(ui: DagsterUI, launched: Launched):
    spec, past = ui.scan, launched.scan_day
    backfill = ui.wait_for_backfill(launched.scan_id, timeout=420)
    runs = ui.backfill_runs(backfill.backfill_id)
    assert backfill.status == BulkActionStatus.COMPLETED_FAILED, (backfill.status, [r.status for r in runs])
    [run] = runs
    assert run.status == dg.DagsterRunStatus.FAILURE
    messages = " | ".join(ui.failures(run))
    assert f"table {spec.dynamodb_table!r}: partition {past} is not the current day" in messages, messages
    assert "export_method: native" in messages, messages
    # Nothing was exported, converted or published for that day.
    keys = asset_keys(spec)
    for key in (keys["export"], keys["parquet"], keys["catalog"]):
        assert not ui.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[past]), limit=1
        ).records, key
    listed = ui.aws.client("s3").list_objects_v2(Bucket=spec.s3_bucket, Prefix=spec.export_prefix(past) + "/")
    assert listed.get("KeyCount", 0) == 0, [o["Key"] for o in listed.get("Contents", [])]
