"""The raw export's layout in S3, the same whichever engine produced it.

DynamoDB's native export writes, under the ``S3Prefix`` it is given::

    <prefix>/AWSDynamoDB/<export-id>/data/<random>.json.gz      gzip DynamoDB-JSON lines
    <prefix>/AWSDynamoDB/<export-id>/manifest-files.json        one JSON line per data file
    <prefix>/AWSDynamoDB/<export-id>/manifest-summary.json      written last: the export is complete

Beside them DynamoDB writes an empty ``_started`` (written first) and a checksum file per
manifest (``manifest-files.md5``/``manifest-summary.md5``; AWS's docs call them ``.checksum``).
Without an ``S3Prefix`` the export lands at the bucket root (``AWSDynamoDB/<export-id>/``) and
the summary says ``"s3Prefix": null``. Our own scan export writes the same layout, so conversion
reads one format. An export without ``manifest-summary.json`` is incomplete (still being
written, or died) and is never used.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from offload_assets.aws.s3_objects import delete_prefix

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

EXPORT_DIR = "AWSDynamoDB"
MANIFEST_SUMMARY = "manifest-summary.json"
MANIFEST_FILES = "manifest-files.json"
MANIFEST_VERSION = "2020-06-30"
STARTED_MARKER = "_started"
#: Checksum files DynamoDB writes beside each manifest (seen in real exports / named in AWS's docs).
CHECKSUM_SUFFIXES = (".md5", ".checksum")


def new_export_id(now: float | None = None) -> str:
    """An id shaped like DynamoDB's (``<epoch millis>-<8 hex>``), so ids sort by start time."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:014d}-{uuid.uuid4().hex[:8]}"


def utc_iso(ts: dt.datetime | float | None = None) -> str:
    if ts is None:
        ts = dt.datetime.now(dt.UTC)
    elif isinstance(ts, (int, float)):
        ts = dt.datetime.fromtimestamp(ts, dt.UTC)
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def checksum_matches(recorded: str, data: bytes) -> bool:
    """A checksum file's text (base64 or hex MD5, whitespace ignored) agrees with ``data``."""
    text = recorded.strip()
    digest = hashlib.md5(data)
    return text == base64.b64encode(digest.digest()).decode() or text.lower() == digest.hexdigest()


class ExportManifestError(ValueError):
    """A complete export's manifests cannot be used (not JSON, missing fields, inconsistent); the message says why."""


