"""Dagster side of ``engine: glue``: run the conversion as an AWS Glue (PySpark) job through Dagster Pipes.

The launcher (:mod:`offload_assets.spark.glue_launch`) uploads the packaged job script, creates or
checks the Glue job and writes the conversion request; dagster-aws's ``PipesGlueClient`` starts the
run with the Pipes bootstrap arguments, waits for it, and the job's logs and reported metadata come
back through S3 (``PipesS3ContextInjector`` / ``PipesS3MessageReader``). The job writes the same
run directory and ``_snapshot.json`` as the in-process path, so the catalog asset publishes either.
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
from dagster_aws.pipes import PipesGlueClient, PipesS3ContextInjector, PipesS3MessageReader

from offload_assets.defs.metadata import snapshot_metadata
from offload_assets.snapshot.build import SnapshotManifest, read_snapshot_manifest
from offload_assets.spark.glue_launch import prepare_glue_conversion
from offload_assets.table_spec import TableSpec


def pipes_glue_client(
    glue_jobs_client: Any, s3_client: Any, bucket: str, *, poll_seconds: float, key_prefix: str
) -> PipesGlueClient:
    """A Pipes Glue client whose context and messages travel through ``bucket`` (S3)."""
    return PipesGlueClient(
        client=glue_jobs_client,
        context_injector=PipesS3ContextInjector(bucket=bucket, client=s3_client, key_prefix=key_prefix),
        message_reader=PipesS3MessageReader(bucket=bucket, client=s3_client, interval=poll_seconds),
        forward_termination=True,
    )


def snapshot_on_glue(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    *,
    s3: Any,
    glue: Any,
    glue_jobs: Any,
    key_attributes: tuple[str, ...] = (),
) -> tuple[SnapshotManifest, dict[str, Any]]:
    """Convert the partition's export on Glue; returns the written snapshot and the job's reported metadata.

    ``s3``, ``glue`` and ``glue_jobs`` are the project's resources (S3, Glue catalog, Glue jobs).
    """
    s3_client, connection, jobs_client = s3.get_table_client(spec), glue_jobs.connection(), glue_jobs.get_client()
    prepared = prepare_glue_conversion(
        s3_client,
        glue.get_client(),
        jobs_client,
        spec,
        context.partition_key,
        run_id=context.run.run_id,
        region=connection.region_name,
        python_modules=glue_jobs.python_modules,
        key_attributes=key_attributes,
    )
    context.log.info(f"table {spec.dynamodb_table!r}: Glue job {prepared.job_name}, request {prepared.request_uri}")
    client = pipes_glue_client(
        jobs_client,
        s3_client,
        spec.s3_bucket,
        poll_seconds=glue_jobs.message_poll_seconds,
        key_prefix=f"{spec.s3_prefix}/glue/pipes",
    )
    invocation = client.run(
        context=context,
        start_job_run_params={"JobName": prepared.job_name, "Arguments": {"--request": prepared.request_uri}},
    )
    reported: dict[str, Any] = {}
    for result in invocation.get_results():
        reported.update({k: v for k, v in (result.metadata or {}).items()})
    snap = read_snapshot_manifest(s3_client, bucket=spec.s3_bucket, run_dir=prepared.run_dir)
    if snap is None:
        raise dg.Failure(
            description=f"table {spec.dynamodb_table!r}: Glue job {prepared.job_name} succeeded but wrote no "
            f"_snapshot.json under s3://{spec.s3_bucket}/{prepared.run_dir}/"
        )
    reported.update(invocation.metadata)  # the Glue run id, job name and console URL
    return snap, reported


def glue_snapshot_result(
    context: dg.AssetExecutionContext,
    spec: TableSpec,
    *,
    s3: Any,
    glue: Any,
    glue_jobs: Any,
    key_attributes: tuple[str, ...] = (),
) -> dg.MaterializeResult:
    """The parquet_snapshot asset's result for ``engine: glue`` (same metadata as the local engine, plus the job's)."""
    started = time.monotonic()
    snap, reported = snapshot_on_glue(
        context, spec, s3=s3, glue=glue, glue_jobs=glue_jobs, key_attributes=key_attributes
    )
    return dg.MaterializeResult(
        metadata={
            **{k if k.startswith("AWS Glue") else f"glue_{k}": v for k, v in reported.items()},
            **snapshot_metadata(snap, started),
            "engine": "glue",
        }
    )
