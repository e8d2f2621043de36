"""The deploy template on the local emulator's CloudFormation (moto), and what moto does not deploy.

moto 5.1's CloudFormation creates these of the template's resource types: ``AWS::S3::Bucket``
(name and default encryption; not its public access block, ownership controls or lifecycle
rules), ``AWS::IAM::Role`` (trust and inline policies), ``AWS::SNS::Topic`` and ``AWS::SQS::Queue``.
It skips, with a warning and no error, ``AWS::S3::BucketPolicy``, ``AWS::Glue::Database``,
``AWS::Athena::WorkGroup``, ``AWS::SNS::Subscription`` and ``AWS::SQS::QueuePolicy``.
:func:`create_what_moto_skips` creates the three the data path needs (the Glue database, the
workgroup, the queue's subscription) with boto3 from the template's own properties; the TLS-only
bucket policy and the queue policy are not enforced by moto, so they are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offload_assets.aws.connection import AwsConnection
from offload_assets.deploy.template import build_template, render_template
from offload_assets.table_spec import load_tables_file

STACK = "offload-assets"
MOTO_SKIPS = (
    "AWS::S3::BucketPolicy",
    "AWS::Glue::Database",
    "AWS::Athena::WorkGroup",
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
)


@dataclass(frozen=True)
class DeployedStack:
    template: dict[str, Any]
    outputs: dict[str, str]


def _resolve(value: Any, outputs: dict[str, str], parameters: dict[str, str]) -> Any:
    """The template's Ref / Fn::GetAtt of the resources used by the skipped ones, from the stack's outputs."""
    by_ref = {
        "NotificationTopic": outputs["NotificationTopicArn"],
        "SnapshotPublishedQueue": outputs["SnapshotPublishedQueueUrl"],
        "AWS::AccountId": outputs["DagsterRoleArn"].split(":")[4],
        **parameters,
    }
    if isinstance(value, dict) and "Ref" in value:
        return by_ref[value["Ref"]]
    if isinstance(value, dict) and value.get("Fn::GetAtt") == ["SnapshotPublishedQueue", "Arn"]:
        return outputs["SnapshotPublishedQueueArn"]
    return value


def create_what_moto_skips(aws: AwsConnection, template: dict[str, Any], outputs: dict[str, str]) -> list[str]:
    """Create the Glue database(s), the workgroup and the subscription as the template declares them."""
    import json

    parameters = {k: str(v["Default"]) for k, v in template["Parameters"].items()}
    done = []
    for logical_id, resource in template["Resources"].items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::Glue::Database":
            aws.client("glue").create_database(DatabaseInput=props["DatabaseInput"])
        elif kind == "AWS::Athena::WorkGroup":
            config = props["WorkGroupConfiguration"]
            aws.client("athena").create_work_group(
                Name=_resolve(props["Name"], outputs, parameters),
                Description=props["Description"],
                Configuration={
                    "ResultConfiguration": {"OutputLocation": config["ResultConfiguration"]["OutputLocation"]},
                    "EnforceWorkGroupConfiguration": config["EnforceWorkGroupConfiguration"],
                    "BytesScannedCutoffPerQuery": int(
                        _resolve(config["BytesScannedCutoffPerQuery"], outputs, parameters)
                    ),
                },
            )
        elif kind == "AWS::SNS::Subscription":
            aws.client("sns").subscribe(
                TopicArn=_resolve(props["TopicArn"], outputs, parameters),
                Protocol=props["Protocol"],
                Endpoint=_resolve(props["Endpoint"], outputs, parameters),
                Attributes={
                    "RawMessageDelivery": str(props["RawMessageDelivery"]).lower(),
                    "FilterPolicy": json.dumps(props["FilterPolicy"]),
                },
            )
        else:
            continue
        done.append(logical_id)
    return done


def deploy_stack(aws: AwsConnection, tables_file: Path, *, stack: str = STACK) -> DeployedStack:
    """``offload-assets deploy template`` for ``tables_file``, created as a stack on the emulator's CloudFormation."""
    template = build_template(load_tables_file(tables_file).tables)
    cloudformation = aws.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack, TemplateBody=render_template(template), Capabilities=["CAPABILITY_NAMED_IAM"]
    )
    [described] = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    create_what_moto_skips(aws, template, outputs)
    return DeployedStack(template, outputs)


def bucket_output(stack: DeployedStack) -> str:
    [bucket] = [v for k, v in stack.outputs.items() if k.endswith("BucketName")]
    return bucket


def database_output(stack: DeployedStack) -> str:
    [database] = [v for k, v in stack.outputs.items() if k.endswith("GlueDatabase")]
    return database
