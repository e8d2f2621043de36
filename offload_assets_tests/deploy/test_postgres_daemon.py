"""deploy/: the production Dagster instance on a real PostgreSQL, run the way a deployment runs it.

A throwaway PostgreSQL (Debian's binaries, a temporary data directory, a loopback port); the instance
is deploy/dagster.yaml copied as is into DAGSTER_HOME, with its connection from the environment; the
code location runs as its own gRPC code server and the daemon reaches it through deploy/workspace.yaml,
as on ECS. ``dagster job backfill`` queues three partitions of the offload job (QueuedRunCoordinator);
the daemon dequeues them, the code server launches them, and the three runs export (native, within the
``dynamodb_export`` pool's limit), convert and publish. Their runs and materializations are read back
from PostgreSQL itself.

The code server loads a two-line module building the project's definitions against the test's emulator
(the image runs ``-m offload_assets.definitions`` with ``OFFLOAD_ASSETS_TABLES`` instead).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from offload_assets.catalog.glue_tables import list_partitions
from offload_assets.defs.table_assets import asset_keys
from offload_assets.local.demo_data import seed_reviews
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.defs.conftest import stop_process_group, wait_for
from offload_assets_tests.deploy.postgres import free_loopback_port, running_postgres

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
ITEMS = 40


def _start(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )


def _most_at_once(instance, runs, asset_key) -> int:
    """The most steps materializing ``asset_key`` that were running at once, from the runs' event logs."""
    edges = []
    for run in runs:
        events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
        [step] = {
            e.step_key
            for e in events
            if e.dagster_event.is_step_materialization and e.dagster_event.asset_key == asset_key
        }
        for e in events:
            if e.step_key == step and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                edges.append((e.timestamp, 1 if e.dagster_event.event_type_value == "STEP_START" else -1))
    running = most = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # an end before a start at the same instant
        running += change
        most = max(most, running)
    return most


def test_daemon_runs_a_three_partition_backfill_on_postgres(tmp_path, emulator, aws, monkeypatch):
    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Reviews", "s3_bucket": "pg-lake", "export_method": "native"},
    )
    spec = load_tables_file(tables).tables[0]
    keys = asset_keys(spec)
    items = len(seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=ITEMS))
    backdate_point_in_time_recovery(emulator.endpoint_url, "Reviews", days=4)
    today = dt.datetime.now(dt.UTC).date()
    partitions = [(today - dt.timedelta(days=n)).isoformat() for n in (2, 1, 0)]

    module = tmp_path / "pg_code_location.py"
    module.write_text(
        "from offload_assets.defs.definitions import build_definitions\n"
        f"defs = build_definitions({str(tables)!r}, target='local', endpoint_url={emulator.endpoint_url!r})\n"
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    code_port = free_loopback_port()

    with running_postgres() as pg, contextlib.ExitStack() as stack:
        env = {
            **os.environ,
            **pg.dagster_env(),
            "DAGSTER_HOME": str(home),
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(code_port),
            "OFFLOAD_ASSETS_TARGET": "local",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The instance from deploy/dagster.yaml: creating it creates dagster-postgres's schema, before
        # several processes race to.
        instance = dg.DagsterInstance.get()
        stack.callback(instance.dispose)
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 6
        assert concurrency.pool_config.default_pool_limit == 2

        code_log, daemon_log = tmp_path / "code_server.log", tmp_path / "daemon.log"
        code_server = _start(
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(code_port),
                "-f",
                str(module),
                "--location-name",
                "offload_assets",
            ],
            env,
            code_log,
            tmp_path,
        )
        stack.callback(stop_process_group, code_server)

        def code_server_up():
            check = [str(BIN / "dagster"), "api", "grpc-health-check", "--host", "127.0.0.1", "--port", str(code_port)]
            return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0

        wait_for("the code server", code_server_up, 120, code_log, interval=2)
        # The daemon once the code server answers (a daemon that finds it down retries only a minute later);
        # it starts while the backfill is being submitted.
        daemon = _start(
            [str(BIN / "dagster-daemon"), "run", "-w", str(DEPLOY / "workspace.yaml")], env, daemon_log, tmp_path
        )
        stack.callback(stop_process_group, daemon)

        backfill = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "backfill",
                "-w",
                str(DEPLOY / "workspace.yaml"),
                "-j",
                "reviews_offload_job",
                "--partitions",
                ",".join(partitions),
                "--noprompt",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        [backfill_record] = instance.get_backfills()

        def backfill_runs_finished():
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_record.backfill_id}))
            return runs if len(runs) == 3 and all(r.is_finished for r in runs) else None

        runs = wait_for("the backfill's three runs", backfill_runs_finished, 240, daemon_log, interval=2)
        failures = {
            r.tags["dagster/partition"]: [
                e.message for e in instance.all_logs(r.run_id) if e.dagster_event and e.dagster_event.is_failure
            ]
            for r in runs
            if r.status != dg.DagsterRunStatus.SUCCESS
        }
        assert not failures, failures
        assert sorted(r.tags["dagster/partition"] for r in runs) == partitions
        # The dynamodb_export pool held: at no moment were more than two export steps running.
        assert _most_at_once(instance, runs, keys["export"]) <= 2

        # What is in PostgreSQL itself: the three runs, and each partition's materializations.
        with contextlib.closing(pg.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", ([r.run_id for r in runs],))
            assert sorted(status for _, status in cur.fetchall()) == ["SUCCESS"] * 3
            cur.execute(
                "SELECT asset_key, partition, count(*) FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = ANY(%s) "
                "GROUP BY asset_key, partition",
                ([r.run_id for r in runs],),
            )
            stored = {(dg.AssetKey.from_db_string(k), p): n for k, p, n in cur.fetchall()}
        for key in (keys["export"], keys["parquet"], keys["catalog"]):
            for partition in partitions:
                assert stored.get((key, partition)) == 1, (key, partition, stored)
        [record] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys["parquet"], asset_partitions=[partitions[0]]), limit=5
        ).records
        assert record.asset_materialization.metadata["dagster/row_count"].value == items
        # The export pool got deploy/dagster.yaml's default limit the first time a run used it.
        assert instance.event_log_storage.get_concurrency_info("dynamodb_export").slot_count == 2
        # And the data path ran: the three partitions are in the catalog.
        glue_partitions = list_partitions(aws.client("glue"), database=spec.catalog_database, table=spec.catalog_table)
        assert sorted(p.value for p in glue_partitions) == partitions
