"""The least-privilege IAM policy for the configured tables, bucket prefixes, Glue database and Athena workgroup.

Every statement is scoped to the resources the tables file names; the actions are exactly
the API calls the code makes (checked by a test that records every call of an end-to-end run),
plus the S3 calls pyarrow makes for Parquet files (GetObject, PutObject, DeleteObject, ListBucket).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from offload_assets.table_spec import TableSpec

SCAN_ACTIONS = ["dynamodb:DescribeTable", "dynamodb:Scan"]
NATIVE_EXPORT_ACTIONS = [
    "dynamodb:DescribeTable",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:ExportTableToPointInTime",
    "dynamodb:DescribeExport",
    "dynamodb:ListExports",
]
#: Change capture (issue 18): the four DynamoDB Streams calls of offload_assets.cdc.source.
STREAM_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"]
LIST_STREAMS_ACTIONS = ["dynamodb:ListStreams"]  # not resource-scoped by AWS
S3_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
GLUE_ACTIONS = [
    "glue:GetDatabase",
    "glue:CreateDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:CreatePartition",
    "glue:UpdatePartition",
    "glue:DeletePartition",
    "glue:BatchDeletePartition",
]
GLUE_JOB_ACTIONS = [
    "glue:GetJob",
    "glue:CreateJob",
    "glue:UpdateJob",
    "glue:DeleteJob",
    "glue:StartJobRun",
    "glue:GetJobRun",
    "glue:BatchStopJobRun",
]
ATHENA_ACTIONS = [
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
    "athena:GetWorkGroup",
]


def _iceberg_roots(spec: TableSpec) -> tuple[str, ...]:
    """An Iceberg table's data and metadata prefix (issue 17), for ``table_format: iceberg``."""
    if getattr(spec, "table_format", "hive") != "iceberg":
        return ()
    from offload_assets.iceberg.publish import iceberg_location

    return (iceberg_location(spec).location.removeprefix(f"s3://{spec.s3_bucket}/"),)


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def build_iam_policy(
    specs: Iterable[TableSpec],
    *,
    region: str = "*",
    account_id: str = "*",
    athena_workgroup: str | None = "primary",
    athena_results_uri: str | None = None,
    kms_key_arn: str | None = None,
) -> dict[str, Any]:
    """An IAM policy document (a dict) granting what offloading ``specs`` needs, and no more."""
    specs = list(specs)
    statements: list[dict[str, Any]] = []
    ddb = "arn:aws:dynamodb:{r}:{a}:table/{t}"
    scan_tables = [ddb.format(r=region, a=account_id, t=s.dynamodb_table) for s in specs if s.export_method == "scan"]
    # Change capture (re-)bootstraps from a native export, whatever the nightly export method.
    native_tables = [
        s
        for s in specs
        if s.export_method in ("native", "incremental") or getattr(s, "change_capture", "off") == "streams"
    ]
    if scan_tables:
        statements.append({"Sid": "ScanExport", "Effect": "Allow", "Action": SCAN_ACTIONS, "Resource": scan_tables})
    if native_tables:
        resources = []
        for s in native_tables:
            arn = ddb.format(r=region, a=account_id, t=s.dynamodb_table)
            resources += [arn, f"{arn}/export/*"]
        statements.append(
            {"Sid": "NativeExport", "Effect": "Allow", "Action": NATIVE_EXPORT_ACTIONS, "Resource": resources}
        )
    streams = [
        ddb.format(r=region, a=account_id, t=s.dynamodb_table) + "/stream/*"
        for s in specs
        if getattr(s, "change_capture", "off") == "streams"
    ]
    if streams:
        statements.append(
            {"Sid": "ChangeCaptureStreams", "Effect": "Allow", "Action": STREAM_ACTIONS, "Resource": streams}
        )
        statements.append(
            {"Sid": "ChangeCaptureListStreams", "Effect": "Allow", "Action": LIST_STREAMS_ACTIONS, "Resource": ["*"]}
        )

    for bucket in _dedupe(s.s3_bucket for s in specs):
        in_bucket = [s for s in specs if s.s3_bucket == bucket]
        prefixes = _dedupe(p for s in in_bucket for p in (s.export_prefix_root, s.parquet_root, *_iceberg_roots(s)))
        statements.append(
            {
                "Sid": f"ListTablePrefixes{len(statements)}",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": _dedupe(q for p in prefixes for q in (p, f"{p}/*"))}},
            }
        )
        statements.append(
            {
                "Sid": f"ReadWriteTableObjects{len(statements)}",
                "Effect": "Allow",
                "Action": S3_OBJECT_ACTIONS,
                "Resource": [f"arn:aws:s3:::{bucket}/{p}/*" for p in prefixes],
            }
        )

    glue_resources = [f"arn:aws:glue:{region}:{account_id}:catalog"]
    for db in _dedupe(s.catalog_database for s in specs):
        glue_resources.append(f"arn:aws:glue:{region}:{account_id}:database/{db}")
        glue_resources += [
            f"arn:aws:glue:{region}:{account_id}:table/{db}/{t}"
            for s in specs
            if s.catalog_database == db
            for t in (s.catalog_table, f"{s.catalog_table}_latest")
        ]
    statements.append({"Sid": "CatalogTables", "Effect": "Allow", "Action": GLUE_ACTIONS, "Resource": glue_resources})

    if athena_workgroup:
        statements.append(
            {
                "Sid": "AthenaQueries",
                "Effect": "Allow",
                "Action": ATHENA_ACTIONS,
                "Resource": [f"arn:aws:athena:{region}:{account_id}:workgroup/{athena_workgroup}"],
            }
        )
        if athena_results_uri:
            bucket, _, prefix = athena_results_uri.removeprefix("s3://").partition("/")
            prefix = prefix.strip("/")
            statements.append(
                {
                    "Sid": "AthenaResults",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:AbortMultipartUpload",
                        "s3:GetBucketLocation",
                        "s3:ListBucket",
                    ],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"],
                }
            )
    kms_keys = _dedupe(k for k in (kms_key_arn, *(getattr(s, "sse_kms_key_id", None) for s in specs)) if k)
    if kms_keys:
        statements.append(
            {
                "Sid": "EncryptWithTableKey",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": kms_keys,
            }
        )
    external = [(s, loc) for s in specs for loc in s.external_export_prefixes]
    if external:
        # Exports started outside Dagster: the sensor lists and reads them, then copies them in.
        for bucket in _dedupe(
            (loc.removeprefix("s3://").split("/", 1)[0] if loc.startswith("s3://") else s.s3_bucket)
            for s, loc in external
        ):
            prefixes = _dedupe(
                (loc.removeprefix("s3://").split("/", 1)[1] if loc.startswith("s3://") else loc)
                for s, loc in external
                if (loc.removeprefix("s3://").split("/", 1)[0] if loc.startswith("s3://") else s.s3_bucket) == bucket
            )
            statements.append(
                {
                    "Sid": f"ReadExternalExports{len(statements)}",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                    "Condition": {"StringLike": {"s3:prefix": _dedupe(q for p in prefixes for q in (p, f"{p}/*"))}},
                }
            )
            statements.append(
                {
                    "Sid": f"GetExternalExports{len(statements)}",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/{p}/*" for p in prefixes],
                }
            )
    queues = _dedupe(s.notification_queue_url for s in specs if s.notification_queue_url)
    if queues:
        statements.append(
            {
                "Sid": "ExportNotifications",
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                "Resource": [queue_arn(url, region, account_id) for url in queues],
            }
        )
    notified = [s for s in specs if getattr(s, "notification_topic_arn", None)]
    if notified:  # offload_assets.deploy.notifications: SNS messages, de-duplicated by marker objects
        from offload_assets.deploy.notifications import marker_prefix

        statements.append(
            {
                "Sid": "PublishNotifications",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": _dedupe(s.notification_topic_arn for s in notified),
            }
        )
        for bucket in _dedupe(s.s3_bucket for s in notified):
            prefixes = _dedupe(marker_prefix(s) for s in notified if s.s3_bucket == bucket)
            statements.append(  # a missing marker must read as 404, not 403
                {
                    "Sid": f"ListNotificationMarkers{len(statements)}",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                    "Condition": {"StringLike": {"s3:prefix": _dedupe(q for p in prefixes for q in (p, f"{p}/*"))}},
                }
            )
        statements.append(
            {
                "Sid": "NotificationMarkers",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": _dedupe(f"arn:aws:s3:::{s.s3_bucket}/{marker_prefix(s)}/*" for s in notified),
            }
        )
    glue_tables = [s for s in specs if getattr(s, "engine", "local") == "glue"]
    if glue_tables:
        from offload_assets.spark.glue_launch import glue_job_name

        statements.append(
            {
                "Sid": "ConvertOnGlue",
                "Effect": "Allow",
                "Action": GLUE_JOB_ACTIONS,
                "Resource": [f"arn:aws:glue:{region}:{account_id}:job/{glue_job_name(s)}" for s in glue_tables],
            }
        )
        statements.append(
            {
                "Sid": "GlueJobFiles",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": _dedupe(f"arn:aws:s3:::{s.s3_bucket}/{s.s3_prefix}/glue/*" for s in glue_tables),
            }
        )
        roles = _dedupe(s.glue_role_arn for s in glue_tables if s.glue_role_arn)
        if roles:
            statements.append(
                {
                    "Sid": "PassGlueJobRole",
                    "Effect": "Allow",
                    "Action": ["iam:PassRole"],
                    "Resource": roles,
                    "Condition": {"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}},
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}


def queue_arn(url: str, region: str, account_id: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` -> ``arn:aws:sqs:<region>:<account>:<name>``."""
    parts = url.rstrip("/").split("/")
    host = parts[2] if len(parts) > 2 else ""
    queue_region = host.split(".")[1] if host.startswith("sqs.") else region
    account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else account_id
    return f"arn:aws:sqs:{queue_region}:{account}:{parts[-1]}"


def render_policy(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2)
