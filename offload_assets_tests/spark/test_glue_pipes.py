"""engine: glue end to end: DynamoDB -> export -> Glue job (the packaged script on local PySpark, via Pipes) -> catalog."""

from __future__ import annotations

import base64
import random

import dagster as dg
import pyarrow.dataset as ds
import pytest

from offload_assets.conversion import ConversionOptions, convert_export_to_parquet
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.resources import default_resources
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.snapshot.build import find_export_for_partition, latest_complete_snapshot, table_key_attributes
from offload_assets.spark.glue_launch import (
    GlueJobMissingError,
    ensure_glue_job,
    glue_job_name,
    job_script_bytes,
    package_zip_bytes,
)
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.spark.export_generator import export_item
from offload_assets_tests.spark.glue_standin import LocalSparkGlueJobs

ITEMS = 1500
ROLE = "arn:aws:iam::123456789012:role/offload-assets-glue"


def wire(value: dict) -> dict:
    """Native export JSON -> what the low-level client sends (binary as bytes)."""
    ((tag, payload),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(payload)}
    if tag == "BS":
        return {"BS": [base64.b64decode(e) for e in payload]}
    if tag == "M":
        return {"M": {k: wire(v) for k, v in payload.items()}}
    if tag == "L":
        return {"L": [wire(v) for v in payload]}
    return value


@pytest.fixture()
def glue_project(aws, emulator, tmp_path):
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="Reviews",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    rng = random.Random(11)
    items = [export_item(rng, n) for n in range(ITEMS)]
    for start in range(0, ITEMS, 25):
        dynamodb.batch_write_item(
            RequestItems={
                "Reviews": [
                    {"PutRequest": {"Item": {k: wire(v) for k, v in it.items()}}} for it in items[start : start + 25]
                ]
            }
        )
    tables_file = write_tables_file(
        tmp_path / "tables.yaml",
        {
            "dynamodb_table": "Reviews",
            "s3_bucket": "glue-bucket",
            "engine": "glue",
            "glue_role_arn": ROLE,
            "glue_workers": 4,
        },
    )
    spec = load_tables_file(tables_file).table("Reviews")
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    resources = {
        **default_resources(target="local", endpoint_url=emulator.endpoint_url),
        "glue_jobs": LocalSparkGlueJobs(
            target="local", endpoint_url=emulator.endpoint_url, workdir=str(tmp_path / "glue"), message_poll_seconds=1
        ),
    }
    return defs, spec, resources, items


def test_glue_engine_converts_through_pipes_and_the_snapshot_is_published(glue_project, aws, tmp_path):
    defs, spec, resources, items = glue_project
    partition = partitions_for(spec).get_last_partition_key()
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(assets, resources=resources, partition_key=partition, instance=instance)
    assert result.success

    meta = result.asset_materializations_for_node(asset_keys(spec)["parquet"].to_python_identifier())[0].metadata
    # reported by the job itself through Pipes (S3 messages), then the snapshot it wrote
    assert meta["glue_rows"].value == ITEMS == meta["dagster/row_count"].value
    assert meta["glue_files"].value == meta["files"].value >= 1
    assert meta["glue_rescued_values"].value == meta["rescued_values"].value > 0
    assert meta["glue_rescued_counts"].value == meta["rescued_counts"].value
    assert meta["engine"].value == "glue" and meta["AWS Glue Job Run ID"].value
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("pass 2/2 done: 1500 rows" in m for m in logs)  # the job's log lines came back through Pipes
    assert any("offload_assets.zip" in m and "code:" in m for m in logs)  # it ran the uploaded package

    glue = aws.client("glue")
    job = glue.get_job(JobName=glue_job_name(spec))["Job"]
    assert job["Role"] == ROLE and job["NumberOfWorkers"] == 4
    package = job["DefaultArguments"]["--extra-py-files"]
    assert package.endswith("/offload_assets.zip") and package_zip_bytes() == package_zip_bytes()
    run_dirs = list((tmp_path / "glue").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "offload_assets.zip").stat().st_size > 10_000
    bucket, key = job["Command"]["ScriptLocation"].removeprefix("s3://").split("/", 1)
    assert aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == job_script_bytes()

    # same Parquet as the in-process converter on the same export
    s3, fs = aws.client("s3"), aws.arrow_filesystem()
    export = find_export_for_partition(s3, spec, partition)
    local = convert_export_to_parquet(
        [f"{spec.s3_bucket}/{f.key}" for f in export.data_files],
        fs,
        str(tmp_path / "local"),
        __import__("pyarrow.fs").fs.LocalFileSystem(),
        table_name="Reviews",
        options=ConversionOptions(key_attributes=table_key_attributes(aws.client("dynamodb"), "Reviews")),
    )
    snap = latest_complete_snapshot(s3, spec, partition)
    assert snap.schema.names[0] == "pk" and snap.schema.names[-1] == "_rescued_data"  # the key first, on Glue too
    assert snap.schema.equals(local.schema, check_metadata=True) and snap.rescued_counts == local.rescued_counts
    on_glue = ds.dataset([f["path"] for f in snap.files], filesystem=fs, format="parquet").to_table().sort_by("pk")
    assert on_glue.equals(ds.dataset(str(tmp_path / "local"), format="parquet").to_table().sort_by("pk"))

    # published by the catalog asset: SQL sees every item
    assert run_query('SELECT count(*) FROM "dynamodb-exports"."reviews"', connection=aws).scalar() == ITEMS


def test_a_missing_job_without_a_role_is_refused_naming_table_and_job(aws, tmp_path):
    tables_file = write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Reviews", "s3_bucket": "glue-bucket", "engine": "glue", "glue_job_name": "convert-reviews"},
    )
    spec = load_tables_file(tables_file).table("Reviews")
    assert spec.engine == "glue" and spec.glue_role_arn is None
    with pytest.raises(GlueJobMissingError, match="table 'Reviews': Glue job 'convert-reviews' does not exist"):
        ensure_glue_job(aws.client("glue"), spec, "s3://glue-bucket/script.py")
    aws.client("glue").create_job(
        Name="convert-reviews", Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://x/y.py"}
    )
    assert ensure_glue_job(aws.client("glue"), spec, "s3://glue-bucket/script.py") == "convert-reviews"
    job = aws.client("glue").get_job(JobName="convert-reviews")["Job"]  # brought up to date, role kept
    assert job["Role"] == ROLE and job["Command"]["ScriptLocation"] == "s3://glue-bucket/script.py"


def test_the_job_script_takes_its_request_among_glue_and_pipes_arguments():
    from offload_assets.spark.glue_convert_job import parse_args, read_request

    args = parse_args(
        [
            "--JOB_NAME",
            "j",
            "--request",
            "s3://b/k.json",
            "--dagster-pipes-context",
            "e30=",
            "--additional-python-modules",
            "dagster-pipes",
            "--enable-metrics",
            "true",
        ]
    )
    assert args.request == "s3://b/k.json" and args.spark_master is None
    with pytest.raises(ValueError, match="--request must be an s3://bucket/key URI"):
        read_request(None, "/tmp/request.json")
