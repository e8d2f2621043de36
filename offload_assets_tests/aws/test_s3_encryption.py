"""Every S3 write carries server-side encryption (and ExpectedBucketOwner when configured).

An end-to-end run (export, conversion, publish) is recorded at the botocore level and every
object-creating call is checked; the written objects are then read back with HeadObject.
"""

from __future__ import annotations

import os

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offload_assets.aws.s3_writes import (
    WRITE_OPERATIONS,
    encrypted_output_filesystem,
    enforce_s3_settings,
    native_export_kwargs,
    s3_put_kwargs,
)
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import partitions_for
from offload_assets.local.demo_data import seed_reviews
from offload_assets.sql.query import run_query
from offload_assets.table_spec import TablesFileError, load_tables_file
from offload_assets_tests.conftest import write_tables_file

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OWNER = "123456789012"


def _run_offload(tables_file, emulator, aws, count=300):
    spec = load_tables_file(tables_file).tables[0]
    items = seed_reviews(aws.client("dynamodb"), count=count)
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    result = defs.resolve_job_def(f"{spec.name}_offload_job").execute_in_process(
        partition_key=partitions_for(spec).get_last_partition_key(), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return spec, len(items)


def _all_keys(s3, bucket):
    return [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({}, {"ServerSideEncryption": "AES256"}),
        (
            {"sse_kms_key_id": KMS_KEY, "expected_bucket_owner": OWNER},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_KEY, "ExpectedBucketOwner": OWNER},
        ),
    ],
    ids=["sse-s3-default", "sse-kms-and-owner"],
)
def test_every_write_of_a_full_run_is_encrypted(aws, emulator, tmp_path, recorded_calls, extra, expected):
    tables_file = write_tables_file(
        tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "sse-bucket", **extra}
    )
    spec, items = _run_offload(tables_file, emulator, aws)

    s3_calls = [
        (op, params)
        for service, op, params in recorded_calls
        if service == "s3" and params.get("Bucket") == "sse-bucket"
    ]
    writes = [(op, params) for op, params in s3_calls if op in WRITE_OPERATIONS]
    ops = {op for op, _ in writes}
    assert "PutObject" in ops and len(writes) >= 4  # data files, manifests, Parquet part, _snapshot.json
    for op, params in writes:
        for name, value in expected.items():
            assert params.get(name) == value, (
                f"{op} {params.get('Key')}: {name}={params.get(name)!r}, expected {value!r}"
            )
        if "SSEKMSKeyId" not in expected:
            assert "SSEKMSKeyId" not in params
    if (
        "ExpectedBucketOwner" in expected
    ):  # every boto3 request on the bucket that accepts it: writes, deletes, reads, lists
        deletes = [op for op, _ in s3_calls if op.startswith("Delete")]
        assert deletes  # the scan's checkpoints are removed: deletes were exercised
        model = aws.client("s3").meta.service_model
        accepting = [
            (op, p) for op, p in s3_calls if "ExpectedBucketOwner" in model.operation_model(op).input_shape.members
        ]
        assert {"GetObject", "ListObjectsV2"} <= {
            op for op, _ in accepting
        }  # the checks' and publish's reads are covered
        unchecked = [
            (op, p.get("Key") or p.get("Prefix")) for op, p in accepting if p.get("ExpectedBucketOwner") != OWNER
        ]
        assert not unchecked, unchecked

    # What landed: every object (raw export, manifests, checkpoints, Parquet, _snapshot.json) is encrypted.
    s3 = aws.client("s3")
    keys = _all_keys(s3, "sse-bucket")
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith("_snapshot.json") for k in keys)
    assert any(k.endswith(".json.gz") or k.endswith(".gz") for k in keys)
    for key in keys:
        head = s3.head_object(Bucket="sse-bucket", Key=key)
        assert head.get("ServerSideEncryption") == expected["ServerSideEncryption"], key
        if "SSEKMSKeyId" in expected:
            assert head.get("SSEKMSKeyId") == KMS_KEY, key
    # No zero-byte directory markers (pyarrow would have written them unencrypted).
    assert not [k for k in keys if k.endswith("/")]
    # And the encrypted snapshot answers SQL.
    count = run_query(f'SELECT COUNT(*) FROM "{spec.catalog_database}"."{spec.catalog_table}"', connection=aws).scalar()
    assert count == items


