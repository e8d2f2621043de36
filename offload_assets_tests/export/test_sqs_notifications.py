"""What an export-finished queue message says (SNS envelopes, S3 events, DescribeExport documents, text)."""

import json

import pytest

from offload_assets.export.sqs_notifications import MessageAction, parse_export_notification

SUMMARY = "exports/reviews/AWSDynamoDB/01773-4f2a/manifest-summary.json"


@pytest.mark.parametrize(
    ("body", "summaries", "status"),
    [
        # S3 event notification (keys arrive URL-encoded), delivered raw
        (
            json.dumps(
                {
                    "Records": [
                        {
                            "eventName": "ObjectCreated:Put",
                            "s3": {
                                "bucket": {"name": "bkt"},
                                "object": {
                                    "key": "exports/reviews/ddb_export_timestamp%3D2026-03-10/AWSDynamoDB/01773-4f2a/manifest-summary.json"
                                },
                            },
                        }
                    ]
                }
            ),
            [("bkt", "exports/reviews/ddb_export_timestamp=2026-03-10/AWSDynamoDB/01773-4f2a/manifest-summary.json")],
            None,
        ),
        # the same S3 event wrapped in an SNS envelope
        (
            json.dumps(
                {
                    "Type": "Notification",
                    "TopicArn": "arn:aws:sns:us-east-1:1:exports",
                    "Message": json.dumps(
                        {"Records": [{"s3": {"bucket": {"name": "bkt"}, "object": {"key": SUMMARY}}}]}
                    ),
                }
            ),
            [("bkt", SUMMARY)],
            None,
        ),
        # DescribeExport's document, as a Lambda or EventBridge rule would publish it
        (
            json.dumps(
                {
                    "Type": "Notification",
                    "Message": json.dumps(
                        {
                            "ExportDescription": {
                                "ExportArn": "arn:aws:dynamodb:us-east-1:1:table/Reviews/export/01773-4f2a",
                                "ExportStatus": "COMPLETED",
                                "S3Bucket": "bkt",
                                "S3Prefix": "exports/reviews",
                            }
                        }
                    ),
                }
            ),
            [("bkt", SUMMARY)],
            "COMPLETED",
        ),
        (
            json.dumps(
                {
                    "detail": {
                        "ExportArn": "arn:aws:dynamodb:us-east-1:1:table/Reviews/export/01773-4f2a",
                        "ExportStatus": "COMPLETED",
                        "S3Bucket": "bkt",
                        "ExportManifest": SUMMARY,
                    }
                }
            ),
            [("bkt", SUMMARY)],
            "COMPLETED",
        ),
        # a failed export: nothing to convert
        (
            json.dumps(
                {
                    "ExportDescription": {
                        "ExportArn": "arn:aws:dynamodb:us-east-1:1:table/Reviews/export/x",
                        "ExportStatus": "FAILED",
                        "FailureMessage": "boom",
                    }
                }
            ),
            [],
            "FAILED",
        ),
        # free text naming the export directory (a Data Pipeline-style completion message)
        (
            "Export of Reviews finished: s3://bkt/exports/reviews/AWSDynamoDB/01773-4f2a/ (3000 items)",
            [("bkt", SUMMARY)],
            None,
        ),
    ],
)
def test_notifications_name_the_export_summary(body, summaries, status):
    parsed = parse_export_notification(body)
    assert list(parsed.summaries) == summaries
    assert parsed.status == status


def test_unrelated_messages_are_not_recognised():
    assert not parse_export_notification('{"hello": "world"}').recognised
    assert not parse_export_notification("lunch is ready").recognised
    assert (
        parse_export_notification(
            json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "x/data.gz"}}}]})
        ).summaries
        == ()
    )


@pytest.mark.parametrize(
    ("actions", "combined"),
    [
        ([], MessageAction.ACK),
        ([MessageAction.ACK, MessageAction.ACK], MessageAction.ACK),
        ([MessageAction.ACK, MessageAction.RELEASE], MessageAction.RELEASE),
        ([MessageAction.RELEASE, MessageAction.WAIT, MessageAction.ACK], MessageAction.WAIT),
    ],
)
def test_a_message_naming_several_exports_waits_for_the_slowest(actions, combined):
    assert MessageAction.combined(actions) is combined
