"""Per-segment checkpoints that let a scan export survive the death of its run.

They live inside the in-progress export, next to its data files::

    <prefix>/AWSDynamoDB/<export-id>/_checkpoints/scan.json            the plan: table, segments, export time,
                                                                       and the owner's lease (export_lease.py)
    <prefix>/AWSDynamoDB/<export-id>/_checkpoints/segment-00003.json   per segment: files written, where to go on

A segment uploads a data file first and only then records it, with the ``LastEvaluatedKey`` of
the last page in it, in its checkpoint. On resume, files no checkpoint names (uploaded by a run
that died before recording them) are deleted, and every segment continues after its recorded
key, so each item ends up in exactly one recorded file. An export with ``manifest-summary.json``
is complete and never resumed; its checkpoints are removed once the manifests are written.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from offload_assets.aws.s3_objects import delete_prefix
from offload_assets.export.layout import (
    MANIFEST_SUMMARY,
    ExportDataFile,
    export_dir_key,
    list_export_ids,
    utc_iso,
)

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

CHECKPOINT_DIR = "_checkpoints"
PLAN_NAME = "scan.json"


def encode_key(key: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``LastEvaluatedKey`` as JSON: key attributes are S, N or B, and B (bytes) travels as base64."""
    if key is None:
        return None
    out = {}
    for name, value in key.items():
        ((tag, inner),) = value.items()
        out[name] = {
            tag: base64.b64encode(inner).decode("ascii")
            if tag == "B" and isinstance(inner, (bytes, bytearray))
            else inner
        }
    return out


def decode_key(key: dict[str, Any] | None) -> dict[str, Any] | None:
    if key is None:
        return None
    out = {}
    for name, value in key.items():
        ((tag, inner),) = value.items()
        out[name] = {tag: base64.b64decode(inner) if tag == "B" else inner}
    return out


@dataclass(frozen=True)
class ScanPlan:
    """What a resumed run must agree with: same table (not re-created), same segmentation, same partition."""

    export_id: str
    table_name: str
    table_arn: str | None
    table_created: str | None
    total_segments: int
    export_time: str
    start_time: str


@dataclass
class SegmentCheckpoint:
    segment: int
    files: list[ExportDataFile] = field(default_factory=list)
    exclusive_start_key: dict[str, Any] | None = None
    done: bool = False
    items: int = 0
    consumed_capacity: float = 0.0
    updated_at: str = ""

    def to_json(self) -> bytes:
        body = {
            "segment": self.segment,
            "files": [asdict(f) for f in self.files],
            "exclusiveStartKey": encode_key(self.exclusive_start_key),
            "done": self.done,
            "items": self.items,
            "consumedCapacity": self.consumed_capacity,
            "updatedAt": self.updated_at,
        }
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, text: bytes | str) -> SegmentCheckpoint:
        body = json.loads(text)
        return cls(
            segment=int(body["segment"]),
            files=[ExportDataFile(**f) for f in body.get("files", [])],
            exclusive_start_key=decode_key(body.get("exclusiveStartKey")),
            done=bool(body.get("done")),
            items=int(body.get("items", 0)),
            consumed_capacity=float(body.get("consumedCapacity", 0.0)),
            updated_at=body.get("updatedAt", ""),
        )


def checkpoint_prefix(export_prefix: str, export_id: str) -> str:
    return f"{export_dir_key(export_prefix, export_id)}/{CHECKPOINT_DIR}/"


def segment_checkpoint_key(export_prefix: str, export_id: str, segment: int) -> str:
    return f"{checkpoint_prefix(export_prefix, export_id)}segment-{segment:05d}.json"


def read_plan(s3: S3Client, *, bucket: str, export_prefix: str, export_id: str) -> ScanPlan | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=checkpoint_prefix(export_prefix, export_id) + PLAN_NAME)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    known = {f.name for f in fields(ScanPlan)}  # the plan also carries its owner's lease (export_lease)
    return ScanPlan(**{k: v for k, v in json.loads(body).items() if k in known})