class MD5Reader(io.RawIOBase):
    """A binary stream that hashes (MD5) every byte read through it: a data file's
    ``md5Checksum`` is checked while the file is read, never in a second pass.
    ``md5_base64()`` is the checksum of what was read so far (of the whole file once at EOF)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._md5 = hashlib.md5()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._md5.update(data)
        self.bytes_read += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read() if size is None or size < 0 else self._stream.read(size)
        self._md5.update(data)
        self.bytes_read += len(data)
        return data

    def md5_base64(self) -> str:
        return base64.b64encode(self._md5.digest()).decode()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


def file_md5_base64(filesystem: Any, path: str, chunk_bytes: int = 8 << 20) -> str:
    """The base64 MD5 of a file on a pyarrow filesystem (the form of ``md5Checksum`` in
    ``manifest-files.json``), read in chunks."""
    with MD5Reader(filesystem.open_input_stream(path, compression=None)) as reader:
        while reader.read(chunk_bytes):
            pass
        return reader.md5_base64()


@dataclass(frozen=True)
class ExportDataFile:
    key: str
    item_count: int
    md5: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class ExportManifest:
    """A complete export: where its data files are and the facts DynamoDB (or we) recorded."""

    bucket: str
    export_prefix: str
    export_id: str
    data_files: tuple[ExportDataFile, ...]
    item_count: int
    export_time: str | None
    start_time: str | None
    end_time: str | None
    export_arn: str | None
    export_type: str = "FULL_EXPORT"
    output_format: str = "DYNAMODB_JSON"
    billed_size_bytes: int | None = None
    summary: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def export_dir(self) -> str:
        return export_dir_key(self.export_prefix, self.export_id)

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.export_dir}/"


def export_dir_key(export_prefix: str | None, export_id: str) -> str:
    """``<prefix>/AWSDynamoDB/<id>``, or ``AWSDynamoDB/<id>`` for an export at the bucket root (no prefix)."""
    prefix = (export_prefix or "").strip("/")
    return f"{prefix}/{EXPORT_DIR}/{export_id}" if prefix else f"{EXPORT_DIR}/{export_id}"


def write_export_manifests(
    s3: S3Client,
    *,
    bucket: str,
    export_prefix: str,
    export_id: str,
    data_files: list[ExportDataFile],
    table_arn: str | None,
    export_time: str,
    start_time: str,
    export_arn: str | None = None,
    billed_size_bytes: int = 0,
    export_type: str = "FULL_EXPORT",
    extra: dict[str, Any] | None = None,
    put_kwargs: dict[str, Any] | None = None,
    checksum_suffix: str | None = None,
) -> ExportManifest:
    """Write ``manifest-files.json`` then ``manifest-summary.json`` (the completion marker).

    With ``checksum_suffix`` (``.md5`` or ``.checksum``) each manifest gets its checksum file too,
    as DynamoDB writes them (base64 MD5 of the manifest's bytes).
    """
    base = export_dir_key(export_prefix, export_id)
    put_kwargs = put_kwargs or {}
    files_key = f"{base}/{MANIFEST_FILES}"
    lines = "".join(
        json.dumps({"itemCount": f.item_count, "md5Checksum": f.md5, "etag": None, "dataFileS3Key": f.key}) + "\n"
        for f in data_files
    )
    s3.put_object(Bucket=bucket, Key=files_key, Body=lines.encode(), ContentType="application/json", **put_kwargs)
    if checksum_suffix:
        _put_checksum(s3, bucket, f"{base}/{MANIFEST_FILES}", lines.encode(), checksum_suffix, put_kwargs)
    item_count = sum(f.item_count for f in data_files)
    summary = {
        "version": MANIFEST_VERSION,
        "exportArn": export_arn,
        "startTime": start_time,
        "endTime": utc_iso(),
        "tableArn": table_arn,
        "tableId": None,
        "exportTime": export_time,
        "s3Bucket": bucket,
        "s3Prefix": export_prefix.strip("/") or None,
        "s3SseAlgorithm": put_kwargs.get("ServerSideEncryption", "AES256"),
        "s3SseKmsKeyId": put_kwargs.get("SSEKMSKeyId"),
        "manifestFilesS3Key": files_key,
        "billedSizeBytes": billed_size_bytes,
        "itemCount": item_count,
        "outputFormat": "DYNAMODB_JSON",
        "exportType": export_type,
        **(extra or {}),
    }
    summary_body = json.dumps(summary, indent=2).encode()
    s3.put_object(
        Bucket=bucket, Key=f"{base}/{MANIFEST_SUMMARY}", Body=summary_body, ContentType="application/json", **put_kwargs
    )
    if checksum_suffix:
        _put_checksum(s3, bucket, f"{base}/{MANIFEST_SUMMARY}", summary_body, checksum_suffix, put_kwargs)
    return _manifest_from(bucket, export_prefix, export_id, summary, data_files)


def _put_checksum(s3: S3Client, bucket: str, manifest_key: str, body: bytes, suffix: str, put_kwargs: dict) -> None:
    key = manifest_key.removesuffix(".json") + suffix
    s3.put_object(Bucket=bucket, Key=key, Body=md5_base64(body).encode(), ContentType="text/plain", **put_kwargs)


def _manifest_from(
    bucket: str, export_prefix: str, export_id: str, summary: dict, files: list[ExportDataFile]
) -> ExportManifest:
    return ExportManifest(
        bucket=bucket,
        export_prefix=export_prefix.strip("/"),
        export_id=export_id,
        data_files=tuple(files),
        item_count=int(summary.get("itemCount") or sum(f.item_count for f in files)),
        export_time=summary.get("exportTime"),
        start_time=summary.get("startTime"),
        end_time=summary.get("endTime"),
        export_arn=summary.get("exportArn"),
        export_type=summary.get("exportType") or "FULL_EXPORT",
        output_format=summary.get("outputFormat") or "DYNAMODB_JSON",
        billed_size_bytes=summary.get("billedSizeBytes"),
        summary=summary,
    )


def _get_json_text(s3: S3Client, bucket: str, key: str) -> str | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except s3.exceptions.NoSuchKey:
        return None


def read_export_manifest(s3: S3Client, *, bucket: str, export_prefix: str, export_id: str) -> ExportManifest | None:
    """The manifest of one export, or None while it is incomplete (no summary yet)."""
    base = export_dir_key(export_prefix, export_id)
    summary_text = _get_json_text(s3, bucket, f"{base}/{MANIFEST_SUMMARY}")
    if summary_text is None:
        return None
    summary = _json_object(summary_text, f"s3://{bucket}/{base}/{MANIFEST_SUMMARY}")
    files_key = summary.get("manifestFilesS3Key") or f"{base}/{MANIFEST_FILES}"
    files_text = _get_json_text(s3, bucket, files_key)
    if files_text is None and files_key != f"{base}/{MANIFEST_FILES}":
        # Some summaries give the key relative to the export prefix.
        files_text = _get_json_text(s3, bucket, f"{base}/{MANIFEST_FILES}")
    if files_text is None:
        return None
    files = []
    for number, line in enumerate(files_text.splitlines(), start=1):
        if line.strip():
            where = f"s3://{bucket}/{base}/{MANIFEST_FILES} line {number}"
            entry = _json_object(line, where)
            if not isinstance(entry.get("dataFileS3Key"), str) or not entry["dataFileS3Key"]:
                raise ExportManifestError(f"{where}: no dataFileS3Key")
            try:
                item_count = int(entry.get("itemCount") or 0)
            except (TypeError, ValueError):
                raise ExportManifestError(f"{where}: itemCount {entry.get('itemCount')!r} is not a number") from None
            files.append(
                ExportDataFile(key=entry["dataFileS3Key"], item_count=item_count, md5=entry.get("md5Checksum"))
            )
    return _manifest_from(bucket, export_prefix, export_id, summary, files)


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ExportManifestError(f"{where} is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ExportManifestError(f"{where} is not a JSON object")
    return value


def list_export_objects(s3: S3Client, manifest: ExportManifest) -> dict[str, int]:
    """Every object under the export's directory: key -> size."""
    objects: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=manifest.bucket, Prefix=manifest.export_dir + "/"):
        objects.update((o["Key"], o["Size"]) for o in page.get("Contents", []))
    return objects


