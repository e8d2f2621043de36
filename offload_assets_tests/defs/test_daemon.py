"""The whole loop with the real Dagster daemon: an export dropped by another process is converted, once.

``dagster-daemon run`` runs in its own process group on this machine, with a DAGSTER_HOME
whose dagster.yaml disables telemetry, against the session's local emulator. Nobody clicks:
the export sensor sees the export, the run it requests converts, checks and publishes the
partition, and neither the sensor nor automation starts a second run.
"""

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from offload_assets.catalog.glue_tables import list_partitions
from offload_assets.defs.sensors import EXPORT_ID_TAG
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.defs.conftest import reviews, stop_process_group, wait_for, write_code_location

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 80
CHECKS = ("row_count_parity", "unique_primary_keys", "schema_drift")


def _describe_extra_runs(instance, runs, expected) -> str:
    """What the unexpected runs targeted and who launched them (for the failure message)."""
    return "\n".join(
        f"run {r.run_id} job={r.job_name} assets={sorted(k.to_user_string() for k in r.asset_selection or ())} "
        f"launched_by={ {k: v for k, v in r.tags.items() if k.startswith(('dagster/sensor', 'dagster/schedule', 'dagster/asset_evaluation'))} } "
        f"created={instance.get_run_record_by_id(r.run_id).create_timestamp}"
        + (" (expected)" if r.run_id == expected.run_id else "")
        for r in runs
    )


def test_daemon_converts_an_export_dropped_by_another_process_exactly_once(tmp_path, emulator, aws):
    # The nightly schedule is on too: put its tick half a day away so only the sensor acts here.
    export_hour = (dt.datetime.now(dt.UTC).hour + 12) % 24
    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {
            "dynamodb_table": "Reviews",
            "s3_bucket": "daemon-test",
            "sensor_interval_seconds": 5,
            "export_hour": export_hour,
        },
    )
    spec = load_tables_file(tables).tables[0]
    keys = asset_keys(spec)
    today = partitions_for(spec).get_last_partition_key()
    from offload_assets.local.demo_data import create_reviews_table, put_items

    create_reviews_table(aws.client("dynamodb"), "Reviews")
    put_items(aws.client("dynamodb"), "Reviews", reviews(ITEMS))

    location = write_code_location(tmp_path, tables, emulator.endpoint_url, "offload_daemon_test")
    workspace, env = location.workspace, location.env
    daemon_bin = Path(sys.executable).with_name("dagster-daemon")
    command = [str(daemon_bin)] if daemon_bin.exists() else [sys.executable, "-m", "dagster._daemon"]
    instance = dg.DagsterInstance.from_config(str(location.dagster_home))
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "run", "-w", str(workspace)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        # The sensor daemon is up and has ticked the export sensor at least once (nothing to find yet).
        def export_sensor_ticked():
            states = instance.all_instigator_state()
            return any(
                s.name == "reviews_export_sensor" and instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1)
                for s in states
            )

        wait_for("the export sensor's first tick", export_sensor_ticked, 180, log)
        assert instance.get_runs() == []

        # Another process drops a complete export in the table's landing area, as DynamoDB would.
        dropped = subprocess.run(
            [
                sys.executable,
                "-m",
                "offload_assets_tests.defs.conftest",
                emulator.endpoint_url,
                spec.s3_bucket,
                spec.export_prefix_root,
                str(ITEMS),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dropped.returncode == 0, dropped.stderr
        export_id = dropped.stdout.strip().splitlines()[-1]

        def finished_run():
            runs = instance.get_runs(filters=dg.RunsFilter(tags={EXPORT_ID_TAG: export_id}))
            return runs if runs and runs[0].is_finished else None

        runs = wait_for(f"the run converting export {export_id}", finished_run, 300, log)
        assert len(runs) == 1, [(r.run_id, r.status, r.tags) for r in runs]
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS, [
            e.message for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_failure
        ]
        assert run.job_name == "reviews_offload_job" and run.tags["dagster/partition"] == today
        assert run.asset_selection == {keys["parquet"], keys["catalog"]}  # the conversion steps only

        # Give the sensors and the automation several more ticks: still exactly one run.
        time.sleep(25)
        runs = instance.get_runs()
        assert [r.run_id for r in runs] == [run.run_id], _describe_extra_runs(instance, runs, run)

        # The raw export is recorded with the export's facts, and the partition answers SQL.
        [raw] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys["export"], asset_partitions=[today]), limit=5
        ).records
        assert raw.asset_materialization.metadata["export_id"].value == export_id
        assert raw.asset_materialization.metadata["dagster/row_count"].value == ITEMS
        assert [p.value for p in list_partitions(aws.client("glue"), database="dynamodb-exports", table="reviews")] == [
            today
        ]
        count = run_query(
            f'SELECT count(*) FROM "dynamodb-exports"."reviews" WHERE ddb_export_timestamp = \'{today}\'',
            connection=aws,
        )
        assert count.scalar() == ITEMS
        for name in CHECKS:
            [record] = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(keys["parquet"], name), limit=1
            )
            assert record.evaluation.passed and record.evaluation.partition == today, (
                name,
                record.evaluation.description,
            )
        [sql_check] = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(keys["catalog"], "sql_row_count_parity"), limit=1
        )
        assert sql_check.evaluation.passed and sql_check.evaluation.metadata["sql_rows"].value == ITEMS
        # The sensor's cursor is JSON and holds the export id.
        state = next(s for s in instance.all_instigator_state() if s.name == "reviews_export_sensor")
        cursor = json.loads(state.instigator_data.cursor)
        assert export_id in cursor["seen"]
    finally:
        stop_process_group(proc)
        instance.dispose()
    assert proc.poll() is not None
