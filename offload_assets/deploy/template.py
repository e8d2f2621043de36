"""One CloudFormation stack for a whole tables file: bucket(s), Glue database(s), Athena workgroup, roles, topic, queue.

The blog deploys one stack per table plus a common stack; here the tables file is the unit. What
the tables file decides (bucket and database names, prefixes, each table's KMS key, retention)
is rendered in; what differs per account is a parameter (name prefix, KMS key for query results,
the principal trusted to assume the Dagster role, the Athena scan cutoff). The Dagster role's
permissions are exactly :func:`offload_assets.aws.iam_policy.build_iam_policy`'s statements for
the same tables (one source of truth), with the stack's own region, account, workgroup, topic and
Glue job role substituted in. Each output's description says where its value goes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

import yaml

from offload_assets.aws.iam_policy import build_iam_policy
from offload_assets.table_spec import TableSpec

ATHENA_RESULTS_PREFIX = "athena-results"
# Objects the Glue engine leaves for Dagster Pipes (offload_assets.defs.glue_pipes, spark.glue_launch).
SHORT_LIVED_PREFIXES = ("glue/pipes", "glue/requests")
SHORT_LIVED_DAYS = 7
ATHENA_RESULTS_DAYS = 30
DEFAULT_SCAN_CUTOFF_BYTES = 10 * 1024**3

# Placeholders handed to the policy generator, resolved by CloudFormation (Fn::Sub).
_REGION, _ACCOUNT = "${AWS::Region}", "${AWS::AccountId}"
_TOPIC, _GLUE_ROLE, _WORKGROUP = "${NotificationTopic}", "${GlueJobRole.Arn}", "${AthenaWorkGroupName}"


def logical_id(kind: str, name: str) -> str:
    """A CloudFormation logical id (alphanumeric) naming what it is for: ``Bucket`` + ``OffloadAssetsLocal``."""
    return kind + "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _sub_placeholders(node: Any) -> Any:
    """Wrap every string holding a ``${...}`` placeholder in ``Fn::Sub`` (S3 prefixes and names cannot contain ``$``)."""
    if isinstance(node, dict):
        return {k: _sub_placeholders(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_sub_placeholders(v) for v in node]
    if isinstance(node, str) and "${" in node:
        return {"Fn::Sub": node}
    return node


def _uses_stack_resources(specs: list[TableSpec]) -> list[TableSpec]:
    """The specs as the deployed role will see them: the stack's topic and Glue role where the file names none."""
    out = []
    for s in specs:
        changes: dict[str, Any] = {}
        if not s.notification_topic_arn:
            changes["notification_topic_arn"] = _TOPIC
        if s.engine == "glue" and not s.glue_role_arn:
            changes["glue_role_arn"] = _GLUE_ROLE
        out.append(dataclasses.replace(s, **changes) if changes else s)
    return out


def dagster_role_policy(specs: Iterable[TableSpec], results_bucket: str) -> dict[str, Any]:
    """The Dagster role's policy document: the generator's statements, placeholders for the stack's values."""
    return _sub_placeholders(
        build_iam_policy(
            _uses_stack_resources(list(specs)),
            region=_REGION,
            account_id=_ACCOUNT,
            athena_workgroup=_WORKGROUP,
            athena_results_uri=f"s3://{results_bucket}/{ATHENA_RESULTS_PREFIX}/",
        )
    )


def _bucket_encryption(specs: list[TableSpec]) -> dict[str, Any]:
    keys = {s.sse_kms_key_id for s in specs}
    if len(keys) == 1 and None not in keys:  # every table on the bucket uses the same KMS key
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys.pop()}
        return {
            "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]
        }
    return {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def _lifecycle_rules(specs: list[TableSpec], *, holds_athena_results: bool) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "Id": "AbortIncompleteUploads",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        }
    ]
    for s3_prefix in dict.fromkeys(s.s3_prefix for s in specs):
        for short in SHORT_LIVED_PREFIXES:
            rules.append(
                {
                    "Id": logical_id("Expire", f"{s3_prefix}-{short}")[:255],
                    "Status": "Enabled",
                    "Prefix": f"{s3_prefix}/{short}/",
                    "ExpirationInDays": SHORT_LIVED_DAYS,
                }
            )
    for s in specs:
        if s.retention_snapshots:  # raw exports outlive their snapshots by a safety day; Parquet is pruned by publish
            rules.append(
                {
                    "Id": logical_id("ExpireExports", s.catalog_table)[:255],
                    "Status": "Enabled",
                    "Prefix": f"{s.export_prefix_root}/",
                    "ExpirationInDays": s.retention_snapshots + 2,
                }
            )
    if holds_athena_results:
        rules.append(
            {
                "Id": "ExpireAthenaResults",
                "Status": "Enabled",
                "Prefix": f"{ATHENA_RESULTS_PREFIX}/",
                "ExpirationInDays": ATHENA_RESULTS_DAYS,
            }
        )
    return rules


