"""`offload-assets deploy template`: cfn-lint passes, the IAM statements are the generator's, the stack deploys
on the emulator's CloudFormation and the demo answers the blog's query against the stack's bucket and database;
`offload-assets deploy check` passes on that stack and names the failure on three broken ones."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from offload_assets.aws.iam_policy import build_iam_policy
from offload_assets.cli.demo import BLOG_QUERY
from offload_assets.cli.main import main
from offload_assets.deploy.template import build_template, dagster_role_policy, render_template
from offload_assets.local.demo_data import seed_reviews
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.deploy.conftest import MOTO_SKIPS, bucket_output, database_output, deploy_stack

CFN_LINT = Path(sys.executable).with_name("cfn-lint")
KMS_KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _two_tables(tmp_path: Path) -> Path:
    return write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Reviews"},
        {
            "dynamodb_table": "Orders",
            "s3_bucket": "orders-lake",
            "export_method": "native",
            "engine": "glue",
            "retention_snapshots": 7,
            "sse_kms_key_id": KMS_KEY,
            "catalog_database": "sales",
        },
        defaults={"s3_bucket": "offload-assets-deploy"},
    )


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_template_passes_cfn_lint(tmp_path, capsys, fmt):
    tables = _two_tables(tmp_path)
    assert main(["deploy", "template", "--tables", str(tables), "--format", fmt]) == 0
    rendered = capsys.readouterr().out
    # `offload-assets deploy template | cfn-lint` (cfn-lint 1.x reads the template from stdin when given no file)
    lint = subprocess.run([str(CFN_LINT)], input=rendered, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    template = json.loads(rendered) if fmt == "json" else build_template(load_tables_file(tables).tables)
    kinds = sorted({r["Type"] for r in template["Resources"].values()})
    assert kinds == [
        "AWS::Athena::WorkGroup",
        "AWS::Glue::Database",
        "AWS::IAM::Role",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SNS::Subscription",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
    ]
    buckets = {
        r["Properties"]["BucketName"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::S3::Bucket"
    }
    assert sorted(buckets) == ["offload-assets-deploy", "orders-lake"]
    orders = buckets["orders-lake"]
    assert orders["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": KMS_KEY,
    }
    assert orders["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert all(orders["PublicAccessBlockConfiguration"].values())
    rules = {r["Prefix"]: r["ExpirationInDays"] for r in orders["LifecycleConfiguration"]["Rules"] if "Prefix" in r}
    assert rules == {
        "dynamodb-offload/glue/pipes/": 7,
        "dynamodb-offload/glue/requests/": 7,
        "dynamodb-offload/exports/orders/": 9,  # retention 7 snapshots + 2 days
    }
    assert "GlueJobRoleArn" in template["Outputs"] and "SalesGlueDatabase" in template["Outputs"]


def test_dagster_role_holds_exactly_the_iam_policy_statements(tmp_path):
    specs = load_tables_file(_two_tables(tmp_path)).tables
    template = build_template(specs)
    [policy] = template["Resources"]["DagsterRole"]["Properties"]["Policies"]
    assert policy["PolicyDocument"] == dagster_role_policy(specs, "offload-assets-deploy")
    # The same statements as `offload-assets iam-policy` for these tables once they name the stack's topic and role.
    named = [
        dataclasses.replace(
            s,
            notification_topic_arn="arn:aws:sns:eu-west-1:111122223333:offload-assets-events",
            glue_role_arn="arn:aws:iam::111122223333:role/offload-assets-glue-job" if s.engine == "glue" else None,
        )
        for s in specs
    ]
    generated = build_iam_policy(
        named, region="R", account_id="A", athena_workgroup="W", athena_results_uri="s3://b/p/"
    )
    in_stack = policy["PolicyDocument"]["Statement"]
    assert [(s["Sid"], s["Action"]) for s in in_stack] == [(s["Sid"], s["Action"]) for s in generated["Statement"]]
    by_sid = {s["Sid"]: s for s in in_stack}
    assert by_sid["PublishNotifications"]["Resource"] == [{"Fn::Sub": "${NotificationTopic}"}]
    assert by_sid["PassGlueJobRole"]["Resource"] == [{"Fn::Sub": "${GlueJobRole.Arn}"}]
    assert by_sid["ScanExport"]["Resource"] == [
        {"Fn::Sub": "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/Reviews"}
    ]
    assert render_template(template).count("${AWS::AccountId}") > 0


def _check(capsys, tables: Path, *extra: str) -> tuple[int, list[dict]]:
    code = main(["deploy", "check", "--tables", str(tables), "--stack", "offload-assets", "--format", "json", *extra])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return code, json.loads(captured.out)


def _stack_tables(path: Path, stack, **fields) -> Path:
    entry = {
        "dynamodb_table": "Reviews",
        "s3_bucket": bucket_output(stack),
        "catalog_database": database_output(stack),
        "notification_topic_arn": stack.outputs["NotificationTopicArn"],
        **fields,
    }
    return write_tables_file(path, entry)


@pytest.fixture()
def cli_env(monkeypatch, emulator):
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "local")


def test_stack_deploys_on_the_emulator_and_the_demo_answers_against_it(tmp_path, capsys, emulator, aws, cli_env):
    import dagster as dg

    from offload_assets.defs.definitions import build_definitions
    from offload_assets.defs.table_assets import partitions_for
    from offload_assets.sql.query import run_query

    bootstrap = write_tables_file(tmp_path / "bootstrap.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "stack-lake"})
    stack = deploy_stack(aws, bootstrap)
    skipped = sorted({r["Type"] for r in stack.template["Resources"].values()} & set(MOTO_SKIPS))
    assert skipped == sorted(MOTO_SKIPS)  # what moto's CloudFormation does not create (see conftest)
    assert bucket_output(stack) == "stack-lake" and database_output(stack) == "dynamodb-exports"
    assert aws.client("s3").get_bucket_encryption(Bucket="stack-lake")["ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    role = aws.client("iam").get_role(RoleName="offload-assets-dagster")["Role"]
    assert role["Arn"] == stack.outputs["DagsterRoleArn"]

    # The tables file takes the stack's outputs; the demo path runs against them.
    tables = _stack_tables(tmp_path / "tables.yaml", stack)
    spec = load_tables_file(tables).tables[0]
    seeded = seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=300)
    expected = sum(1 for item in seeded if item.get("Author") == "J.K. Rowling")
    defs = build_definitions(tables, target="local", endpoint_url=emulator.endpoint_url)
    result = defs.resolve_job_def("reviews_offload_job").execute_in_process(
        partition_key=partitions_for(spec).get_last_partition_key(), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert run_query(BLOG_QUERY, connection=aws).scalar() == expected
    listed = aws.client("s3").list_objects_v2(Bucket="stack-lake", Prefix="dynamodb-offload/parquet/reviews/")
    assert any(o["Key"].endswith(".parquet") for o in listed["Contents"])

    # The preflight passes on it (the policy simulator is a skip: the emulator has none).
    code, results = _check(capsys, tables)
    statuses = {(r["check"], r["subject"]): r["status"] for r in results}
    assert code == 0, [r for r in results if r["status"] != "pass"]
    assert statuses[("table exists", "Reviews")] == "pass"
    assert statuses[("glue database", "dynamodb-exports")] == "pass"
    assert statuses[("athena workgroup", "offload-assets")] == "pass"
    assert statuses[("notification topic", stack.outputs["NotificationTopicArn"])] == "pass"
    assert [r["check"] for r in results if r["status"] == "skip"] == ["iam permissions"]


def test_check_names_the_failure_of_each_broken_stack(tmp_path, capsys, emulator, aws, cli_env):
    stack = deploy_stack(
        aws, write_tables_file(tmp_path / "b.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "stack-lake"})
    )
    seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=20)

    def failures(**fields) -> list[tuple[str, str]]:
        code, results = _check(capsys, _stack_tables(tmp_path / "t.yaml", stack, **fields))
        bad = [(r["check"], r["subject"]) for r in results if r["status"] == "fail"]
        assert code == (1 if bad else 0)
        assert all(r["fix"] for r in results if r["status"] == "fail")
        return bad

    backdate_point_in_time_recovery(emulator.endpoint_url, "Reviews", days=2)
    owner = aws.client("sts").get_caller_identity()["Account"]
    assert failures(export_method="native", expected_bucket_owner=owner) == []

    # 1. PITR off where a native export needs it.
    aws.client("dynamodb").update_continuous_backups(
        TableName="Reviews", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    assert failures(export_method="native") == [("point-in-time recovery", "Reviews")]
    # 2. The bucket belongs to another account than expected_bucket_owner says.
    assert failures(expected_bucket_owner="111111111111") == [("bucket owner", "stack-lake")]
    # 3. The Glue database is missing.
    aws.client("glue").delete_database(Name="dynamodb-exports")
    assert failures() == [("glue database", "dynamodb-exports")]
