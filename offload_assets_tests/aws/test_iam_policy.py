"""The printed IAM policy covers every API call an end-to-end run makes, on the resources it names."""

import fnmatch

import dagster as dg
import pytest

from offload_assets.aws.iam_policy import build_iam_policy
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import partitions_for
from offload_assets.local.demo_data import seed_reviews
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file


def policy_actions(policy: dict) -> set[str]:
    return {a for st in policy["Statement"] for a in st["Action"]}


# botocore operation -> the IAM action that authorises it, where the names differ.
S3_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "DeleteObjects": "s3:DeleteObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    # A server-side copy needs GetObject on the source and PutObject on the target; both lie under
    # the table's prefixes, which one statement grants both actions on.
    "CopyObject": "s3:PutObject",
}
# Set-up the emulator needs but AWS users do once by hand (the bucket exists; the demo table is theirs).
LOCAL_ONLY = {"s3:CreateBucket", "dynamodb:CreateTable", "dynamodb:BatchWriteItem"}


def iam_action(service: str, operation: str) -> str:
    if service == "s3":
        return S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{service}:{operation}"


def _allowed(policy, action, resource_check):
    return any(action in st["Action"] and resource_check(st) for st in policy["Statement"])


@pytest.mark.parametrize("table_format", ["hive", "iceberg"])
def test_policy_covers_every_call_of_a_full_run(aws, emulator, tmp_path, recorded_calls, table_format):
    entry = {"dynamodb_table": "Reviews", "s3_bucket": "iam-bucket", "table_format": table_format}
    if table_format == "iceberg":
        entry["compaction_target_mb"] = 1
        entry["retention_snapshots"] = 1
    tables_file = write_tables_file(tmp_path / "tables.yaml", entry)
    spec = load_tables_file(tables_file).table("Reviews")
    items = seed_reviews(aws.client("dynamodb"), count=200)
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("reviews_offload_job")
    result = job.execute_in_process(partition_key=partitions_for(spec).get_last_partition_key(), instance=instance)
    assert result.success
    expected = {"dynamodb:Scan", "s3:PutObject"}
    if table_format == "iceberg":  # a second export of changed items, then the maintenance job
        gone = items[5]
        aws.client("dynamodb").delete_item(
            TableName="Reviews", Key={"User": {"S": gone["User"]}, "Book": {"S": gone["Book"]}}
        )
        assert recorded_calls.pop()[1] == "DeleteItem"  # the test's own change, not the run's
        assert job.execute_in_process(
            partition_key=partitions_for(spec).get_last_partition_key(), instance=instance
        ).success
        assert defs.resolve_job_def("reviews_iceberg_maintenance_job").execute_in_process(instance=instance).success
        expected |= {"glue:CreateTable", "glue:UpdateTable"}
    else:
        expected |= {"glue:CreatePartition"}
    policy = build_iam_policy([spec], region="us-east-1", account_id="123456789012")

    used = {iam_action(service, op) for service, op, _ in recorded_calls} - LOCAL_ONLY
    assert expected <= used  # the recorder saw the run
    assert used <= policy_actions(policy), f"missing from the policy: {sorted(used - policy_actions(policy))}"

    # Resources: every call stays on the configured table, the table's prefixes and its Glue database.
    s3_prefixes = [spec.export_prefix_root + "/", spec.parquet_root + "/"]
    if table_format == "iceberg":
        s3_prefixes.append(f"{spec.s3_prefix}/iceberg/{spec.catalog_table}/")
    for service, op, params in recorded_calls:
        action = iam_action(service, op)
        if action in LOCAL_ONLY:
            continue
        if service == "dynamodb":
            assert params.get("TableName") == "Reviews", (op, params)
            assert _allowed(policy, action, lambda st: any(r.endswith(":table/Reviews") for r in st["Resource"]))
        elif service == "s3":
            assert params["Bucket"] == "iam-bucket"
            if op == "HeadBucket":
                raise AssertionError("HeadBucket cannot be limited to the table's prefixes; probe with ListObjectsV2")
            key = params.get("Key") or params.get("Prefix")
            keys = [o["Key"] for o in params.get("Delete", {}).get("Objects", [])] or ([key] if key else [])
            for k in keys:
                assert any(k.startswith(p) for p in s3_prefixes), (op, k)
                if action == "s3:ListBucket":  # bucket-level action, limited by an s3:prefix condition
                    assert _allowed(
                        policy,
                        action,
                        lambda st, k=k: (
                            "arn:aws:s3:::iam-bucket" in st["Resource"]
                            and any(fnmatch.fnmatch(k, pat) for pat in st["Condition"]["StringLike"]["s3:prefix"])
                        ),
                    )
                else:
                    assert _allowed(
                        policy,
                        action,
                        lambda st, k=k: any(fnmatch.fnmatch(f"arn:aws:s3:::iam-bucket/{k}", r) for r in st["Resource"]),
                    )
        elif service == "glue":
            db = params.get("DatabaseName") or params.get("Name") or params.get("DatabaseInput", {}).get("Name")
            assert db == "dynamodb-exports", (op, params)


