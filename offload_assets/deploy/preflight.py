"""The preflight check: read-only, with the current credentials, is this account ready for the tables file?

Each check is one question with a pass, fail or skip answer, a detail, and for a failure the fix.
Nothing here writes: only Describe/Get/Head/List calls (and IAM's policy simulator, which
evaluates policies without acting). A check the credentials may not make, or the endpoint does
not implement (the local emulator has no policy simulator), is a skip with its reason, not a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from offload_assets.aws.iam_policy import build_iam_policy
from offload_assets.table_spec import TableSpec

PASS, FAIL, SKIP = "pass", "fail", "skip"
NEEDS_PITR = ("native", "incremental")
_NOT_FOUND = {
    "404",
    "NoSuchBucket",
    "NotFound",
    "ResourceNotFoundException",
    "EntityNotFoundException",
    "NotFoundException",
}
_NOT_ALLOWED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}


@dataclass(frozen=True)
class CheckResult:
    subject: str  # what is checked: a table, a bucket, a database, the workgroup, the identity
    check: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _why(err: Exception) -> str:
    return f"{_code(err)}: {err}" if isinstance(err, ClientError) else f"{type(err).__name__}: {err}"


def check_table(dynamodb: Any, spec: TableSpec) -> list[CheckResult]:
    name = spec.dynamodb_table
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as err:
        if _code(err) in _NOT_FOUND:
            return [
                CheckResult(
                    name,
                    "table exists",
                    FAIL,
                    "no such DynamoDB table in this account and region",
                    f"create it, or fix dynamodb_table / the region (AWS_REGION) for {name!r}",
                )
            ]
        raise
    keys = ", ".join(f"{k['KeyType']} {k['AttributeName']}" for k in table["KeySchema"])
    results = [CheckResult(name, "table exists", PASS, f"{table['TableStatus']}, key schema: {keys}")]
    if spec.export_method in NEEDS_PITR:
        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus", "DISABLED")
        results.append(
            CheckResult(
                name,
                "point-in-time recovery",
                PASS if status == "ENABLED" else FAIL,
                f"PITR {status} (export_method: {spec.export_method} exports from it)",
                ""
                if status == "ENABLED"
                else f"aws dynamodb update-continuous-backups --table-name {name} "
                "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
            )
        )
    return results


def _owned_by_caller(s3: Any, bucket: str) -> bool | None:
    """Whether ``bucket`` is among the caller account's buckets (ListBuckets lists only those); None if not allowed."""
    try:
        pages = s3.get_paginator("list_buckets").paginate()
        return any(b["Name"] == bucket for page in pages for b in page.get("Buckets", []))
    except ClientError as err:
        if _code(err) in _NOT_ALLOWED:
            return None
        raise


def check_bucket(
    s3: Any, bucket: str, specs: list[TableSpec], *, region: str, caller_account: str | None
) -> list[CheckResult]:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        if _code(err) in _NOT_FOUND:
            return [
                CheckResult(
                    bucket,
                    "bucket exists",
                    FAIL,
                    "no such bucket",
                    "create the stack (`offload-assets deploy template`)",
                )
            ]
        if _code(err) in _NOT_ALLOWED:
            return [
                CheckResult(
                    bucket,
                    "bucket exists",
                    FAIL,
                    "access denied",
                    "grant these credentials the iam-policy statements, or fix s3_bucket",
                )
            ]
        raise
    results = [CheckResult(bucket, "bucket exists", PASS, "reachable")]
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    results.append(
        CheckResult(
            bucket,
            "bucket region",
            PASS if location == region else FAIL,
            f"bucket in {location}, tables and clients in {region}",
            ""
            if location == region
            else f"use a bucket in {region} (cross-region exports cost transfer), or set AWS_REGION={location}",
        )
    )
    for owner in dict.fromkeys(s.expected_bucket_owner for s in specs if s.expected_bucket_owner):
        results.append(_check_owner(s3, bucket, owner, caller_account))
    results.append(_check_encryption(s3, bucket, specs))
    return results


def _check_owner(s3: Any, bucket: str, owner: str, caller_account: str | None) -> CheckResult:
    check, fix = (
        "bucket owner",
        f"set expected_bucket_owner to the account that owns {bucket}, or use a bucket of {owner}",
    )
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=owner)
    except ClientError as err:
        return CheckResult(bucket, check, FAIL, f"S3 refuses ExpectedBucketOwner={owner} ({_code(err)})", fix)
    ours = _owned_by_caller(s3, bucket)
    if caller_account and ours is not None:
        if ours and caller_account != owner:
            return CheckResult(bucket, check, FAIL, f"owned by {caller_account} (these credentials), not {owner}", fix)
        if not ours and caller_account == owner:
            return CheckResult(bucket, check, FAIL, f"not owned by {owner} (these credentials' account)", fix)
    return CheckResult(bucket, check, PASS, f"owned by {owner}")


def _check_encryption(s3: Any, bucket: str, specs: list[TableSpec]) -> CheckResult:
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        default = rules[0]["ApplyServerSideEncryptionByDefault"]
    except ClientError as err:
        if _code(err) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        default = {"SSEAlgorithm": "AES256"}  # S3's default since 2023
    shown = default["SSEAlgorithm"] + (f" ({default['KMSMasterKeyID']})" if default.get("KMSMasterKeyID") else "")
    wanted = {s.sse_kms_key_id for s in specs if s.sse_kms_key_id}
    if not wanted:
        return CheckResult(bucket, "encryption", PASS, f"default {shown}; the tables write SSE-S3 (AES256)")
    if default["SSEAlgorithm"] == "aws:kms" and default.get("KMSMasterKeyID") in wanted:
        return CheckResult(bucket, "encryption", PASS, f"default {shown}, a key the tables use")
    return CheckResult(
        bucket,
        "encryption",
        FAIL,
        f"default {shown}, but the tables use {', '.join(sorted(wanted))}",
        "set the bucket's default encryption to the tables' KMS key (the template does)",
    )


