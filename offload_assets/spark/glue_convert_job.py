"""AWS Glue (PySpark) job: convert one DynamoDB export to a Parquet snapshot, reporting through Dagster Pipes.

Ships in the package; the project uploads it to S3 and points the Glue job at it. Arguments:

    --request s3://bucket/key.json   what to convert (written by the launcher, see glue_launch.py)
    --spark-master local[2]          optional: run on local PySpark instead of Glue's session

plus Glue's own arguments and Dagster Pipes' ``--dagster-pipes-context`` / ``--dagster-pipes-messages``
(when present, logs and the materialization's metadata flow back to Dagster through S3). The
conversion is :func:`offload_assets.spark.spark_conversion.convert_export_on_spark` (the
in-process converter's core on every export file); the job ends by writing the run directory's
``_snapshot.json``, which marks the snapshot complete for the catalog asset. The endpoint comes
from ``AWS_ENDPOINT_URL`` when set (a local emulator); credentials from the standard chain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glue_convert_job", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--request", required=True, help="s3:// URI of the conversion request (JSON)")
    parser.add_argument("--spark-master", default=None, help="run on local PySpark, e.g. local[2]")
    args, _glue_and_pipes_args = parser.parse_known_args(argv)
    return args


def read_request(s3: Any, uri: str) -> dict[str, Any]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"--request must be an s3://bucket/key URI, got {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def spark_session(master: str | None) -> Any:
    if master:
        from offload_assets.spark.spark_conversion import local_spark_session

        cores = int(master[len("local[") : -1]) if master.startswith("local[") and master[6:-1].isdigit() else 2
        return local_spark_session("offload-assets-glue-job", cores=cores)
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()  # on Glue: the job's session


def run_job(
    request: dict[str, Any],
    s3: Any,
    spark: Any,
    *,
    endpoint_url: str | None,
    log: Callable[[str], None],
    report: Callable[..., None] | None,
) -> dict[str, Any]:
    """Convert, write ``_snapshot.json`` and report; returns the reported metadata."""
    from offload_assets.conversion import ConversionOptions, ExpectedDataFile
    from offload_assets.conversion.schema_codec import schema_from_text
    from offload_assets.snapshot.build import write_snapshot_manifest
    from offload_assets.spark.spark_conversion import FilesystemSpec, convert_export_on_spark

    started = time.monotonic()
    snap = request["snapshot"]
    table = request["table_name"]
    import offload_assets

    log(
        f"table {table!r}: converting export {snap['export_id']} ({len(request['input_files'])} file(s)) "
        f"into s3://{request['output_dir']}/ on Spark {spark.version} (code: {os.path.dirname(offload_assets.__file__)})"
    )
    result = convert_export_on_spark(
        spark,
        request["input_files"],
        FilesystemSpec(kind="s3", region=request.get("region"), endpoint_url=endpoint_url),
        request["output_dir"],
        table_name=table,
        existing_schema=schema_from_text(request["existing_schema"]) if request.get("existing_schema") else None,
        options=ConversionOptions(
            compression=request.get("compression", "zstd"), key_attributes=tuple(request.get("key_attributes") or ())
        ),
        log=log,
        expected_files={
            path: ExpectedDataFile(e.get("md5Checksum"), e.get("itemCount"))
            for path, e in (request.get("expected_files") or {}).items()
        },
    )
    bucket = snap["bucket"]
    files = [{"path": f.path, "rows": f.rows, "bytes": f.bytes} for f in result.files]
    write_snapshot_manifest(
        s3,
        bucket=bucket,
        run_dir=snap["run_dir"],
        partition_key=snap["partition_key"],
        export_id=snap["export_id"],
        rows=result.rows,
        files=files,
        schema=result.schema,
        rescued_counts=dict(result.rescued_counts),
        extra={
            "export_item_count": snap.get("export_item_count"),
            "export_time": snap.get("export_time"),
            "input_bytes": result.input_bytes,
            "renamed_columns": dict(result.renamed_columns),
            "quarantined_lines": 0,
            "engine": "glue",
        },
    )
    metadata = {
        "rows": result.rows,
        "files": len(files),
        "bytes": result.output_bytes,
        "rescued_values": sum(result.rescued_counts.values()),
        "rescued_counts": {"raw_value": dict(result.rescued_counts), "type": "json"},
        "spark_duration_seconds": round(time.monotonic() - started, 3),
        "spark_version": spark.version,
    }
    log(f"table {table!r}: {result.rows} rows in {len(files)} file(s), {metadata['rescued_values']} rescued values")
    if report is not None:
        report(metadata=metadata)
    return metadata


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import boto3

    endpoint_url = os.environ.get("AWS_ENDPOINT_URL") or None
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    if "--dagster-pipes-context" not in argv:
        spark = spark_session(args.spark_master)
        run_job(read_request(s3, args.request), s3, spark, endpoint_url=endpoint_url, log=print, report=None)
        return
    from dagster_pipes import PipesCliArgsParamsLoader, PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes

    with open_dagster_pipes(
        params_loader=PipesCliArgsParamsLoader(),
        context_loader=PipesS3ContextLoader(client=s3),
        message_writer=PipesS3MessageWriter(client=s3, interval=2),
    ) as pipes:
        spark = spark_session(args.spark_master)
        run_job(
            read_request(s3, args.request),
            s3,
            spark,
            endpoint_url=endpoint_url,
            log=pipes.log.info,
            report=pipes.report_asset_materialization,
        )


if __name__ == "__main__":
    main()