def manifest_problems(s3: S3Client, manifest: ExportManifest, objects: dict[str, int]) -> list[str]:
    """Why a complete export's manifests cannot be trusted (empty when they can).

    The summary's item count is the sum of its files'; the export ARN names this directory's id;
    every listed data file exists (``objects`` is the export directory's listing, see
    :func:`list_export_objects`, or more); each manifest agrees with its checksum file when one is there.
    """
    problems = []
    listed = sum(f.item_count for f in manifest.data_files)
    recorded = manifest.summary.get("itemCount")
    if recorded is not None and str(recorded).isdigit() and int(recorded) != listed:
        problems.append(f"{MANIFEST_SUMMARY} says itemCount {recorded} but {MANIFEST_FILES} lists {listed} items")
    arn = manifest.export_arn or ""
    if "/export/" in arn and arn.rsplit("/export/", 1)[1] != manifest.export_id:
        problems.append(f"exportArn {arn} is not the export in directory {manifest.export_id}")
    missing = [f.key for f in manifest.data_files if f.key not in objects]
    if missing:
        problems.append(
            f"{len(missing)} data file(s) listed in {MANIFEST_FILES} do not exist, e.g. s3://{manifest.bucket}/{missing[0]}"
        )
    for name in (MANIFEST_FILES, MANIFEST_SUMMARY):
        stem = f"{manifest.export_dir}/{name.removesuffix('.json')}"
        for suffix in CHECKSUM_SUFFIXES:
            if stem + suffix not in objects:
                continue
            recorded_sum = (
                s3.get_object(Bucket=manifest.bucket, Key=stem + suffix)["Body"].read().decode("utf-8", "replace")
            )
            content = s3.get_object(Bucket=manifest.bucket, Key=f"{manifest.export_dir}/{name}")["Body"].read()
            if not checksum_matches(recorded_sum, content):
                problems.append(
                    f"{name} does not match its checksum file {stem.rsplit('/', 1)[1]}{suffix} ({recorded_sum.strip()!r})"
                )
    return problems