def check_database(glue: Any, database: str) -> CheckResult:
    try:
        glue.get_database(Name=database)
    except ClientError as err:
        if _code(err) in _NOT_FOUND:
            return CheckResult(
                database,
                "glue database",
                FAIL,
                "no such Glue database",
                f"create the stack (it creates {database!r}), or `aws glue create-database --database-input Name={database}`",
            )
        raise
    return CheckResult(database, "glue database", PASS, "exists")


def check_workgroup(athena: Any, workgroup: str) -> CheckResult:
    try:
        group = athena.get_work_group(WorkGroup=workgroup)["WorkGroup"]
    except ClientError as err:
        if _code(err) in _NOT_FOUND | {"InvalidRequestException"}:
            return CheckResult(
                workgroup, "athena workgroup", FAIL, "no such workgroup", "create the stack, or pass --workgroup"
            )
        raise
    location = group.get("Configuration", {}).get("ResultConfiguration", {}).get("OutputLocation")
    return CheckResult(
        workgroup, "athena workgroup", PASS, f"{group.get('State', 'ENABLED')}, results in {location or '(not set)'}"
    )


def check_topics(sns: Any, specs: list[TableSpec]) -> list[CheckResult]:
    results = []
    for arn in dict.fromkeys(s.notification_topic_arn for s in specs if s.notification_topic_arn):
        try:
            sns.get_topic_attributes(TopicArn=arn)
            results.append(CheckResult(arn, "notification topic", PASS, "exists"))
        except ClientError as err:
            if _code(err) not in _NOT_FOUND:
                raise
            results.append(
                CheckResult(
                    arn,
                    "notification topic",
                    FAIL,
                    "no such topic",
                    "set notification_topic_arn to the stack's NotificationTopicArn output",
                )
            )
    return results


def _principal_arn(identity_arn: str) -> str:
    """The simulator wants the role, not the session: ``...:assumed-role/R/s`` -> ``...:role/R``."""
    if ":assumed-role/" in identity_arn:
        head, _, rest = identity_arn.partition(":assumed-role/")
        return f"{head.replace(':sts:', ':iam:')}:role/{rest.split('/')[0]}"
    return identity_arn


def check_permissions(iam: Any, identity_arn: str, policy: dict[str, Any]) -> CheckResult:
    subject, denied = _principal_arn(identity_arn), []
    try:
        for statement in policy["Statement"]:
            for resource in statement["Resource"]:
                pages = iam.get_paginator("simulate_principal_policy").paginate(
                    PolicySourceArn=subject, ActionNames=statement["Action"], ResourceArns=[resource]
                )
                denied += [
                    f"{r['EvalActionName']} on {resource}"
                    for page in pages
                    for r in page["EvaluationResults"]
                    if r["EvalDecision"] != "allowed"
                ]
    except (ClientError, BotoCoreError, ResponseParserError) as err:  # an endpoint without the simulator answers 500
        return CheckResult(subject, "iam permissions", SKIP, f"policy simulation not possible here ({_why(err)[:160]})")
    if denied:
        return CheckResult(
            subject,
            "iam permissions",
            FAIL,
            f"{len(denied)} denied, e.g. {'; '.join(denied[:3])}",
            "attach `offload-assets iam-policy` (or run as the stack's DagsterRoleArn)",
        )
    return CheckResult(
        subject,
        "iam permissions",
        PASS,
        f"every action of the policy allowed ({sum(len(s['Action']) for s in policy['Statement'])} actions)",
    )


def run_preflight(
    specs: Iterable[TableSpec],
    client: Callable[[str], Any],
    *,
    region: str,
    workgroup: str,
    athena_results_uri: str | None = None,
) -> list[CheckResult]:
    """Every check for ``specs``; ``client(service)`` returns a boto3 client with the credentials to check."""
    specs = list(specs)
    try:
        identity = client("sts").get_caller_identity()
        caller_account, identity_arn = identity["Account"], identity["Arn"]
        results = [CheckResult(identity_arn, "credentials", PASS, f"account {caller_account}, region {region}")]
    except (ClientError, BotoCoreError) as err:
        return [
            CheckResult(
                "(none)", "credentials", FAIL, _why(err), "configure AWS credentials (AWS_PROFILE, SSO, a role)"
            )
        ]
    dynamodb, s3 = client("dynamodb"), client("s3")
    for spec in specs:
        results += check_table(dynamodb, spec)
    for bucket in dict.fromkeys(s.s3_bucket for s in specs):
        results += check_bucket(
            s3, bucket, [s for s in specs if s.s3_bucket == bucket], region=region, caller_account=caller_account
        )
    glue = client("glue")
    results += [check_database(glue, db) for db in dict.fromkeys(s.catalog_database for s in specs)]
    results.append(check_workgroup(client("athena"), workgroup))
    results += check_topics(client("sns"), specs)
    policy = build_iam_policy(
        specs,
        region=region,
        account_id=caller_account,
        athena_workgroup=workgroup,
        athena_results_uri=athena_results_uri,
    )
    results.append(check_permissions(client("iam"), identity_arn, policy))
    return results


def failed(results: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == FAIL]