def write_segment_checkpoint(
    s3: S3Client,
    *,
    bucket: str,
    export_prefix: str,
    export_id: str,
    checkpoint: SegmentCheckpoint,
    put_kwargs: dict[str, Any] | None = None,
) -> None:
    checkpoint.updated_at = utc_iso()
    s3.put_object(
        Bucket=bucket,
        Key=segment_checkpoint_key(export_prefix, export_id, checkpoint.segment),
        Body=checkpoint.to_json(),
        ContentType="application/json",
        **(put_kwargs or {}),
    )


def read_segment_checkpoints(
    s3: S3Client, *, bucket: str, export_prefix: str, export_id: str
) -> dict[int, SegmentCheckpoint]:
    out: dict[int, SegmentCheckpoint] = {}
    prefix = checkpoint_prefix(export_prefix, export_id)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "segment-"):
        for obj in page.get("Contents", []):
            cp = SegmentCheckpoint.from_json(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            out[cp.segment] = cp
    return out


def delete_checkpoints(s3: S3Client, *, bucket: str, export_prefix: str, export_id: str) -> int:
    return delete_prefix(s3, bucket=bucket, prefix=checkpoint_prefix(export_prefix, export_id))


def _has_summary(s3: S3Client, bucket: str, export_prefix: str, export_id: str) -> bool:
    key = f"{export_dir_key(export_prefix, export_id)}/{MANIFEST_SUMMARY}"
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))


@dataclass(frozen=True)
class ResumableScan:
    plan: ScanPlan
    checkpoints: dict[int, SegmentCheckpoint]

    @property
    def newest_update(self) -> dt.datetime | None:
        stamps = [cp.updated_at for cp in self.checkpoints.values() if cp.updated_at]
        if not stamps:
            return None
        return max(dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)

    @property
    def fingerprint(self) -> dict[int, str]:
        return {seg: cp.updated_at for seg, cp in self.checkpoints.items()}


def find_resumable_scan(
    s3: S3Client,
    *,
    bucket: str,
    export_prefix: str,
    table: dict[str, Any],
    export_time: str,
    total_segments: int | None,
) -> ResumableScan | None:
    """The newest incomplete scan export of this partition that the current run may continue, if any.

    It must be of the same table (same ARN and creation time: a re-created table starts over),
    for the same export time, and with the same segment count when one is configured.
    """
    created_text = table_created_text(table)
    for export_id in reversed(list_export_ids(s3, bucket=bucket, export_prefix=export_prefix)):
        if _has_summary(s3, bucket, export_prefix, export_id):
            continue
        plan = read_plan(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
        if plan is None:
            continue
        if (
            plan.table_name != table.get("TableName")
            or plan.table_arn != table.get("TableArn")
            or plan.table_created != created_text
            or plan.export_time != export_time
            or (total_segments is not None and plan.total_segments != total_segments)
        ):
            continue
        checkpoints = read_segment_checkpoints(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
        return ResumableScan(plan=plan, checkpoints=checkpoints)
    return None


def delete_unrecorded_data_files(
    s3: S3Client, *, bucket: str, export_prefix: str, export_id: str, recorded: set[str]
) -> list[str]:
    """Remove data files a dead run uploaded but never recorded in a checkpoint; returns their keys."""
    prefix = f"{export_dir_key(export_prefix, export_id)}/data/"
    orphans = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        orphans.extend(o["Key"] for o in page.get("Contents", []) if o["Key"] not in recorded)
    for i in range(0, len(orphans), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in orphans[i : i + 1000]], "Quiet": True})
    return orphans


def table_created_text(table: dict[str, Any]) -> str | None:
    created = table.get("CreationDateTime")
    return utc_iso(created) if isinstance(created, dt.datetime) else (str(created) if created else None)