def _bucket_resources(bucket: str, specs: list[TableSpec], *, holds_athena_results: bool) -> dict[str, Any]:
    bucket_id = logical_id("Bucket", bucket)
    return {
        bucket_id: {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": bucket,
                "BucketEncryption": _bucket_encryption(specs),
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": _lifecycle_rules(specs, holds_athena_results=holds_athena_results)},
            },
        },
        f"{bucket_id}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": bucket_id},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def _parameters() -> dict[str, Any]:
    return {
        "NamePrefix": {
            "Type": "String",
            "Default": "offload-assets",
            "AllowedPattern": "^[a-z][a-z0-9-]{1,30}$",
            "Description": "Prefix of the role, topic, queue and workgroup names (one stack per account and region).",
        },
        "AthenaWorkGroupName": {
            "Type": "String",
            "Default": "offload-assets",
            "Description": "Athena workgroup the project's queries run in.",
        },
        "AthenaBytesScannedCutoff": {
            "Type": "Number",
            "Default": DEFAULT_SCAN_CUTOFF_BYTES,
            "MinValue": 10_000_000,
            "Description": "Athena cancels a query that scans more bytes than this.",
        },
        "ResultsKmsKeyArn": {
            "Type": "String",
            "Default": "",
            "Description": "KMS key ARN for Athena query results (SSE-KMS); empty: SSE-S3. Tables' keys come from the tables file.",
        },
        "TrustedPrincipalArn": {
            "Type": "String",
            "Default": "",
            "Description": "IAM principal (role or account root ARN) allowed to assume the Dagster role besides ECS tasks; empty: ECS tasks only.",
        },
    }


def _roles(specs: list[TableSpec], results_bucket: str) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "DagsterRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": {"Fn::Sub": "${NamePrefix}-dagster"},
                "Description": "Runs the offload_assets Dagster code location (ECS task role, or assumed by the trusted principal).",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        },
                        {
                            "Fn::If": [
                                "HasTrustedPrincipal",
                                {
                                    "Effect": "Allow",
                                    "Principal": {"AWS": {"Ref": "TrustedPrincipalArn"}},
                                    "Action": "sts:AssumeRole",
                                },
                                {"Ref": "AWS::NoValue"},
                            ]
                        },
                    ],
                },
                "Policies": [
                    {"PolicyName": "offload-assets", "PolicyDocument": dagster_role_policy(specs, results_bucket)}
                ],
            },
        }
    }
    glue_specs = [s for s in specs if s.engine == "glue"]
    if glue_specs:
        resources["GlueJobRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": {"Fn::Sub": "${NamePrefix}-glue-job"},
                "Description": "The Glue conversion job (engine: glue) runs as this role.",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "glue.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                },
                "ManagedPolicyArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSGlueServiceRole"}
                ],
                "Policies": [
                    {
                        "PolicyName": "offload-assets-glue-job",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                                    "Resource": list(
                                        dict.fromkeys(
                                            f"arn:aws:s3:::{s.s3_bucket}/{p}/*"
                                            for s in glue_specs
                                            for p in (s.export_prefix_root, s.parquet_root, f"{s.s3_prefix}/glue")
                                        )
                                    ),
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": ["s3:ListBucket"],
                                    "Resource": [
                                        f"arn:aws:s3:::{b}" for b in dict.fromkeys(s.s3_bucket for s in glue_specs)
                                    ],
                                },
                            ],
                        },
                    }
                ],
            },
        }
    return resources


def _notifications() -> dict[str, Any]:
    return {
        "NotificationTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": {"Fn::Sub": "${NamePrefix}-events"},
                "KmsMasterKeyId": "alias/aws/sns",
            },
        },
        "SnapshotPublishedQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": {"Fn::Sub": "${NamePrefix}-snapshot-published"},
                "MessageRetentionPeriod": 1_209_600,
                "VisibilityTimeout": 300,
                "SqsManagedSseEnabled": True,
            },
        },
        "SnapshotPublishedSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": {"Ref": "NotificationTopic"},
                "Protocol": "sqs",
                "Endpoint": {"Fn::GetAtt": ["SnapshotPublishedQueue", "Arn"]},
                "RawMessageDelivery": True,
                "FilterPolicy": {"event": ["snapshot_published"]},
            },
        },
        "SnapshotPublishedQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "SnapshotPublishedQueue"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["SnapshotPublishedQueue", "Arn"]},
                            "Condition": {"ArnEquals": {"aws:SourceArn": {"Ref": "NotificationTopic"}}},
                        }
                    ],
                },
            },
        },
    }


