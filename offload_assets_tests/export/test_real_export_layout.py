"""Exports laid out exactly as DynamoDB writes them: at a bucket root, with ``_started`` and checksum files.

Built byte for byte by :func:`write_native_export`; discovery must find them where they are,
check their manifests, adopt them with their side files, and say why when it cannot.
"""

import datetime as dt
import json

import pytest

from offload_assets.export.discovery import (
    ExportCursor,
    adopt_export,
    discover_exports,
    watched_locations,
)
from offload_assets.export.layout import (
    checksum_matches,
    export_dir_key,
    iter_export_lines,
    list_export_objects,
    md5_base64,
    read_export_manifest,
)
from offload_assets.export.sqs_notifications import parse_export_notification
from offload_assets_tests.defs.conftest import make_spec, reviews
from offload_assets_tests.export.dynamodb_layout import s3_event, write_native_export

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ROOT_BUCKET = "team-root-exports"


def _objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def test_export_dir_of_a_bucket_root_export_has_no_leading_slash():
    assert export_dir_key("", "0123-ab") == "AWSDynamoDB/0123-ab"
    assert export_dir_key(None, "0123-ab") == "AWSDynamoDB/0123-ab"
    assert export_dir_key("/team/x/", "0123-ab") == "team/x/AWSDynamoDB/0123-ab"


@pytest.mark.parametrize("entry", [f"s3://{ROOT_BUCKET}/", f"s3://{ROOT_BUCKET}", f"s3://{ROOT_BUCKET}/AWSDynamoDB"])
def test_a_bucket_root_is_a_watched_location(entry):
    spec = make_spec(external_export_prefixes=[entry])
    [_, root] = watched_locations(spec)
    assert (root.bucket, root.prefix, root.uri, root.list_prefix) == (
        ROOT_BUCKET,
        "",
        f"s3://{ROOT_BUCKET}/",
        "AWSDynamoDB/",
    )


def test_checksums_accept_base64_or_hex():
    import hashlib

    data = b"x" * (3 * 1024 * 1024 + 7)
    assert checksum_matches(md5_base64(data) + "\n", data)
    assert checksum_matches(hashlib.md5(data).hexdigest().upper(), data)
    assert not checksum_matches(md5_base64(b"other"), data)


@pytest.mark.parametrize("entry", [f"s3://{ROOT_BUCKET}/", f"s3://{ROOT_BUCKET}/AWSDynamoDB"])
def test_bucket_root_export_is_found_and_adopted_with_its_side_files(aws, entry):
    s3 = aws.client("s3")
    spec = make_spec(external_export_prefixes=[entry])
    items = reviews(45)
    export = write_native_export(s3, bucket=ROOT_BUCKET, items=items, export_time=NOW - dt.timedelta(hours=2))
    summary = json.loads(s3.get_object(Bucket=ROOT_BUCKET, Key=export.summary_key)["Body"].read())
    assert summary["s3Prefix"] is None and "exportType" not in summary  # as DynamoDB writes it

    discovery = discover_exports(s3, spec, ExportCursor.from_json(None, now=NOW), now=NOW)
    assert discovery.skipped == [] and discovery.pending == []
    [found] = discovery.found
    assert (found.export_id, found.partition_key) == (export.export_id, "2026-03-10")
    assert found.manifest.export_dir == f"AWSDynamoDB/{export.export_id}"
    assert [f.item_count for f in found.manifest.data_files] == [23, 22, 0]  # the empty partition's file too

    adopted = adopt_export(s3, spec, found)
    target = _objects(s3, spec.s3_bucket, adopted.export_dir + "/")
    names = sorted(k.removeprefix(adopted.export_dir + "/") for k in target if "/data/" not in k)
    assert names == [
        "_started",
        "manifest-files.json",
        "manifest-files.md5",
        "manifest-summary.json",
        "manifest-summary.md5",
    ]
    assert target[f"{adopted.export_dir}/_started"] == b""
    for name in ("manifest-files", "manifest-summary"):  # the rewritten manifests carry matching checksums
        assert checksum_matches(
            target[f"{adopted.export_dir}/{name}.md5"].decode(), target[f"{adopted.export_dir}/{name}.json"]
        )
    for data_file in adopted.data_files:  # bytes copied unchanged: the manifest's md5 still holds
        assert md5_base64(target[data_file.key]) == data_file.md5
    users = sorted(json.loads(line)["Item"]["User"]["S"] for _, line in iter_export_lines(s3, adopted))
    assert users == sorted(i["User"] for i in items)
    assert adopted.summary["adoptedFrom"] == f"s3://{ROOT_BUCKET}/AWSDynamoDB/{export.export_id}/"
    assert _objects(s3, ROOT_BUCKET, export.export_dir + "/").keys() == set(export.keys)  # the original stays
    reread = read_export_manifest(
        s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix("2026-03-10"), export_id=export.export_id
    )
    assert reread.item_count == 45


