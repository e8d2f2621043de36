"""Launching the Glue conversion job, without Dagster: upload the script, define the job, write the request.

``prepare_glue_conversion`` does everything a run needs before ``StartJobRun``; the Dagster side
(:mod:`offload_assets.defs.glue_pipes`) then starts the job through Pipes and reads the snapshot back.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from importlib import resources
from typing import Any

from offload_assets.conversion.schema_codec import schema_to_text
from offload_assets.export.layout import ExportManifest
from offload_assets.snapshot.build import find_export_for_partition, new_run_dir
from offload_assets.table_spec import TableSpec

JOB_SCRIPT = "glue_convert_job.py"


class GlueJobMissingError(RuntimeError):
    """The table's Glue job does not exist and no role was configured to create it."""


def job_script_bytes() -> bytes:
    """The job script as shipped in the package."""
    return resources.files("offload_assets.spark").joinpath(JOB_SCRIPT).read_bytes()


def job_script_key(spec: TableSpec) -> str:
    digest = hashlib.sha256(job_script_bytes()).hexdigest()[:12]  # a new script never overwrites a running one
    return f"{spec.s3_prefix}/glue/scripts/{digest}/{JOB_SCRIPT}"


def upload_job_script(s3: Any, spec: TableSpec) -> str:
    """Put the packaged script into the table's bucket (idempotent); returns its s3:// URI."""
    key = job_script_key(spec)
    s3.put_object(Bucket=spec.s3_bucket, Key=key, Body=job_script_bytes(), ContentType="text/x-python")
    return f"s3://{spec.s3_bucket}/{key}"


def glue_job_name(spec: TableSpec) -> str:
    return spec.glue_job_name or f"offload-assets-convert-{spec.name}"


def package_zip_bytes() -> bytes:
    """The ``offload_assets`` package (sources and data files) as a zip for Glue's ``--extra-py-files``.

    Deterministic (sorted names, fixed timestamps), so its hash changes only when the code does.
    """
    root = resources.files("offload_assets")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:

        def add(node: Any, prefix: str) -> None:
            for child in sorted(node.iterdir(), key=lambda c: c.name):
                if child.is_dir():
                    if child.name != "__pycache__":
                        add(child, f"{prefix}{child.name}/")
                elif child.name.endswith((".py", ".yaml", ".md", ".sql")):
                    zf.writestr(zipfile.ZipInfo(f"{prefix}{child.name}", (2020, 1, 1, 0, 0, 0)), child.read_bytes())

        add(root, "offload_assets/")
    return out.getvalue()


def upload_package_zip(s3: Any, spec: TableSpec) -> str:
    """Put the package zip into the table's bucket under its content hash; returns its s3:// URI."""
    body = package_zip_bytes()
    key = f"{spec.s3_prefix}/glue/packages/{hashlib.sha256(body).hexdigest()[:12]}/offload_assets.zip"
    s3.put_object(Bucket=spec.s3_bucket, Key=key, Body=body, ContentType="application/zip")
    return f"s3://{spec.s3_bucket}/{key}"


