"""Fixtures of the AWS-facing tests: every call a run makes, as AWS would receive it."""

from __future__ import annotations

import pytest

from offload_assets.aws.connection import AwsConnection


@pytest.fixture()
def recorded_calls(monkeypatch):
    """(service, operation, params) of every call made through AwsConnection clients."""
    calls: list[tuple[str, str, dict]] = []
    original = AwsConnection.client

    def recording_client(self, service, **config):
        client = original(self, service, **config)
        # Registered last: sees the parameters after the project's own hooks filled them in.
        client.meta.events.register_last(
            "before-parameter-build.*.*", lambda params, model, **kw: calls.append((service, model.name, dict(params)))
        )
        return client

    monkeypatch.setattr(AwsConnection, "client", recording_client)

    # pyiceberg's FileIO writes through its own boto3 client (offload_assets.iceberg.file_io): record it too.
    from offload_assets.iceberg.file_io import EncryptedFileIO

    original_s3 = EncryptedFileIO._boto3_s3

    def recording_s3(self):
        client = original_s3(self)
        client.meta.events.register_last(
            "before-parameter-build.*.*", lambda params, model, **kw: calls.append(("s3", model.name, dict(params)))
        )
        return client

    monkeypatch.setattr(EncryptedFileIO, "_boto3_s3", recording_s3)
    return calls
