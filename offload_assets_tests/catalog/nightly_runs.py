"""Simulated nights of the real pipeline, for end-to-end catalog tests.

``offload_night`` runs what the nightly job runs for one partition: the table's export (with
the clock set to that night, so the scan method may produce a past day), then the Dagster job's
Parquet-snapshot and catalog-table assets. The newest night can instead run the whole job,
export included, with the real clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from offload_assets.defs.table_assets import asset_keys
from offload_assets.export.partition_export import export_partition
from offload_assets.table_spec import TableSpec


def offload_night(
    connection: Any,
    defs: dg.Definitions,
    spec: TableSpec,
    day: str,
    instance: dg.DagsterInstance,
    *,
    whole_job: bool = False,
):
    job = defs.resolve_job_def(f"{spec.name}_offload_job")
    if whole_job:
        result = job.execute_in_process(partition_key=day, instance=instance)
    else:
        night = spec.export_time(day) + dt.timedelta(minutes=5)
        export_partition(spec, day, dynamodb=connection.client("dynamodb"), s3=connection.client("s3"), now=night)
        keys = asset_keys(spec)
        result = job.execute_in_process(
            partition_key=day, instance=instance, asset_selection=[keys["parquet"], keys["catalog"]]
        )
    assert result.success
    return result
