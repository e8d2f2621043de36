"""Lay out an export in S3 byte for byte as DynamoDB's ExportTableToPointInTime writes it.

The emulator's export writes only a data file (no manifests, no ``_started``), so tests that
must see what a real account holds build it here, following AWS's output documentation and a
real export (see FACTS.md, "Real DynamoDB export files"):

- ``_started`` (empty) first, then the data files under ``data/`` (gzip ``{"Item": ...}`` lines,
  random 26-character names, at least one per partition, an empty one for an empty partition),
  then ``manifest-files.json`` (one compact JSON line per data file: ``itemCount``,
  ``md5Checksum`` (base64 MD5 of the file's bytes), ``etag``, ``dataFileS3Key``), its checksum
  file, and last ``manifest-summary.json`` (compact, no ``exportType`` as in older exports,
  ``"s3Prefix": null`` at the bucket root) and its checksum file;
- every key is bucket-relative (``manifestFilesS3Key``, ``dataFileS3Key``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import random
import string
import uuid
from dataclasses import dataclass
from typing import Any

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.export.layout import md5_base64, utc_iso
from offload_assets.local.demo_data import to_low_level

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass(frozen=True)
class NativeExport:
    """What was written: the export's id, its directory and every key, in writing order."""

    bucket: str
    export_id: str
    export_dir: str
    keys: tuple[str, ...]
    data_keys: tuple[str, ...]

    @property
    def summary_key(self) -> str:
        return f"{self.export_dir}/manifest-summary.json"


def new_export_id(at: dt.datetime) -> str:
    return f"{int(at.timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}"


def _data_file_name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=26)) + ".json.gz"


def write_native_export(
    s3: Any,
    *,
    bucket: str,
    items: list[dict[str, Any]],
    prefix: str | None = None,
    table_name: str = "Reviews",
    export_time: dt.datetime | None = None,
    files: int = 2,
    empty_files: int = 1,
    checksum_suffix: str = ".md5",
    complete: bool = True,
    export_id: str | None = None,
    seed: int = 0,
) -> NativeExport:
    """Write one export of ``items`` below ``prefix`` (None: the bucket root), ``files`` data files plus ``empty_files`` empty ones."""
    ensure_bucket(s3, bucket)
    rng = random.Random(seed)
    export_time = export_time or dt.datetime.now(dt.UTC)
    export_id = export_id or new_export_id(export_time)
    export_dir = f"{prefix.strip('/')}/AWSDynamoDB/{export_id}" if prefix else f"AWSDynamoDB/{export_id}"
    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}"
    keys: list[str] = []

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)

    put(f"{export_dir}/_started", b"")
    per_file = -(-len(items) // files) if items else 0
    chunks = [items[i * per_file : (i + 1) * per_file] for i in range(files)] + [[] for _ in range(empty_files)]
    entries, data_keys = [], []
    for chunk in chunks:
        body = gzip.compress(
            b"".join(
                json.dumps({"Item": to_low_level(item)}, separators=(",", ":")).encode() + b"\n" for item in chunk
            ),
            mtime=0,
        )
        key = f"{export_dir}/data/{_data_file_name(rng)}"
        put(key, body)
        data_keys.append(key)
        entries.append(
            {
                "itemCount": len(chunk),
                "md5Checksum": md5_base64(body),
                "etag": hashlib.md5(body).hexdigest(),
                "dataFileS3Key": key,
            }
        )
    if not complete:
        return NativeExport(bucket, export_id, export_dir, tuple(keys), tuple(data_keys))
    files_body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
    put(f"{export_dir}/manifest-files.json", files_body)
    put(f"{export_dir}/manifest-files{checksum_suffix}", md5_base64(files_body).encode())
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": utc_iso(export_time),
        "endTime": utc_iso(export_time + dt.timedelta(minutes=5)),
        "tableArn": table_arn,
        "tableId": str(uuid.UUID(int=rng.getrandbits(128))),
        "exportTime": utc_iso(export_time),
        "s3Bucket": bucket,
        "s3Prefix": prefix,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{export_dir}/manifest-files.json",
        "billedSizeBytes": sum(len(json.dumps(to_low_level(i))) for i in items),
        "itemCount": len(items),
        "outputFormat": "DYNAMODB_JSON",
    }
    summary_body = json.dumps(summary, separators=(",", ":")).encode()
    put(f"{export_dir}/manifest-summary.json", summary_body)
    put(f"{export_dir}/manifest-summary{checksum_suffix}", md5_base64(summary_body).encode())
    return NativeExport(bucket, export_id, export_dir, tuple(keys), tuple(data_keys))


def s3_event(bucket: str, key: str) -> str:
    """The S3 event notification S3 sends for a new object (key URL-encoded, as S3 does)."""
    from urllib.parse import quote_plus

    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": REGION,
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
                }
            ]
        }
    )
