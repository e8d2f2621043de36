"""``offload-assets deploy template`` and ``offload-assets deploy check``: from a tables file to a checked AWS account."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

DEFAULT_WORKGROUP = "offload-assets"  # the template's AthenaWorkGroupName default


def cmd_deploy_template(args: argparse.Namespace) -> int:
    from offload_assets.cli.common import load_tables
    from offload_assets.deploy.template import build_template, render_template

    print(render_template(build_template(load_tables(args.tables).tables), args.format), end="")
    return 0


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    [described] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def cmd_deploy_check(args: argparse.Namespace) -> int:
    from offload_assets.aws.connection import resolve_connection
    from offload_assets.cli.common import load_tables, make_console
    from offload_assets.deploy.preflight import FAIL, failed, run_preflight

    specs = list(load_tables(args.tables).tables)
    connection = resolve_connection()
    workgroup, results_uri = args.workgroup, args.athena_results
    if args.stack:
        outputs = stack_outputs(connection.client("cloudformation"), args.stack)
        workgroup = workgroup or outputs.get("AthenaWorkGroup")
        results_uri = results_uri or outputs.get("AthenaResultsLocation")
    region = connection.region_name or connection.session().region_name or "us-east-1"
    once = dataclasses.replace(connection, max_attempts=1)  # the policy simulator may be missing: ask once

    def client(service: str) -> Any:
        return (once if service == "iam" else connection).client(service)

    results = run_preflight(
        specs,
        client,
        region=region,
        workgroup=workgroup or DEFAULT_WORKGROUP,
        athena_results_uri=results_uri,
    )
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, header_style="bold")
        for column in ("status", "check", "subject", "detail", "fix"):
            table.add_column(column)
        colours = {"pass": "green", "fail": "red", "skip": "yellow"}
        for r in results:
            table.add_row(f"[{colours[r.status]}]{r.status.upper()}[/]", r.check, r.subject, r.detail, r.fix)
        console = make_console()
        console.print(table)
        bad = failed(results)
        console.print(
            f"{len(bad)} check(s) failed" if bad else f"all {sum(r.status != 'skip' for r in results)} checks passed"
        )
    return 1 if any(r.status == FAIL for r in results) else 0


def add_deploy_parser(sub: Any) -> None:
    from offload_assets.cli.common import add_command, tables_option

    deploy = add_command(
        sub,
        "deploy",
        help="deploy to an AWS account: the CloudFormation template, then a read-only preflight check",
        description="Deploying the tables file to an AWS account, in three steps:\n"
        "  1. offload-assets deploy template > stack.yaml     (CloudFormation, from the tables file)\n"
        "  2. aws cloudformation deploy --stack-name offload-assets --template-file stack.yaml \\\n"
        "         --capabilities CAPABILITY_NAMED_IAM\n"
        "  3. OFFLOAD_ASSETS_TARGET=aws offload-assets deploy check --stack offload-assets",
        examples="  offload-assets deploy template | cfn-lint\n  offload-assets deploy check --stack offload-assets",
    )
    actions = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    template = add_command(
        actions,
        "template",
        help="print the CloudFormation template for the tables file",
        description="One stack for the whole tables file: the bucket(s) (encrypted, public access blocked, bucket owner\n"
        "enforced, TLS only, lifecycle rules), the Glue database(s), an Athena workgroup, the Dagster role with\n"
        "exactly the `offload-assets iam-policy` statements, the Glue job role (engine: glue tables), the\n"
        "notification topic and a snapshot_published queue. Each output says where its value goes.",
        examples="  offload-assets deploy template > stack.yaml\n  offload-assets deploy template --format json | cfn-lint",
    )
    template.add_argument("--format", choices=["yaml", "json"], default="yaml")
    tables_option(template)
    template.set_defaults(func=cmd_deploy_template)

    check = add_command(
        actions,
        "check",
        help="read-only preflight: is this account ready for the tables file? (exit 1 on any failure)",
        description="With the current credentials, per table: the DynamoDB table and its key schema, point-in-time\n"
        "recovery where the export method needs it; the bucket (exists, region, owner, encryption); the Glue\n"
        "database; the Athena workgroup; the notification topic; the policy's actions (IAM policy simulation,\n"
        "skipped where not allowed). Prints pass/fail with the fix for each failure. Writes nothing.",
        examples="  OFFLOAD_ASSETS_TARGET=aws offload-assets deploy check --stack offload-assets\n"
        "  offload-assets deploy check --workgroup analysts --format json",
    )
    check.add_argument(
        "--stack", default=None, help="read the workgroup and results location from this stack's outputs"
    )
    check.add_argument(
        "--workgroup", default=None, help=f"Athena workgroup (default: the stack's, else {DEFAULT_WORKGROUP})"
    )
    check.add_argument("--athena-results", default=None, metavar="S3_URI", help="Athena result location (s3://...)")
    check.add_argument("--format", choices=["table", "json"], default="table")
    tables_option(check)
    check.set_defaults(func=cmd_deploy_check)