def export_side_files(manifest: ExportManifest, objects: dict[str, int]) -> list[str]:
    """The export's ``_started`` marker and manifest checksum files present in ``objects`` (keys)."""
    names = [STARTED_MARKER] + [
        f"{name.removesuffix('.json')}{suffix}"
        for name in (MANIFEST_FILES, MANIFEST_SUMMARY)
        for suffix in CHECKSUM_SUFFIXES
    ]
    return [f"{manifest.export_dir}/{n}" for n in names if f"{manifest.export_dir}/{n}" in objects]


def list_export_ids(s3: S3Client, *, bucket: str, export_prefix: str) -> list[str]:
    """Ids of every export (complete or not) under a prefix, oldest first."""
    prefix = f"{export_prefix.strip('/')}/{EXPORT_DIR}/"
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            ids.append(cp["Prefix"][len(prefix) :].rstrip("/"))
    return sorted(ids)


def list_completed_exports(s3: S3Client, *, bucket: str, export_prefix: str) -> list[ExportManifest]:
    """Complete exports under a prefix, newest (by end time) last."""
    manifests = [
        m
        for export_id in list_export_ids(s3, bucket=bucket, export_prefix=export_prefix)
        if (m := read_export_manifest(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)) is not None
    ]
    return sorted(manifests, key=lambda m: (m.end_time or "", m.export_id))


def latest_completed_export(s3: S3Client, *, bucket: str, export_prefix: str) -> ExportManifest | None:
    exports = list_completed_exports(s3, bucket=bucket, export_prefix=export_prefix)
    return exports[-1] if exports else None


def delete_other_exports(s3: S3Client, *, bucket: str, export_prefix: str, keep_export_id: str) -> list[str]:
    """Remove every other export of the same partition, so re-running a partition replaces it."""
    removed = []
    for export_id in list_export_ids(s3, bucket=bucket, export_prefix=export_prefix):
        if export_id != keep_export_id:
            delete_prefix(s3, bucket=bucket, prefix=export_dir_key(export_prefix, export_id) + "/")
            removed.append(export_id)
    return removed


def parse_export_time(text: str | None) -> dt.datetime | None:
    """An ``exportTime``-style ISO timestamp (``...Z`` or with offset) as an aware UTC datetime."""
    if not text:
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


DATA_FILE_MAX_BYTES = 128 * 1024 * 1024  # compressed size at which a writer starts a new data file