def _catalog_and_queries(specs: list[TableSpec], results_bucket: str) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for db in dict.fromkeys(s.catalog_database for s in specs):
        resources[logical_id("GlueDatabase", db)] = {
            "Type": "AWS::Glue::Database",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseInput": {"Name": db, "Description": "DynamoDB snapshots offloaded by offload_assets."},
            },
        }
    resources["AthenaWorkGroup"] = {
        "Type": "AWS::Athena::WorkGroup",
        "Properties": {
            "Name": {"Ref": "AthenaWorkGroupName"},
            "Description": "Queries over the offloaded DynamoDB snapshots.",
            "RecursiveDeleteOption": False,
            "WorkGroupConfiguration": {
                "EnforceWorkGroupConfiguration": True,
                "PublishCloudWatchMetricsEnabled": True,
                "BytesScannedCutoffPerQuery": {"Ref": "AthenaBytesScannedCutoff"},
                "ResultConfiguration": {
                    "OutputLocation": f"s3://{results_bucket}/{ATHENA_RESULTS_PREFIX}/",
                    "EncryptionConfiguration": {
                        "Fn::If": [
                            "HasResultsKmsKey",
                            {"EncryptionOption": "SSE_KMS", "KmsKey": {"Ref": "ResultsKmsKeyArn"}},
                            {"EncryptionOption": "SSE_S3"},
                        ]
                    },
                },
            },
        },
    }
    return resources


def _outputs(specs: list[TableSpec], buckets: list[str]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for bucket in buckets:
        outputs[logical_id("", bucket) + "BucketName"] = {
            "Description": "tables.yaml: s3_bucket of the tables stored here",
            "Value": {"Ref": logical_id("Bucket", bucket)},
        }
    for db in dict.fromkeys(s.catalog_database for s in specs):
        outputs[logical_id("", db) + "GlueDatabase"] = {
            "Description": "tables.yaml: catalog_database; `offload-assets query --database`",
            "Value": db,  # a name from the tables file (no Ref: the emulator does not deploy Glue databases)
        }
    outputs |= {
        "AthenaWorkGroup": {
            "Description": "Dagster: the athena resource's workgroup; `offload-assets query --workgroup`",
            "Value": {"Ref": "AthenaWorkGroupName"},
        },
        "AthenaResultsLocation": {
            "Description": "Dagster: the athena resource's output_location; `offload-assets query --output-location`",
            "Value": f"s3://{buckets[0]}/{ATHENA_RESULTS_PREFIX}/",
        },
        "DagsterRoleArn": {
            "Description": "Dagster deployment: the ECS task role (taskRoleArn) of the code location and its runs",
            "Value": {"Fn::GetAtt": ["DagsterRole", "Arn"]},
        },
        "NotificationTopicArn": {
            "Description": "tables.yaml: notification_topic_arn (in defaults, or per table)",
            "Value": {"Ref": "NotificationTopic"},
        },
        "SnapshotPublishedQueueUrl": {
            "Description": "downstream consumers: the SQS queue receiving snapshot_published messages (raw JSON)",
            "Value": {"Ref": "SnapshotPublishedQueue"},
        },
        "SnapshotPublishedQueueArn": {
            "Description": "downstream consumers: the queue's ARN (for their IAM policies)",
            "Value": {"Fn::GetAtt": ["SnapshotPublishedQueue", "Arn"]},
        },
    }
    if any(s.engine == "glue" for s in specs):
        outputs["GlueJobRoleArn"] = {
            "Description": "tables.yaml: glue_role_arn of the tables with engine: glue",
            "Value": {"Fn::GetAtt": ["GlueJobRole", "Arn"]},
        }
    return outputs


def build_template(specs: Iterable[TableSpec]) -> dict[str, Any]:
    """The CloudFormation template (a dict) for offloading ``specs`` (a whole tables file)."""
    specs = list(specs)
    if not specs:
        raise ValueError("the tables file lists no tables: nothing to deploy")
    buckets = list(dict.fromkeys(s.s3_bucket for s in specs))
    resources: dict[str, Any] = {}
    for bucket in buckets:
        on_bucket = [s for s in specs if s.s3_bucket == bucket]
        resources |= _bucket_resources(bucket, on_bucket, holds_athena_results=bucket == buckets[0])
    resources |= _catalog_and_queries(specs, buckets[0])
    resources |= _roles(specs, buckets[0])
    resources |= _notifications()
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "offload_assets: DynamoDB -> S3 (Parquet) -> Glue -> Athena for "
        + ", ".join(s.dynamodb_table for s in specs)
        + " (rendered by `offload-assets deploy template`)",
        "Parameters": _parameters(),
        "Conditions": {
            "HasTrustedPrincipal": {"Fn::Not": [{"Fn::Equals": [{"Ref": "TrustedPrincipalArn"}, ""]}]},
            "HasResultsKmsKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "ResultsKmsKeyArn"}, ""]}]},
        },
        "Resources": resources,
        "Outputs": _outputs(specs, buckets),
    }


def render_template(template: dict[str, Any], fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(template, indent=2)
    return yaml.safe_dump(template, sort_keys=False, width=120)
