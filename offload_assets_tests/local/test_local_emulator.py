"""The project's emulator: starts on demand, is shared, and keeps its state across restarts."""

import threading

from offload_assets.aws.connection import resolve_connection
from offload_assets.local.emulator import (
    emulator_status,
    ensure_local_emulator,
    reset_local_state,
    stop_local_emulator,
)


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state"
    first = ensure_local_emulator(state)
    try:
        conn = resolve_connection(target="local", local_state_dir=state)
        assert conn.endpoint_url == first.endpoint_url
        conn.client("s3").create_bucket(Bucket="persisted-bucket")
        conn.client("s3").put_object(Bucket="persisted-bucket", Key="a/b.txt", Body=b"kept")
        glue = conn.client("glue")
        glue.create_database(DatabaseInput={"Name": "dynamodb-exports"})
        ddb = conn.client("dynamodb")
        ddb.create_table(
            TableName="Kept",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="Kept", Item={"pk": {"S": "1"}, "n": {"N": "12345678901234567890.123456789"}})
    finally:
        assert stop_local_emulator(state)
    assert emulator_status(state) is None

    second = ensure_local_emulator(state)
    try:
        assert second.pid != first.pid
        conn = resolve_connection(target="local", local_state_dir=state)
        assert conn.client("s3").get_object(Bucket="persisted-bucket", Key="a/b.txt")["Body"].read() == b"kept"
        assert conn.client("glue").get_database(Name="dynamodb-exports")["Database"]["Name"] == "dynamodb-exports"
        item = conn.client("dynamodb").get_item(TableName="Kept", Key={"pk": {"S": "1"}})["Item"]
        assert item["n"] == {"N": "12345678901234567890.123456789"}
    finally:
        reset_local_state(state)
    assert not (state / "emulator" / "state.pickle").exists()


def test_concurrent_callers_share_one_server(tmp_path):
    state = tmp_path / "state"
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_local_emulator(state))) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({(r.pid, r.port) for r in results}) == 1
    finally:
        stop_local_emulator(state)


def test_local_connection_uses_loopback_and_dummy_credentials(emulator):
    conn = resolve_connection(target="local", endpoint_url=emulator.endpoint_url)
    assert conn.endpoint_url.startswith("http://127.0.0.1:")
    assert conn.aws_access_key_id == "offload-local"
    assert "offload-local" not in repr(conn)
