"""Dagster resources for DynamoDB, S3, Glue and Athena: thin config holders with ``get_client()``.

Built like dagster-aws's own boto3 resources (region, endpoint_url, retries, credentials from
the standard AWS chain or explicit values). ``target`` is ``auto`` by default: local or AWS
is then decided at run time by :mod:`offload_assets.aws.connection` from one environment
variable, ``OFFLOAD_ASSETS_TARGET``, and in local mode the endpoint is the project's emulator.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field

from offload_assets.aws.connection import AwsConnection, resolve_connection
from offload_assets.spark.glue_launch import DEFAULT_PYTHON_MODULES

_TARGET_DOC = "'local' (the project's emulator), 'aws', or 'auto' to read OFFLOAD_ASSETS_TARGET at run time."
_STATE_DOC = "Local mode: directory of the emulator's saved state (default .offload_assets or $OFFLOAD_ASSETS_HOME)."


def connection_for(resource: Any) -> AwsConnection:
    """The connection a resource's fields describe (both base classes carry the same AWS fields)."""
    return resolve_connection(
        target=resource.target,
        region_name=resource.region_name,
        endpoint_url=resource.endpoint_url,
        profile_name=resource.profile_name,
        aws_access_key_id=resource.aws_access_key_id,
        aws_secret_access_key=resource.aws_secret_access_key,
        aws_session_token=resource.aws_session_token,
        max_attempts=resource.max_attempts,
        local_state_dir=resource.local_state_dir,
    )


class _AwsClientResource(ResourceWithBoto3Configuration):
    target: str = Field(default="auto", description=_TARGET_DOC)
    local_state_dir: str | None = Field(default=None, description=_STATE_DOC)

    _service: str = ""

    def connection(self) -> AwsConnection:
        return connection_for(self)

    def get_client(self) -> Any:
        return self.connection().client(self._service)


class DynamoDBResource(_AwsClientResource):
    """A boto3 DynamoDB client (local emulator or AWS)."""

    _service: str = "dynamodb"


class GlueResource(_AwsClientResource):
    """A boto3 Glue client for the Data Catalog (local emulator or AWS)."""

    _service: str = "glue"


class GlueJobsResource(_AwsClientResource):
    """Glue jobs (Spark) for tables with ``engine: glue``: a boto3 Glue client plus how the job is run via Pipes."""

    _service: str = "glue"
    python_modules: str = Field(
        default=DEFAULT_PYTHON_MODULES,
        description="--additional-python-modules of the job (the project's own code goes as a zip in --extra-py-files).",
    )
    message_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often Dagster reads the job's Pipes messages from S3."
    )


ATHENA_WORKGROUP_ENV_VAR = "OFFLOAD_ASSETS_ATHENA_WORKGROUP"
ATHENA_OUTPUT_LOCATION_ENV_VAR = "OFFLOAD_ASSETS_ATHENA_OUTPUT_LOCATION"


class AthenaResource(_AwsClientResource):
    """Athena settings and client. Locally, queries run on DuckDB instead (see offload_assets.sql.query)."""

    _service: str = "athena"
    workgroup: str = Field(default="primary", description="Athena workgroup queries run in.")
    output_location: str | None = Field(
        default=None, description="s3:// URI for query results; default: the workgroup's setting."
    )


class OffloadS3Resource(S3Resource):
    """dagster-aws's S3Resource, local-aware, that also hands out a pyarrow S3 filesystem."""

    target: str = Field(default="auto", description=_TARGET_DOC)
    local_state_dir: str | None = Field(default=None, description=_STATE_DOC)

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def connection(self) -> AwsConnection:
        return connection_for(self)

    def get_client(self) -> Any:
        return self.connection().client("s3")

    def get_table_client(self, spec: Any) -> Any:
        """An S3 client that applies the table's settings (SSE, ``ExpectedBucketOwner``) to every request on its bucket."""
        from offload_assets.aws.s3_writes import enforce_s3_settings

        return enforce_s3_settings(self.get_client(), spec)

    def get_filesystem(self) -> Any:
        """``pyarrow.fs.S3FileSystem`` for the same endpoint and credentials."""
        return self.connection().arrow_filesystem()


def default_resources(**overrides: Any) -> dict[str, dg.ConfigurableResource]:
    """The resources every table's assets use; ``overrides`` (e.g. target, local_state_dir) apply to all.

    A deployment names its Athena workgroup and result location (the stack's outputs) with
    ``$OFFLOAD_ASSETS_ATHENA_WORKGROUP`` and ``$OFFLOAD_ASSETS_ATHENA_OUTPUT_LOCATION``.
    """
    athena = {
        "workgroup": os.environ.get(ATHENA_WORKGROUP_ENV_VAR) or "primary",
        "output_location": os.environ.get(ATHENA_OUTPUT_LOCATION_ENV_VAR) or None,
    }
    return {
        "dynamodb": DynamoDBResource(**overrides),
        "s3": OffloadS3Resource(**overrides),
        "glue": GlueResource(**overrides),
        "athena": AthenaResource(**{**athena, **overrides}),
        "glue_jobs": GlueJobsResource(**overrides),
    }
