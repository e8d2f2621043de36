"""pyiceberg's FileIO with server-side encryption on every object it writes.

pyiceberg's ``PyArrowFileIO`` writes through pyarrow's ``S3FileSystem``, which cannot send SSE
headers (see :mod:`offload_assets.aws.s3_writes`); its fsspec FileIO could, but needs s3fs. So
this FileIO keeps pyarrow for reads and routes writes through the project's
:func:`~offload_assets.aws.s3_writes.encrypted_output_filesystem` (boto3 uploads with
``ServerSideEncryption`` / ``SSEKMSKeyId`` / ``ExpectedBucketOwner``). It is chosen with the
catalog property ``py-io-impl`` and configured by pyiceberg's own property names
(``s3.endpoint``, ``s3.region``, ``s3.access-key-id``, ``s3.server-side-encryption``,
``s3.sse-kms-key-id``) plus ``offload.expected-bucket-owner``.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from pyarrow.fs import FileSystem
from pyiceberg.io import (
    S3_ACCESS_KEY_ID,
    S3_ENDPOINT,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
    S3_SERVER_SIDE_ENCRYPTION,
    S3_SESSION_TOKEN,
    S3_SSE_KMS_KEY_ID,
)
from pyiceberg.io.pyarrow import PyArrowFileIO

from offload_assets.aws.s3_writes import encrypted_output_filesystem

EXPECTED_BUCKET_OWNER = "offload.expected-bucket-owner"
FILE_IO_IMPL = "offload_assets.iceberg.file_io.EncryptedFileIO"


def sse_properties(put_kwargs: dict[str, str]) -> dict[str, str]:
    """Catalog properties carrying the table's S3 write settings (from ``s3_put_kwargs``)."""
    props = {S3_SERVER_SIDE_ENCRYPTION: put_kwargs.get("ServerSideEncryption", "AES256")}
    if put_kwargs.get("SSEKMSKeyId"):
        props[S3_SSE_KMS_KEY_ID] = put_kwargs["SSEKMSKeyId"]
    if put_kwargs.get("ExpectedBucketOwner"):
        props[EXPECTED_BUCKET_OWNER] = put_kwargs["ExpectedBucketOwner"]
    return props


class EncryptedFileIO(PyArrowFileIO):
    """``PyArrowFileIO`` whose S3 writes go through boto3 with SSE (reads stay native pyarrow)."""

    def _put_kwargs(self) -> dict[str, str]:
        kwargs = {"ServerSideEncryption": self.properties.get(S3_SERVER_SIDE_ENCRYPTION, "AES256")}
        if kms := self.properties.get(S3_SSE_KMS_KEY_ID):
            kwargs["SSEKMSKeyId"] = kms
        if owner := self.properties.get(EXPECTED_BUCKET_OWNER):
            kwargs["ExpectedBucketOwner"] = owner
        return kwargs

    def _boto3_s3(self) -> Any:
        session = boto3.session.Session(
            region_name=self.properties.get(S3_REGION),
            aws_access_key_id=self.properties.get(S3_ACCESS_KEY_ID),
            aws_secret_access_key=self.properties.get(S3_SECRET_ACCESS_KEY),
            aws_session_token=self.properties.get(S3_SESSION_TOKEN),
        )
        config = Config(retries={"max_attempts": 10, "mode": "standard"})
        return session.client("s3", endpoint_url=self.properties.get(S3_ENDPOINT), config=config)

    def _initialize_s3_fs(self, netloc: str | None) -> FileSystem:
        native = super()._initialize_s3_fs(netloc)
        return encrypted_output_filesystem(self._boto3_s3(), native, self._put_kwargs())


__all__ = ["EXPECTED_BUCKET_OWNER", "FILE_IO_IMPL", "EncryptedFileIO", "sse_properties"]
