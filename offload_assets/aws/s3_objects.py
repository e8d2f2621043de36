"""Small S3 operations shared by exports and snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


def ensure_bucket(s3: S3Client, bucket: str, *, prefix: str = "") -> bool:
    """Create the bucket when it is missing (the local emulator starts empty); True if created.

    Probes with a ListObjectsV2 under ``prefix`` rather than HeadBucket, so a least-privilege
    identity whose s3:ListBucket is limited to the table's prefixes is allowed to ask.
    """
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return False
    except s3.exceptions.NoSuchBucket:
        pass
    s3.create_bucket(Bucket=bucket)
    return True


def delete_prefix(s3: S3Client, *, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` (which must end with '/'); returns how many."""
    if not prefix.endswith("/") or prefix.strip("/") == "":
        raise ValueError(f"refusing to delete a prefix that is empty or does not end with '/': {prefix!r}")
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i : i + 1000], "Quiet": True})
            deleted += len(keys[i : i + 1000])
    return deleted
