"""Small S3 operations shared by exports and snapshots."""

from __future__ import annotations

from typing import Any


def ensure_bucket(s3: Any, bucket: str) -> bool:
    """Create the bucket when it is missing (the local emulator starts empty); True if created."""
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    s3.create_bucket(Bucket=bucket)
    return True


def delete_prefix(s3: Any, *, bucket: str, prefix: str) -> int:
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