def test_policy_is_scoped_to_the_configured_resources(tmp_path):
    tables = load_tables_file(
        write_tables_file(
            tmp_path / "t.yaml",
            {"dynamodb_table": "Reviews", "s3_bucket": "bucket-a"},
            {
                "dynamodb_table": "Books",
                "s3_bucket": "bucket-b",
                "export_method": "native",
                "catalog_database": "other-db",
            },
        )
    )
    policy = build_iam_policy(
        tables.tables, region="eu-west-1", account_id="111122223333", athena_results_uri="s3://results-bucket/athena/"
    )
    resources = [r for st in policy["Statement"] for r in st["Resource"]]
    assert "*" not in resources
    assert "arn:aws:dynamodb:eu-west-1:111122223333:table/Reviews" in resources
    assert "arn:aws:dynamodb:eu-west-1:111122223333:table/Books/export/*" in resources
    assert "arn:aws:s3:::bucket-b/dynamodb-offload/parquet/books/*" in resources
    assert "arn:aws:glue:eu-west-1:111122223333:table/other-db/books" in resources
    scan = next(st for st in policy["Statement"] if st["Sid"] == "ScanExport")
    assert scan["Resource"] == ["arn:aws:dynamodb:eu-west-1:111122223333:table/Reviews"]  # Books is native: no Scan
    assert "dynamodb:ExportTableToPointInTime" in policy_actions(policy)


def test_iam_policy_command_prints_the_policy_for_the_configured_tables(tmp_path, capsys):
    import json

    from offload_assets.cli.main import main

    tables_file = write_tables_file(
        tmp_path / "t.yaml",
        {
            "dynamodb_table": "Reviews",
            "s3_bucket": "bucket-a",
            "sse_kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/abc",
        },
        {"dynamodb_table": "Books", "s3_bucket": "bucket-b", "export_method": "native"},
    )
    argv = [
        "iam-policy",
        "--tables",
        str(tables_file),
        "--region",
        "eu-west-1",
        "--account-id",
        "111122223333",
        "--athena-workgroup",
        "analysts",
        "--athena-results",
        "s3://results-bucket/athena/",
        "--kms-key",
        "arn:aws:kms:eu-west-1:111122223333:key/extra",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = build_iam_policy(
        load_tables_file(tables_file).tables,
        region="eu-west-1",
        account_id="111122223333",
        athena_workgroup="analysts",
        athena_results_uri="s3://results-bucket/athena/",
        kms_key_arn="arn:aws:kms:eu-west-1:111122223333:key/extra",
    )
    assert printed == expected
    kms = next(st for st in printed["Statement"] if st["Sid"] == "EncryptWithTableKey")
    assert kms["Resource"] == [
        "arn:aws:kms:eu-west-1:111122223333:key/extra",
        "arn:aws:kms:eu-west-1:111122223333:key/abc",
    ]
    athena = next(st for st in printed["Statement"] if st["Sid"] == "AthenaQueries")
    assert athena["Resource"] == ["arn:aws:athena:eu-west-1:111122223333:workgroup/analysts"]

    # One table only: the other table's resources are absent.
    assert main(["iam-policy", "Books", "--tables", str(tables_file)]) == 0
    only_books = capsys.readouterr().out
    assert "table/Books" in only_books and "Reviews" not in only_books and "bucket-a" not in only_books

    # An unknown table is a usage error naming it.
    assert main(["iam-policy", "Nope", "--tables", str(tables_file)]) == 2
    assert "'Nope'" in capsys.readouterr().err


def test_glue_engine_tables_get_job_and_pass_role_permissions(tmp_path):
    tables = load_tables_file(
        write_tables_file(
            tmp_path / "t.yaml",
            {
                "dynamodb_table": "Orders",
                "s3_bucket": "bucket-a",
                "engine": "glue",
                "glue_role_arn": "arn:aws:iam::111122223333:role/offload-glue",
            },
            {"dynamodb_table": "Reviews", "s3_bucket": "bucket-a"},
        )
    )
    policy = build_iam_policy(tables.tables, region="eu-west-1", account_id="111122223333")
    by_sid = {st["Sid"]: st for st in policy["Statement"]}
    assert by_sid["ConvertOnGlue"]["Resource"] == [
        "arn:aws:glue:eu-west-1:111122223333:job/offload-assets-convert-orders"
    ]
    assert "glue:StartJobRun" in by_sid["ConvertOnGlue"]["Action"]
    assert by_sid["PassGlueJobRole"]["Resource"] == ["arn:aws:iam::111122223333:role/offload-glue"]
    assert by_sid["PassGlueJobRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}}
    assert by_sid["GlueJobFiles"]["Resource"] == ["arn:aws:s3:::bucket-a/dynamodb-offload/glue/*"]
    local_only = build_iam_policy([tables.table("Reviews")], region="eu-west-1", account_id="111122223333")
    assert "ConvertOnGlue" not in {st["Sid"] for st in local_only["Statement"]}


def test_sensor_sources_are_readable_and_nothing_more(tmp_path):
    tables = load_tables_file(
        write_tables_file(
            tmp_path / "t.yaml",
            {
                "dynamodb_table": "Reviews",
                "s3_bucket": "bucket-a",
                "external_export_prefixes": ["s3://backup-bucket/ddb/reviews", "landing/reviews"],
                "notification_queue_url": "https://sqs.eu-west-1.amazonaws.com/111122223333/export-finished",
            },
        )
    )
    policy = build_iam_policy(tables.tables, region="eu-west-1", account_id="111122223333")
    gets = [st for st in policy["Statement"] if st["Sid"].startswith("GetExternalExports")]
    assert sorted(r for st in gets for r in st["Resource"]) == [
        "arn:aws:s3:::backup-bucket/ddb/reviews/*",
        "arn:aws:s3:::bucket-a/landing/reviews/*",
    ]
    assert all(st["Action"] == ["s3:GetObject"] for st in gets)
    sqs = next(st for st in policy["Statement"] if st["Sid"] == "ExportNotifications")
    assert sqs["Resource"] == ["arn:aws:sqs:eu-west-1:111122223333:export-finished"]
    assert "sqs:SendMessage" not in sqs["Action"]
