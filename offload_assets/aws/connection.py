"""The one place that decides where AWS is: the local emulator (default) or real AWS.

``OFFLOAD_ASSETS_TARGET`` = ``local`` (default) or ``aws``. It is read when a client is
made, never at import time. In local mode the project's own emulator is started on demand
(see :mod:`offload_assets.local.emulator`); in AWS mode boto3's standard credential chain
applies unless a value is given explicitly.

Every client is built from the one :class:`AwsConnection` (boto3 clients, the pyarrow
``S3FileSystem``, pyiceberg's FileIO via :func:`offload_assets.iceberg.catalog.catalog_properties`;
local SQL uses DuckDB over pyarrow, no httpfs), so they all go to the same region and endpoints.
In AWS mode the connection resolves them once, the way the AWS CLI does: region from the argument,
else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile; endpoint from the argument, else
``AWS_ENDPOINT_URL_<SERVICE>`` (e.g. ``AWS_ENDPOINT_URL_S3``), else ``AWS_ENDPOINT_URL``, else AWS's
public endpoint. (This botocore reads neither ``AWS_REGION`` nor, for pyarrow, any endpoint variable.)
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

TARGET_ENV_VAR = "OFFLOAD_ASSETS_TARGET"
TARGETS = ("local", "aws")
LOCAL_REGION = "us-east-1"
# Credentials the emulator accepts; never real ones.
LOCAL_CREDENTIALS = {"aws_access_key_id": "offload-local", "aws_secret_access_key": "offload-local"}


# One boto3 session per connection and thread: a session caches the service models it loaded,
# so a second client of a service costs ~10 ms instead of ~100-300 ms; sessions are not
# thread-safe, hence per thread.
_SESSIONS = threading.local()


def current_target() -> str:
    target = os.environ.get(TARGET_ENV_VAR, "local").strip().lower() or "local"
    if target not in TARGETS:
        raise ValueError(f"{TARGET_ENV_VAR}={target!r}: expected one of {', '.join(TARGETS)}")
    return target


@dataclass(frozen=True)
class AwsConnection:
    """Everything needed to make boto3 clients and a pyarrow S3 filesystem for one target."""

    target: str
    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    max_attempts: int = 10
    retry_mode: str = "standard"
    read_timeout: float = 60.0
    # Per-service endpoints from ``AWS_ENDPOINT_URL_<SERVICE>`` (service name lower-case, no separators).
    service_endpoints: tuple[tuple[str, str], ...] = ()

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint every client of ``service`` uses (None: AWS's public endpoint for the region)."""
        return dict(self.service_endpoints).get(_service_key(service), self.endpoint_url)

    def __repr__(self) -> str:  # never print secrets
        return f"AwsConnection(target={self.target!r}, region={self.region_name!r}, endpoint={self.endpoint_url!r})"

    def session(self) -> boto3.session.Session:
        """This thread's boto3 session for this connection (made once, then reused)."""
        cache = _SESSIONS.__dict__.setdefault("by_connection", {})
        session = cache.get(self)
        if session is None:
            session = cache[self] = self.new_session()
        return session

    def new_session(self) -> boto3.session.Session:
        return boto3.session.Session(
            profile_name=self.profile_name,
            region_name=self.region_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )

    def client(self, service: str, **config: Any) -> Any:
        cfg = Config(
            retries={"max_attempts": self.max_attempts, "mode": self.retry_mode},
            read_timeout=self.read_timeout,
            **config,
        )
        return self.session().client(service, endpoint_url=self.endpoint_for(service), config=cfg)

    def arrow_filesystem(self):
        """A ``pyarrow.fs.S3FileSystem`` for the same target and credentials."""
        from pyarrow import fs as pafs

        kwargs: dict[str, Any] = {}
        region = self.region_name or self.session().region_name
        if region:
            kwargs["region"] = region
        endpoint = self.endpoint_for("s3")
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
        creds = self.session().get_credentials() if (self.profile_name or self.aws_access_key_id) else None
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
        kwargs["request_timeout"] = self.read_timeout
        kwargs["connect_timeout"] = 10
        return pafs.S3FileSystem(**kwargs)


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _service_key(service: str) -> str:
    return service.lower().replace("-", "").replace("_", "")


def _service_endpoints_from_env() -> tuple[tuple[str, str], ...]:
    prefix = "AWS_ENDPOINT_URL_"
    return tuple(
        sorted(
            (_service_key(name[len(prefix) :]), value.strip())
            for name, value in os.environ.items()
            if name.startswith(prefix) and value.strip()
        )
    )


def resolve_connection(
    *,
    target: str = "auto",
    region_name: str | None = None,
    endpoint_url: str | None = None,
    profile_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    max_attempts: int = 10,
    local_state_dir: str | Path | None = None,
) -> AwsConnection:
    """Decide local vs AWS (``target="auto"`` reads ``OFFLOAD_ASSETS_TARGET``) and fill the gaps.

    Local: the endpoint is the project's emulator (started if it is not running), the region
    ``us-east-1`` and the credentials dummies, and reads get a long timeout because the
    emulator serves big scan pages slowly.
    """
    resolved = current_target() if target in ("auto", "", None) else target
    if resolved not in TARGETS:
        raise ValueError(f"target {target!r}: expected auto, local or aws")
    conn = AwsConnection(
        target=resolved,
        region_name=region_name,
        endpoint_url=endpoint_url,
        profile_name=profile_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        max_attempts=max_attempts,
    )
    if resolved == "aws":
        return replace(
            conn,
            region_name=region_name or _env("AWS_REGION") or _env("AWS_DEFAULT_REGION"),
            endpoint_url=endpoint_url or _env("AWS_ENDPOINT_URL"),
            service_endpoints=() if endpoint_url else _service_endpoints_from_env(),
        )
    if endpoint_url is None:
        from offload_assets.local.emulator import ensure_local_emulator

        endpoint_url = ensure_local_emulator(local_state_dir).endpoint_url
    return replace(
        conn,
        endpoint_url=endpoint_url,
        region_name=region_name or LOCAL_REGION,
        profile_name=None,
        aws_access_key_id=aws_access_key_id or LOCAL_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=aws_secret_access_key or LOCAL_CREDENTIALS["aws_secret_access_key"],
        read_timeout=300.0,
    )
