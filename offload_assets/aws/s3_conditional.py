"""Compare-and-swap on one S3 object: the building block of commit markers, check verdicts and leases.

S3 PutObject accepts ``If-None-Match: *`` (create only if absent) and ``If-Match: <etag>`` (replace
only the version read); the loser of a race gets ``412 PreconditionFailed`` (or ``409
ConditionalRequestConflict`` while another conditional write of the key is in flight). Both hold
on AWS S3 and on the local emulator (moto 5.1.22, probed: 20 rounds of 8 threads creating one key
gave exactly one winner each time).

An ETag is the MD5 of the body, so every body written here carries a fresh ``nonce``: two
writers of identical content still get different ETags, and a stale ``If-Match`` never matches.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

LOST_RACE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


@dataclass(frozen=True)
class VersionedJson:
    body: dict[str, Any]
    etag: str


def read_json(s3: S3Client, *, bucket: str, key: str) -> VersionedJson | None:
    """The object's JSON body and ETag, or None when there is no such object."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return None
    return VersionedJson(json.loads(obj["Body"].read()), obj["ETag"])


def put_json_if(
    s3: S3Client,
    *,
    bucket: str,
    key: str,
    body: dict[str, Any],
    expected: VersionedJson | None,
    put_kwargs: dict[str, Any] | None = None,
) -> VersionedJson | None:
    """Write ``body`` only if the object is still ``expected`` (None: only if it does not exist).

    Returns the new version, or None when another writer got there first (re-read and re-decide).
    """
    body = {**body, "nonce": uuid.uuid4().hex}
    condition = {"IfMatch": expected.etag} if expected is not None else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(body, indent=2).encode(),
            ContentType="application/json",
            **condition,
            **(put_kwargs or {}),
        )
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in LOST_RACE_CODES or (code == "NoSuchKey" and expected is not None):
            return None
        raise
    return VersionedJson(body, response["ETag"])