def test_put_kwargs_and_native_export_settings(tmp_path):
    tables = load_tables_file(
        write_tables_file(
            tmp_path / "t.yaml",
            {"dynamodb_table": "Plain", "s3_bucket": "bucket-a"},
            {
                "dynamodb_table": "Kms",
                "s3_bucket": "bucket-a",
                "sse_kms_key_id": "alias/offload",
                "expected_bucket_owner": OWNER,
            },
        )
    )
    plain, kms = tables.tables
    assert s3_put_kwargs(plain) == {"ServerSideEncryption": "AES256"}
    assert native_export_kwargs(s3_put_kwargs(plain)) == {"S3SseAlgorithm": "AES256"}
    assert s3_put_kwargs(kms) == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/offload",
        "ExpectedBucketOwner": OWNER,
    }
    assert native_export_kwargs(s3_put_kwargs(kms)) == {
        "S3SseAlgorithm": "KMS",
        "S3SseKmsKeyId": "alias/offload",
        "S3BucketOwner": OWNER,
    }


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("expected_bucket_owner", "12345", "12-digit AWS account id"),
        ("expected_bucket_owner", "1234567890ab", "12-digit AWS account id"),
        ("sse_kms_key_id", "key with spaces", "KMS key id"),
        ("sse_kms_key_id", "arn:aws:kms:us-east-1:123:key/x", "KMS key id"),
    ],
)
def test_bad_encryption_settings_are_refused_naming_table_and_field(tmp_path, field, value, message):
    path = write_tables_file(tmp_path / "t.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "bucket-a", field: value})
    with pytest.raises(TablesFileError) as err:
        load_tables_file(path)
    assert "'Reviews'" in str(err.value) and field in str(err.value) and message in str(err.value)


def test_hook_adds_settings_only_on_the_tables_bucket_and_keeps_explicit_ones(aws, tmp_path):
    spec = load_tables_file(
        write_tables_file(
            tmp_path / "t.yaml",
            {"dynamodb_table": "Reviews", "s3_bucket": "owned-bucket", "sse_kms_key_id": "alias/k"},
        )
    ).tables[0]
    s3 = aws.client("s3")
    for bucket in ("owned-bucket", "other-bucket"):
        s3.create_bucket(Bucket=bucket)
    enforce_s3_settings(s3, spec)
    enforce_s3_settings(s3, spec)  # idempotent: one hook per client
    s3.put_object(Bucket="owned-bucket", Key="a", Body=b"1")
    s3.put_object(Bucket="owned-bucket", Key="b", Body=b"1", ServerSideEncryption="AES256")
    s3.put_object(Bucket="other-bucket", Key="c", Body=b"1")
    assert s3.head_object(Bucket="owned-bucket", Key="a")["SSEKMSKeyId"] == "alias/k"
    assert s3.head_object(Bucket="owned-bucket", Key="b")["ServerSideEncryption"] == "AES256"
    assert "SSEKMSKeyId" not in s3.head_object(Bucket="other-bucket", Key="c")


def test_encrypted_output_filesystem_uploads_multipart_with_sse(aws, recorded_calls):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="parts-bucket")
    fs = encrypted_output_filesystem(
        s3, aws.arrow_filesystem(), {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/big"}
    )
    fs.create_dir("parts-bucket/run/dir", recursive=True)  # writes nothing: S3 has no directories
    # 9 MiB of incompressible bytes: just above boto3's 8 MiB multipart threshold.
    big = pa.table({"x": pa.array([os.urandom(1024 * 1024) for _ in range(9)], pa.binary())})
    pq.write_table(big, "parts-bucket/run/dir/part-00000.parquet", filesystem=fs, compression="none")
    with fs.open_output_stream("parts-bucket/run/dir/small.txt") as out:
        out.write(b"hello")

    ops = [(op, p) for service, op, p in recorded_calls if service == "s3" and p.get("Bucket") == "parts-bucket"]
    assert "CreateMultipartUpload" in {op for op, _ in ops} and "UploadPart" in {op for op, _ in ops}
    for op, params in ops:
        if op in WRITE_OPERATIONS:
            assert params["ServerSideEncryption"] == "aws:kms" and params["SSEKMSKeyId"] == "alias/big", op
    assert sorted(_all_keys(s3, "parts-bucket")) == ["run/dir/part-00000.parquet", "run/dir/small.txt"]
    assert pq.read_table("parts-bucket/run/dir/part-00000.parquet", filesystem=fs).num_rows == big.num_rows
    assert s3.head_object(Bucket="parts-bucket", Key="run/dir/part-00000.parquet")["SSEKMSKeyId"] == "alias/big"
    info = fs.get_file_info("parts-bucket/run/dir/small.txt")
    assert info.size == 5
    fs.delete_file("parts-bucket/run/dir/small.txt")
    assert _all_keys(s3, "parts-bucket") == ["run/dir/part-00000.parquet"]
