"""The emulator's point-in-time recovery history, and state saving after native exports.

moto dates a table's recovery window from the moment PITR is switched on, so a native export
of any past day is refused locally; the emulator's own route gives a table days of history.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest

from offload_assets.aws.connection import resolve_connection
from offload_assets.export.partition_export import ExportRefusedError, export_partition
from offload_assets.local.demo_data import create_reviews_table, put_items
from offload_assets.local.emulator import (
    EmulatorError,
    backdate_point_in_time_recovery,
    ensure_local_emulator,
    reset_local_state,
    stop_local_emulator,
)
from offload_assets.table_spec import parse_tables

ITEMS = 30


def _spec():
    entry = {
        "dynamodb_table": "Reviews",
        "s3_bucket": "pitr-test",
        "export_method": "native",
        "partitions_start": "2026-01-01",
    }
    return parse_tables({"tables": [entry]}, Path("tables.yaml")).tables[0]


def _seed(aws) -> None:
    ddb = aws.client("dynamodb")
    create_reviews_table(ddb, "Reviews")
    put_items(ddb, "Reviews", [{"User": f"user-{n:03d}", "Book": "The Hobbit", "Rating": n % 5} for n in range(ITEMS)])


def _pitr(aws) -> dict:
    return aws.client("dynamodb").describe_continuous_backups(TableName="Reviews")["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"
    ]


def test_a_backdated_recovery_window_lets_a_native_export_read_a_past_day(aws):
    _seed(aws)
    spec = _spec()
    week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).date().isoformat()
    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    ddb.update_continuous_backups(
        TableName="Reviews", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    with pytest.raises(ExportRefusedError, match=f"{week_ago}.*before the table's earliest restorable time") as refused:
        export_partition(spec, week_ago, dynamodb=ddb, s3=s3, poll_seconds=0.2)
    assert "`offload-assets local pitr Reviews --days 8`" in str(refused.value)  # what to do, locally

    now = dt.datetime.now(dt.UTC)
    earliest = backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=8, now=now)
    assert earliest == now - dt.timedelta(days=8)
    pitr = _pitr(aws)
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    assert abs(pitr["EarliestRestorableDateTime"].timestamp() - earliest.timestamp()) < 0.01

    outcome = export_partition(spec, week_ago, dynamodb=ddb, s3=s3, poll_seconds=0.2)
    assert (outcome.method, outcome.manifest.item_count) == ("native", ITEMS)
    assert dt.datetime.fromisoformat(outcome.manifest.export_time.replace("Z", "+00:00")) == spec.export_time(week_ago)
    # Older than the history: still refused, with the new earliest time.
    ten_days_ago = (now - dt.timedelta(days=10)).date().isoformat()
    with pytest.raises(ExportRefusedError, match="before the table's earliest restorable time"):
        export_partition(spec, ten_days_ago, dynamodb=ddb, s3=s3, poll_seconds=0.2)


def test_backdating_switches_pitr_on_and_refuses_what_it_cannot_do(aws):
    _seed(aws)
    assert _pitr(aws)["PointInTimeRecoveryStatus"] == "DISABLED"
    backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=3, region="us-east-1")
    assert _pitr(aws)["PointInTimeRecoveryStatus"] == "ENABLED"

    with pytest.raises(EmulatorError, match="DynamoDB table 'Missing' does not exist in the local emulator"):
        backdate_point_in_time_recovery(aws.endpoint_url, "Missing", days=3)
    with pytest.raises(
        EmulatorError, match="DynamoDB table 'Reviews' does not exist in the local emulator \\(region eu-west-1\\)"
    ):
        backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=3, region="eu-west-1")
    for days in (0, 36, -1):
        with pytest.raises(EmulatorError, match=f"at most 35 .*not {days}"):
            backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=days)
    with pytest.raises(EmulatorError, match="is not the local emulator"):
        backdate_point_in_time_recovery("https://dynamodb.us-east-1.amazonaws.com", "Reviews", days=3)


def test_the_route_answers_loopback_clients_only():
    from offload_assets.local.emulator_server import PITR_PATH, PersistentEmulator

    app = PersistentEmulator(Path("/nonexistent"))
    body = json.dumps({"table_name": "Reviews", "earliest_restorable": 0}).encode()
    answers = []

    def call(remote_addr: str, method: str = "POST") -> dict:
        environ = {
            "PATH_INFO": PITR_PATH,
            "REQUEST_METHOD": method,
            "REMOTE_ADDR": remote_addr,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        out = app(environ, lambda status, headers: answers.append(status))
        return json.loads(b"".join(out))

    assert "loopback clients only" in call("192.168.1.20")["error"] and answers[-1] == "403 Forbidden"
    assert "POST" in call("127.0.0.1", method="GET")["error"] and answers[-1] == "405 Method Not Allowed"
    # From loopback the request is read: epoch 0 is outside any recovery window.
    assert "within the last 35 days" in call("127.0.0.1")["error"] and answers[-1] == "400 Bad Request"


def test_state_is_saved_after_a_native_export_and_keeps_the_history(tmp_path):
    """moto keeps each export as a thread object; saving used to fail for good after the first one."""
    state = tmp_path / "state"
    spec = _spec()
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    emulator = ensure_local_emulator(state)
    try:
        aws = resolve_connection(target="local", endpoint_url=emulator.endpoint_url)
        _seed(aws)
        earliest = backdate_point_in_time_recovery(aws.endpoint_url, "Reviews", days=5)
        outcome = export_partition(
            spec, yesterday, dynamodb=aws.client("dynamodb"), s3=aws.client("s3"), poll_seconds=0.2
        )
        assert outcome.manifest.item_count == ITEMS
    finally:
        assert stop_local_emulator(state)
    log = (state / "emulator" / "server.log").read_text()
    assert "saving emulator state failed" not in log and "Traceback" not in log, log[-3000:]

    emulator = ensure_local_emulator(state)
    try:
        aws = resolve_connection(target="local", endpoint_url=emulator.endpoint_url)
        pitr = _pitr(aws)
        assert abs(pitr["EarliestRestorableDateTime"].timestamp() - earliest.timestamp()) < 0.01
        arn = aws.client("dynamodb").describe_table(TableName="Reviews")["Table"]["TableArn"]
        exports = aws.client("dynamodb").list_exports(TableArn=arn)["ExportSummaries"]
        assert [e["ExportStatus"] for e in exports] == ["COMPLETED"]
        # The restored history still serves: another past day exports after the restart.
        again = export_partition(
            spec,
            (dt.date.fromisoformat(yesterday) - dt.timedelta(days=1)).isoformat(),
            dynamodb=aws.client("dynamodb"),
            s3=aws.client("s3"),
            poll_seconds=0.2,
        )
        assert again.manifest.item_count == ITEMS
    finally:
        reset_local_state(state)


def test_cli_local_pitr_gives_a_table_history(aws, emulator, monkeypatch, capsys):
    from offload_assets.cli.main import EXIT_OK, EXIT_USAGE, main

    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "local")
    _seed(aws)
    before = dt.datetime.now(dt.UTC)
    assert main(["local", "pitr", "Reviews", "--days", "8"]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert out.startswith("Reviews: point-in-time recovery on since ") and "as it is now" in out
    earliest = _pitr(aws)["EarliestRestorableDateTime"]
    assert abs(before - dt.timedelta(days=8) - earliest) < dt.timedelta(minutes=1)

    assert main(["local", "pitr", "Missing"]) == EXIT_USAGE
    assert "DynamoDB table 'Missing' does not exist in the local emulator" in capsys.readouterr().err
    assert main(["local", "pitr", "Reviews", "--days", "40"]) == EXIT_USAGE
    assert "at most 35" in capsys.readouterr().err
    assert main(["local", "pitr"]) == EXIT_USAGE and "local pitr TABLE" in capsys.readouterr().err
    assert (
        main(["local", "status", "Reviews"]) == EXIT_USAGE
        and "only `local pitr` takes a table" in capsys.readouterr().err
    )
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "aws")
    assert main(["local", "pitr", "Reviews"]) == EXIT_USAGE and "local emulator only" in capsys.readouterr().err
    assert _pitr(aws)["EarliestRestorableDateTime"] == earliest  # none of the refused calls changed it
