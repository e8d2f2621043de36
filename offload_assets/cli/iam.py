"""``offload-assets iam-policy``: the least-privilege IAM policy of the tables file."""

from __future__ import annotations

import argparse

from offload_assets.cli.common import (
    add_command,
    load_tables,
    select_tables,
    tables_option,
)


def cmd_iam_policy(args: argparse.Namespace) -> int:
    from offload_assets.aws.iam_policy import build_iam_policy, render_policy

    specs = select_tables(load_tables(args.tables), args.table)
    policy = build_iam_policy(
        specs,
        region=args.region,
        account_id=args.account_id,
        athena_workgroup=args.athena_workgroup or None,
        athena_results_uri=args.athena_results,
        kms_key_arn=args.kms_key,
    )
    print(render_policy(policy))
    return 0


def add_iam_parser(sub) -> None:
    iam = add_command(
        sub,
        "iam-policy",
        help="print the least-privilege IAM policy the configured tables need (JSON)",
        description="The IAM policy document (JSON) for offloading the tables in the tables file: Scan or\n"
        "ExportTableToPointInTime on those DynamoDB tables only, S3 on their export and Parquet prefixes\n"
        "only, Glue on their database and tables, Athena on one workgroup, KMS on the tables' keys.",
        examples="  offload-assets iam-policy --region eu-west-1 --account-id 123456789012 > policy.json\n"
        "  offload-assets iam-policy Reviews --athena-results s3://my-results/athena/ --kms-key arn:aws:kms:...",
    )
    iam.add_argument("table", nargs="*", help="tables to cover (default: all in the tables file)")
    iam.add_argument("--region", default="*", help="AWS region in the ARNs (default: any)")
    iam.add_argument("--account-id", default="*", help="AWS account id in the ARNs (default: any)")
    iam.add_argument(
        "--athena-workgroup", default="primary", help="Athena workgroup for queries ('' for none; default primary)"
    )
    iam.add_argument(
        "--athena-results", default=None, metavar="S3_URI", help="Athena result location to allow (s3://bucket/prefix/)"
    )
    iam.add_argument(
        "--kms-key", default=None, metavar="ARN", help="extra KMS key ARN to allow (tables' sse_kms_key_id are added)"
    )
    tables_option(iam)
    iam.set_defaults(func=cmd_iam_policy)
