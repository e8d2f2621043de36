"""Server-side encryption and bucket-owner checks on every S3 write of a table.

Every object the project writes for a table (raw export files, manifests, scan checkpoints,
Parquet parts, ``_snapshot.json``) is encrypted at rest: SSE-S3 (``AES256``) by default,
SSE-KMS when the table spec names ``sse_kms_key_id``. When ``expected_bucket_owner`` is set,
every S3 request on the table's bucket carries ``ExpectedBucketOwner``, so a bucket that was
deleted and re-created by another account is refused instead of written to.

Three pieces, all pure (no Dagster):

* :func:`s3_put_kwargs`: the boto3 keyword arguments of a put (PutObject, CreateMultipartUpload,
  CopyObject, ``upload_fileobj(ExtraArgs=...)``).
* :func:`enforce_s3_settings`: a botocore hook on one S3 client that adds those arguments to
  every write, and ``ExpectedBucketOwner`` to every request, on the table's bucket, where the
  caller did not already pass them: a guarantee that no code path writes in clear.
* :class:`EncryptedS3Output`: a pyarrow filesystem for the converter's output. pyarrow's own
  ``S3FileSystem`` cannot send SSE headers (``default_metadata`` with
  ``x-amz-server-side-encryption`` is silently ignored), so files are written to a local temporary
  file and uploaded with boto3 (multipart above 8 MB) when the stream closes; reads, listings
  and deletes go to the native filesystem.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

    from offload_assets.table_spec import TableSpec

#: S3 operations that create an object (UploadPart inherits the encryption of its upload).
WRITE_OPERATIONS = frozenset({"PutObject", "CreateMultipartUpload", "CopyObject"})
_HOOK_ID = "offload_assets.aws.s3_writes.enforce"


def s3_put_kwargs(spec: Any) -> dict[str, str]:
    """boto3 arguments for writing an object of ``spec``'s table: encryption and, if set, the bucket owner."""
    kms_key = getattr(spec, "sse_kms_key_id", None)
    kwargs = (
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {"ServerSideEncryption": "AES256"}
    )
    owner = getattr(spec, "expected_bucket_owner", None)
    if owner:
        kwargs["ExpectedBucketOwner"] = owner
    return kwargs


def native_export_kwargs(put_kwargs: dict[str, Any] | None) -> dict[str, str]:
    """The same settings for DynamoDB's ExportTableToPointInTime (S3SseAlgorithm, S3SseKmsKeyId, S3BucketOwner)."""
    put_kwargs = put_kwargs or {}
    out = {"S3SseAlgorithm": "AES256"}
    if put_kwargs.get("ServerSideEncryption") == "aws:kms":
        out = {"S3SseAlgorithm": "KMS", "S3SseKmsKeyId": put_kwargs["SSEKMSKeyId"]}
    if put_kwargs.get("ExpectedBucketOwner"):
        out["S3BucketOwner"] = put_kwargs["ExpectedBucketOwner"]
    return out


def enforce_s3_settings(s3: S3Client, spec: TableSpec) -> S3Client:
    """Make ``s3`` (a boto3 S3 client) apply ``spec``'s write settings on ``spec.s3_bucket``; returns ``s3``.

    Several tables may share a client: the settings are kept per bucket (the last spec
    registered for a bucket wins). Arguments a caller passes explicitly are never overridden.
    """
    settings: dict[str, dict[str, str]] = s3.meta.__dict__.setdefault("_offload_bucket_settings", {})
    settings[spec.s3_bucket] = s3_put_kwargs(spec)

    def apply(params: dict[str, Any], model: Any, **_: Any) -> None:
        wanted = settings.get(params.get("Bucket", ""))
        if not wanted:
            return
        members = model.input_shape.members if model.input_shape is not None else {}
        owner = wanted.get("ExpectedBucketOwner")
        if owner and "ExpectedBucketOwner" in members:
            params.setdefault("ExpectedBucketOwner", owner)
        if model.name in WRITE_OPERATIONS and "SSECustomerAlgorithm" not in params:
            for key in ("ServerSideEncryption", "SSEKMSKeyId"):
                if key in wanted:
                    params.setdefault(key, wanted[key])

    s3.meta.events.register("provide-client-params.s3.*", apply, unique_id=_HOOK_ID)
    return s3