def job_definition(
    spec: TableSpec, script_uri: str, python_modules: str, package_uri: str | None = None, role: str | None = None
) -> dict[str, Any]:
    """``CreateJob`` / ``UpdateJob`` fields for the table's conversion job."""
    arguments = {"--job-language": "python", "--enable-metrics": "true", "--enable-continuous-cloudwatch-log": "true"}
    if package_uri:
        arguments["--extra-py-files"] = package_uri
    if python_modules:
        arguments["--additional-python-modules"] = python_modules
    return {
        "Role": role or spec.glue_role_arn,
        "Command": {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"},
        "DefaultArguments": arguments,
        "GlueVersion": spec.glue_version,
        "WorkerType": spec.glue_worker_type,
        "NumberOfWorkers": spec.glue_workers,
        "Timeout": int(spec.export_timeout_minutes),
        "MaxRetries": 0,
        "Description": f"offload_assets: DynamoDB export -> Parquet for table {spec.dynamodb_table}",
    }


#: What the job imports beyond Glue's own Python (pyspark, boto3): the package zip needs these.
DEFAULT_PYTHON_MODULES = "dagster-pipes,orjson,pydantic>=2,pyyaml,pyarrow>=17,duckdb>=1.1,isal>=1.6"


def ensure_glue_job(
    glue: Any,
    spec: TableSpec,
    script_uri: str,
    python_modules: str = DEFAULT_PYTHON_MODULES,
    package_uri: str | None = None,
) -> str:
    """Create the job (needs ``glue_role_arn``) or bring an existing one up to date with this script and package.

    A job created by hand keeps its role unless ``glue_role_arn`` says otherwise.
    """
    name = glue_job_name(spec)
    try:
        current = glue.get_job(JobName=name)["Job"]
    except glue.exceptions.EntityNotFoundException:
        current = None
    if spec.glue_role_arn is None and current is None:
        raise GlueJobMissingError(
            f"table {spec.dynamodb_table!r}: Glue job {name!r} does not exist; create it (see README) "
            "or set glue_role_arn in the tables file so the project creates it"
        )
    role = spec.glue_role_arn or current["Role"]
    definition = job_definition(spec, script_uri, python_modules, package_uri, role)
    if current is None:
        glue.create_job(Name=name, **definition)
    elif any(current.get(k) != v for k, v in definition.items() if k != "Description"):
        if "amazonaws.com" in (glue.meta.endpoint_url or ""):
            glue.update_job(JobName=name, JobUpdate=definition)
        else:  # the local emulator (moto 5.1) has no UpdateJob: replace the job instead
            glue.delete_job(JobName=name)
            glue.create_job(Name=name, **definition)
    return name


@dataclass(frozen=True)
class GlueConversion:
    """Everything prepared for one job run."""

    job_name: str
    request_uri: str
    run_dir: str
    export: ExportManifest


def prepare_glue_conversion(
    s3: Any,
    glue_catalog: Any,
    glue_jobs: Any,
    spec: TableSpec,
    partition_key: str,
    *,
    run_id: str,
    existing_schema: Any = None,
    region: str | None = None,
    python_modules: str = DEFAULT_PYTHON_MODULES,
    key_attributes: tuple[str, ...] = (),
) -> GlueConversion:
    """Find the export, upload the script, define the job and write the request the job reads."""
    from offload_assets.catalog.glue_tables import get_catalog_table

    export = find_export_for_partition(s3, spec, partition_key)
    if existing_schema is None:
        current = get_catalog_table(glue_catalog, spec.catalog_database, spec.catalog_table)
        existing_schema = current.schema if current else None
    script_uri = upload_job_script(s3, spec)
    job_name = ensure_glue_job(glue_jobs, spec, script_uri, python_modules, upload_package_zip(s3, spec))
    run_dir = new_run_dir(spec, partition_key, run_id)
    request = {
        "table_name": spec.dynamodb_table,
        "input_files": [f"{spec.s3_bucket}/{f.key}" for f in export.data_files],
        # what manifest-files.json says of each file: the job checks MD5 and item count while reading
        "expected_files": {
            f"{spec.s3_bucket}/{f.key}": {"md5Checksum": f.md5, "itemCount": f.item_count} for f in export.data_files
        },
        "output_dir": f"{spec.s3_bucket}/{run_dir}",
        "existing_schema": schema_to_text(existing_schema) if existing_schema is not None else None,
        "compression": spec.compression,
        "key_attributes": list(key_attributes),  # hash key, range key: their columns come first
        "region": region,
        "snapshot": {
            "bucket": spec.s3_bucket,
            "run_dir": run_dir,
            "partition_key": partition_key,
            "export_id": export.export_id,
            "export_item_count": export.item_count,
            "export_time": export.export_time,
        },
    }
    key = f"{spec.s3_prefix}/glue/requests/{spec.catalog_table}/{run_dir.rsplit('/', 1)[-1]}.json"
    s3.put_object(Bucket=spec.s3_bucket, Key=key, Body=json.dumps(request).encode(), ContentType="application/json")
    return GlueConversion(job_name=job_name, request_uri=f"s3://{spec.s3_bucket}/{key}", run_dir=run_dir, export=export)
