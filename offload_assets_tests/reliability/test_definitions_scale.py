"""Fifty configured tables build and validate quickly (the UI and daemon load definitions often)."""

import time

import dagster as dg

from offload_assets.defs.definitions import build_definitions
from offload_assets_tests.conftest import write_tables_file

TABLES = 50
# The target. Measured: ~1.4 s CPU (build ~0.7 s + validate ~0.7 s) with one job, three
# check ops, a schedule and three sensors per table. It was ~2.4 s with three jobs and five check ops
# per table: Dagster resolves every asset job against the whole asset graph (quadratic), so jobs are
# the expensive part; the schedule and sensors run subsets of the one job. CPU time is asserted:
# wall time measures the neighbours.
BUDGET_SECONDS = 2.0


def test_fifty_tables_build_and_validate_within_budget(tmp_path):
    entries = [
        {
            "dynamodb_table": f"Table{i:02d}",
            "s3_bucket": f"bucket-{i % 5}",
            "export_method": ("scan", "native", "incremental")[i % 3],
            "export_hour": i % 24,
        }
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