class _UploadOnClose:
    """A writable local temporary file that is uploaded to S3 (with the put arguments) when closed."""

    def __init__(self, s3: S3Client, bucket: str, key: str, put_kwargs: dict[str, Any]) -> None:
        self._s3, self._bucket, self._key, self._kwargs = s3, bucket, key, put_kwargs
        self._file = tempfile.TemporaryFile(prefix="offload-upload-")
        self.closed = False

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        self._file.flush()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._file.seek(0)
            self._s3.upload_fileobj(self._file, self._bucket, self._key, ExtraArgs=dict(self._kwargs))
        finally:
            self._file.close()


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


class EncryptedS3Output(pafs.FileSystemHandler):
    """pyarrow filesystem handler: writes through boto3 with SSE, everything else through ``native``.

    Use :func:`encrypted_output_filesystem` to get a ``pyarrow.fs.PyFileSystem``. Directories do
    not exist on S3: ``create_dir`` writes nothing (the native filesystem would put an unencrypted
    zero-byte marker).
    """

    def __init__(self, s3: S3Client, native: pafs.FileSystem, put_kwargs: dict[str, Any]) -> None:
        self.s3, self.native, self.put_kwargs = s3, native, dict(put_kwargs)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EncryptedS3Output)
            and other.native.equals(self.native)
            and other.put_kwargs == self.put_kwargs
        )

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "offload-s3-sse"

    def normalize_path(self, path: str) -> str:
        return self.native.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.native.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.native.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        bucket, _ = _split(path)
        if not bucket:
            raise ValueError(f"not an S3 path (bucket/key): {path!r}")

    def delete_dir(self, path: str) -> None:
        self.native.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.native.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise PermissionError("refusing to delete the contents of every bucket")

    def delete_file(self, path: str) -> None:
        # Not the native delete: it puts an (unencrypted) marker for a parent left empty.
        bucket, key = _split(path)
        if not bucket or not key or key.endswith("/"):
            raise ValueError(f"not an S3 object path (bucket/key): {path!r}")
        self.s3.delete_object(Bucket=bucket, Key=key)

    def move(self, src: str, dest: str) -> None:
        # S3 has no rename: a server-side copy that carries the encryption settings, then a delete.
        info = self.native.get_file_info(src)
        if info.type == pafs.FileType.Directory:
            for child in self.native.get_file_info(pafs.FileSelector(src, recursive=True)):
                if child.type == pafs.FileType.File:
                    self.move(child.path, dest.rstrip("/") + child.path[len(src.rstrip("/")) :])
            return
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"cannot move {src!r}: no such object")
        self.copy_file(src, dest)
        self.delete_file(src)

    def copy_file(self, src: str, dest: str) -> None:
        sb, sk = _split(src)
        db, dk = _split(dest)
        self.s3.copy({"Bucket": sb, "Key": sk}, db, dk, ExtraArgs=dict(self.put_kwargs))

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.native.open_input_stream(path, compression=None)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.native.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any = None) -> pa.NativeFile:
        bucket, key = _split(path)
        if not bucket or not key or key.endswith("/"):
            raise ValueError(f"not an S3 object path (bucket/key): {path!r}")
        return pa.PythonFile(_UploadOnClose(self.s3, bucket, key, self.put_kwargs), mode="w")

    def open_append_stream(self, path: str, metadata: Any = None) -> pa.NativeFile:
        raise NotImplementedError("S3 objects cannot be appended to")


def encrypted_output_filesystem(s3: S3Client, native: pafs.FileSystem, put_kwargs: dict[str, Any]) -> pafs.FileSystem:
    """A pyarrow filesystem writing ``bucket/key`` paths through ``s3`` with ``put_kwargs`` (SSE, owner)."""
    return pafs.PyFileSystem(EncryptedS3Output(s3, native, put_kwargs))


__all__ = [
    "WRITE_OPERATIONS",
    "EncryptedS3Output",
    "encrypted_output_filesystem",
    "enforce_s3_settings",
    "native_export_kwargs",
    "s3_put_kwargs",
]