class DataFileWriter:
    """Writes gzip JSON-lines data files of one export: locally first, uploaded when closed.

    ``roll()`` closes the current file (uploading it when it holds lines) and starts the next;
    ``files`` lists what was uploaded. A file fills up to ``max_bytes`` compressed.
    """

    def __init__(
        self,
        s3: S3Client,
        *,
        bucket: str,
        data_prefix: str,
        tmpdir: str,
        name_prefix: str = "",
        put_kwargs: dict[str, Any] | None = None,
        max_bytes: int = DATA_FILE_MAX_BYTES,
    ) -> None:
        self.s3, self.bucket, self.data_prefix, self.tmpdir = s3, bucket, data_prefix.rstrip("/"), tmpdir
        self.name_prefix, self.put_kwargs, self.max_bytes = name_prefix, put_kwargs or {}, max_bytes
        self.files: list[ExportDataFile] = []
        self._raw = self._gz = None
        self.count = 0

    def _open(self) -> None:
        self.path = os.path.join(self.tmpdir, f"{self.name_prefix}{uuid.uuid4().hex}.json.gz")
        self._raw = open(self.path, "wb")
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self.count = 0

    def write_line(self, line: bytes) -> None:
        if self._gz is None:
            self._open()
        self._gz.write(line if line.endswith(b"\n") else line + b"\n")
        self.count += 1

    @property
    def full(self) -> bool:
        return self._raw is not None and self._raw.tell() >= self.max_bytes

    def roll(self) -> ExportDataFile | None:
        """Close and upload the current file (if it holds any line); the next write starts a new one."""
        if self._gz is None:
            return None
        self._gz.close()
        self._raw.close()
        uploaded = None
        try:
            if self.count:
                with open(self.path, "rb") as fh:
                    data = fh.read()
                key = f"{self.data_prefix}/{os.path.basename(self.path)}"
                md5 = md5_base64(data)
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5, **self.put_kwargs)
                uploaded = ExportDataFile(key=key, item_count=self.count, md5=md5, size_bytes=len(data))
                self.files.append(uploaded)
        finally:
            os.unlink(self.path)
            self._raw = self._gz = None
            self.count = 0
        return uploaded

    def discard(self) -> None:
        """Drop the current local file without uploading it (the run is abandoned)."""
        if self._gz is not None:
            self._gz.close()
            self._raw.close()
            os.unlink(self.path)
            self._raw = self._gz = None


def _decompressed_chunks(body: Any) -> Iterator[bytes]:
    """Chunks of a data file's content, gunzipped when it is gzip (detected by its magic bytes)."""
    first = body.read(64 * 1024)
    if first[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        chunk = first
        while chunk:
            out = inflater.decompress(chunk)
            while inflater.eof and inflater.unused_data:  # concatenated gzip members
                rest = inflater.unused_data
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                out += inflater.decompress(rest)
            if out:
                yield out
            chunk = body.read(1024 * 1024)
        tail = inflater.flush()
        if tail:
            yield tail
    else:
        chunk = first
        while chunk:
            yield chunk
            chunk = body.read(1024 * 1024)


def iter_stream_lines(body: Any) -> Iterator[bytes]:
    """The non-empty lines (without newline) of a data file's binary stream, gzip or not."""
    pending = b""
    for chunk in _decompressed_chunks(body):
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def iter_data_file_lines(s3: S3Client, *, bucket: str, key: str) -> Iterator[bytes]:
    """The non-empty lines of one export data file in S3, streamed."""
    yield from iter_stream_lines(s3.get_object(Bucket=bucket, Key=key)["Body"])


def iter_export_lines(s3: S3Client, manifest: ExportManifest) -> Iterator[tuple[ExportDataFile, bytes]]:
    """Every line of a complete export, with the data file it came from."""
    for data_file in manifest.data_files:
        for line in iter_data_file_lines(s3, bucket=manifest.bucket, key=data_file.key):
            yield data_file, line


def describe_data_file(s3: S3Client, *, bucket: str, key: str) -> ExportDataFile:
    """A data file as a manifest lists it: item count (its lines), md5 and size, read from the file itself."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    count = sum(1 for _ in iter_stream_lines(io.BytesIO(body)))
    return ExportDataFile(key=key, item_count=count, md5=md5_base64(body), size_bytes=len(body))
