"""Fifty configured tables build and validate quickly (the UI and daemon load definitions often)."""

import time

import dagster as dg

from offload_assets.definitions import build_definitions
from offload_assets_tests.conftest import write_tables_file

TABLES = 50
# Measured with only the three assets and one job per table: ~0.25 s build + ~0.4 s validate.
# With the orchestration (3 jobs, 5 checks, schedule and sensors per table) it is ~2.4 s CPU on a
# loaded 2-core machine: Dagster resolves each of the 150 asset jobs against the whole asset graph
# (quadratic). The 2 s target is therefore NOT met yet; this budget guards against it
# getting worse until the job layout is reworked (e.g. one export job and one convert job shared
# by all tables, partitioned per table). CPU time is asserted: wall time measures the neighbours.
BUDGET_SECONDS = 2.0


def test_fifty_tables_build_and_validate_within_budget(tmp_path):
    entries = [
        {"dynamodb_table": f"Table{i:02d}", "s3_bucket": f"bucket-{i % 5}",
         "export_method": ("scan", "native", "incremental")[i % 3], "export_hour": i % 24}
        for i in range(TABLES)
    ]
    tables_file = write_tables_file(tmp_path / "tables.yaml", *entries)
    build_definitions(tables_file, target="local")  # warm imports; not what is measured

    timings = []
    for _ in range(3):  # the best of three: a busy neighbour slows one attempt, not the code
        started = time.process_time()
        defs = build_definitions(tables_file, target="local")
        dg.Definitions.validate_loadable(defs)
        timings.append(time.process_time() - started)
    elapsed = min(timings)

    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {f"table{i:02d}_offload_job" for i in range(TABLES)} <= jobs
    assert len(list(defs.resolve_asset_graph().get_all_asset_keys())) >= TABLES * 3
    assert elapsed < BUDGET_SECONDS, f"{TABLES} tables took {elapsed:.2f} s of CPU to build and validate"