def test_checksum_files_named_checksum_are_kept_too(aws):
    s3 = aws.client("s3")
    spec = make_spec(external_export_prefixes=[f"s3://{ROOT_BUCKET}/"])
    write_native_export(s3, bucket=ROOT_BUCKET, items=reviews(5), checksum_suffix=".checksum", export_time=NOW)
    [found] = discover_exports(s3, spec, ExportCursor.from_json(None, now=NOW), now=NOW).found
    adopted = adopt_export(s3, spec, found)
    kept = sorted(k.rsplit("/", 1)[1] for k in list_export_objects(s3, adopted) if "/data/" not in k)
    assert "manifest-files.checksum" in kept and "manifest-summary.checksum" in kept and "_started" in kept


def _break(s3, export, how: str) -> str:
    """Damage a complete export the way a real bucket can be damaged; returns what the reason must mention."""
    key = export.summary_key
    if how == "summary not json":
        s3.put_object(Bucket=export.bucket, Key=key, Body=b"{not json")
        return "is not JSON"
    if how == "count disagrees":
        summary = json.loads(s3.get_object(Bucket=export.bucket, Key=key)["Body"].read())
        body = json.dumps({**summary, "itemCount": 999}, separators=(",", ":")).encode()
        s3.put_object(Bucket=export.bucket, Key=key, Body=body)
        s3.put_object(Bucket=export.bucket, Key=key.replace(".json", ".md5"), Body=md5_base64(body).encode())
        return "itemCount 999"
    if how == "files manifest altered":
        files_key = f"{export.export_dir}/manifest-files.json"
        body = s3.get_object(Bucket=export.bucket, Key=files_key)["Body"].read()
        s3.put_object(Bucket=export.bucket, Key=files_key, Body=body.replace(b'"etag":"', b'"etag":"0', 1))
        return "manifest-files.json does not match its checksum file manifest-files.md5"
    if how == "data file missing":
        s3.delete_object(Bucket=export.bucket, Key=export.data_keys[0])
        return f"do not exist, e.g. s3://{export.bucket}/{export.data_keys[0]}"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["summary not json", "count disagrees", "files manifest altered", "data file missing"])
def test_an_unusable_export_is_skipped_with_its_reason(aws, how):
    s3 = aws.client("s3")
    spec = make_spec(external_export_prefixes=[f"s3://{ROOT_BUCKET}/"])
    export = write_native_export(s3, bucket=ROOT_BUCKET, items=reviews(8), export_time=NOW)
    mention = _break(s3, export, how)
    discovery = discover_exports(s3, spec, ExportCursor.from_json(None, now=NOW), now=NOW)
    assert discovery.found == []
    [skipped] = discovery.skipped
    assert skipped.unusable and mention in skipped.reason, skipped.reason
    assert skipped.describe().startswith(f"s3://{ROOT_BUCKET}/{export.summary_key}: ")


def test_a_summary_without_its_files_manifest_waits_and_says_so(aws):
    s3 = aws.client("s3")
    spec = make_spec(external_export_prefixes=[f"s3://{ROOT_BUCKET}/"])
    export = write_native_export(s3, bucket=ROOT_BUCKET, items=reviews(8), export_time=NOW)
    s3.delete_object(Bucket=ROOT_BUCKET, Key=f"{export.export_dir}/manifest-files.json")
    discovery = discover_exports(s3, spec, ExportCursor.from_json(None, now=NOW), now=NOW)
    assert discovery.found == [] and discovery.skipped == []
    [pending] = discovery.pending
    assert [s.export_id for s in discovery.later] == [export.export_id]
    assert "manifest-files.json" in pending.reason and "not readable yet" in pending.reason


def test_notifications_of_bucket_root_exports_name_their_summary():
    key = "AWSDynamoDB/01767225600000-0a1b2c3d/manifest-summary.json"
    assert parse_export_notification(s3_event(ROOT_BUCKET, key)).summaries == ((ROOT_BUCKET, key),)
    description = {
        "ExportDescription": {
            "ExportArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Reviews/export/01767225600000-0a1b2c3d",
            "ExportStatus": "COMPLETED",
            "S3Bucket": ROOT_BUCKET,
            "S3Prefix": None,
            "ExportManifest": key,
        }
    }
    assert parse_export_notification(json.dumps(description)).summaries == ((ROOT_BUCKET, key),)
    without_manifest = {"ExportDescription": {**description["ExportDescription"], "ExportManifest": None}}
    assert parse_export_notification(json.dumps(without_manifest)).summaries == ((ROOT_BUCKET, key),)
    text = f"export done: s3://{ROOT_BUCKET}/AWSDynamoDB/01767225600000-0a1b2c3d/"
    assert parse_export_notification(text).summaries == ((ROOT_BUCKET, key),)
