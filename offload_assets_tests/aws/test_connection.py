"""Issue 14, point 7: every client (boto3, pyarrow's S3FileSystem, pyiceberg's FileIO) is built from the one
connection description, so they agree on region and endpoint; ``AWS_REGION`` works as the README says."""

import pyarrow.fs as pafs
import pytest

from offload_assets.aws.connection import LOCAL_CREDENTIALS, resolve_connection
from offload_assets.iceberg.catalog import catalog_properties

SERVICES = ("dynamodb", "s3", "glue", "athena", "sts")


@pytest.fixture()
def clean_env(monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    return monkeypatch


@pytest.mark.parametrize(
    "env,region",
    [
        ({"AWS_REGION": "eu-west-3"}, "eu-west-3"),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),  # as the AWS CLI
    ],
)
def test_every_client_takes_the_region_from_the_environment(clean_env, env, region):
    for name, value in env.items():
        clean_env.setenv(name, value)
    conn = resolve_connection(target="aws")
    assert {conn.client(s).meta.region_name for s in SERVICES} == {region}  # no NoRegionError
    assert conn.arrow_filesystem().region == region
    props = catalog_properties(conn)
    assert props["s3.region"] == props["glue.region"] == region


def test_an_explicit_region_wins_over_the_environment(clean_env):
    clean_env.setenv("AWS_REGION", "eu-west-3")
    conn = resolve_connection(target="aws", region_name="us-west-2")
    assert conn.client("dynamodb").meta.region_name == conn.arrow_filesystem().region == "us-west-2"


def test_aws_endpoint_url_is_honoured_by_boto3_pyarrow_and_pyiceberg(clean_env, emulator, aws):
    """AWS mode against an endpoint the user configured (here the emulator on loopback): no client goes elsewhere."""
    clean_env.setenv("AWS_REGION", "us-east-1")
    clean_env.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    conn = resolve_connection(target="aws")
    assert {conn.client(s).meta.endpoint_url for s in SERVICES} == {emulator.endpoint_url}
    assert catalog_properties(conn)["s3.endpoint"] == emulator.endpoint_url

    s3 = conn.client("s3")
    s3.create_bucket(Bucket="endpoint-test")
    fs = conn.arrow_filesystem()
    with fs.open_output_stream("endpoint-test/written-by-pyarrow.txt") as out:
        out.write(b"same endpoint")
    assert s3.get_object(Bucket="endpoint-test", Key="written-by-pyarrow.txt")["Body"].read() == b"same endpoint"
    assert fs.get_file_info("endpoint-test/written-by-pyarrow.txt").type == pafs.FileType.File


def test_a_service_specific_endpoint_applies_to_that_service_only(clean_env, emulator, aws):
    clean_env.setenv("AWS_REGION", "us-east-1")
    clean_env.setenv("AWS_ENDPOINT_URL_S3", emulator.endpoint_url)
    conn = resolve_connection(target="aws")
    assert conn.client("s3").meta.endpoint_url == emulator.endpoint_url
    assert catalog_properties(conn)["s3.endpoint"] == emulator.endpoint_url
    assert "amazonaws.com" in conn.client("dynamodb").meta.endpoint_url  # built, never called
    conn.client("s3").create_bucket(Bucket="s3-only")
    assert conn.arrow_filesystem().get_file_info("s3-only").type == pafs.FileType.Directory


def test_local_mode_sends_every_client_to_the_emulator(clean_env, emulator, aws):
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # ignored: local mode means the emulator
    conn = resolve_connection(target="local", endpoint_url=emulator.endpoint_url)
    assert {conn.client(s).meta.endpoint_url for s in SERVICES} == {emulator.endpoint_url}
    assert catalog_properties(conn)["s3.endpoint"] == emulator.endpoint_url
