"""Every acknowledged write survives a SIGKILL of the emulator (issue 14, point 5).

The emulator writes what a request changed to disk before it answers that request, so killing
it with SIGKILL (no shutdown handler runs) at any moment loses nothing a client was told had
succeeded: right after one put, and in the middle of continuous writes.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading

import botocore.exceptions
import pytest

from offload_assets.aws.connection import resolve_connection
from offload_assets.local.emulator import (
    emulator_status,
    ensure_local_emulator,
    reset_local_state,
    stop_local_emulator,
)


def _kill(state) -> None:
    emu = emulator_status(state)
    assert emu is not None
    os.kill(emu.pid, signal.SIGKILL)
    for _ in range(200):
        try:
            os.waitpid(emu.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.kill(emu.pid, 0)
        except ProcessLookupError:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the emulator did not die")


def _table(ddb, name="Durable") -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _keys(ddb, name="Durable") -> set[str]:
    keys: set[str] = set()
    for page in ddb.get_paginator("scan").paginate(TableName=name):
        keys.update(item["pk"]["S"] for item in page["Items"])
    return keys


def _checkpoint(state) -> bool:
    """Ask the running emulator to write a checkpoint now (its save endpoint)."""
    import urllib.request

    from offload_assets.local.emulator_server import SAVE_PATH

    emu = emulator_status(state)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(
        urllib.request.Request(f"{emu.endpoint_url}{SAVE_PATH}", method="POST", data=b""), timeout=300
    ) as r:
        return r.status == 200


@pytest.fixture()
def state(tmp_path):
    yield tmp_path / "state"
    reset_local_state(tmp_path / "state")


def test_an_acknowledged_put_survives_sigkill(state):
    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    ddb, s3 = conn.client("dynamodb"), conn.client("s3")
    _table(ddb)
    s3.create_bucket(Bucket="durable")
    ddb.put_item(TableName="Durable", Item={"pk": {"S": "acknowledged"}, "n": {"N": "1"}})
    s3.put_object(Bucket="durable", Key="k", Body=b"kept")
    _kill(state)  # immediately: no debounce, no shutdown handler

    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    item = conn.client("dynamodb").get_item(TableName="Durable", Key={"pk": {"S": "acknowledged"}})["Item"]
    assert item["n"] == {"N": "1"}
    assert conn.client("s3").get_object(Bucket="durable", Key="k")["Body"].read() == b"kept"


def test_continuous_writes_killed_midway_keep_every_acknowledged_item(state):
    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    _table(conn.client("dynamodb"))
    acknowledged: list[str] = []
    failed: list[BaseException] = []
    kill_after, writers, per_writer = 150, 3, 400

    def write(worker: int) -> None:
        ddb = resolve_connection(target="local", endpoint_url=conn.endpoint_url, max_attempts=1).client("dynamodb")
        for i in range(per_writer):
            key = f"w{worker}-{i}"
            try:
                ddb.put_item(TableName="Durable", Item={"pk": {"S": key}})
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
                failed.append(err)  # the emulator is gone: this write was never acknowledged
                return
            acknowledged.append(key)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    while len(acknowledged) < kill_after and any(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    _kill(state)  # while the writers are still writing
    for t in threads:
        t.join()
    assert failed, "the kill should have interrupted the writers"
    seen = list(acknowledged)
    assert kill_after <= len(seen) < writers * per_writer

    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    kept = _keys(conn.client("dynamodb"))
    assert set(seen) <= kept  # every acknowledged put is there...
    assert len(kept) - len(seen) <= writers  # ...plus at most the one in flight per writer


def test_the_old_single_file_state_is_read_and_rewritten(state):
    """State saved by earlier versions (one ``state.pickle``) is restored, then saved in the new layout."""
    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    _table(conn.client("dynamodb"), "Old")
    conn.client("dynamodb").put_item(TableName="Old", Item={"pk": {"S": "from-before"}})
    assert stop_local_emulator(state)  # a clean stop checkpoints: no journal left to replay
    from offload_assets.local.state_store import StateStore

    store = StateStore(state / "emulator")
    backends = store.load()
    (state / "emulator" / "state.pickle").write_bytes(pickle.dumps(backends, protocol=pickle.HIGHEST_PROTOCOL))
    for f in (state / "emulator" / "state").iterdir():
        f.unlink()

    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    assert _keys(conn.client("dynamodb"), "Old") == {"from-before"}
    conn.client("dynamodb").put_item(TableName="Old", Item={"pk": {"S": "after"}})
    assert not (state / "emulator" / "state.pickle").exists()
    _kill(state)
    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    assert _keys(conn.client("dynamodb"), "Old") == {"from-before", "after"}


def test_journaled_updates_and_deletes_replay_on_the_last_checkpoint(state, monkeypatch):
    """Item writes after a checkpoint live in the journal: a restart replays them in order."""
    from offload_assets.local.emulator_server import CHECKPOINT_ENV_VAR
    from offload_assets.local.state_store import StateStore

    monkeypatch.setenv(CHECKPOINT_ENV_VAR, "3600")  # no checkpoint but the one asked for below

    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    ddb = conn.client("dynamodb")
    _table(ddb)
    ddb.batch_write_item(
        RequestItems={"Durable": [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "n": {"N": "0"}}}} for i in range(20)]}
    )
    assert _checkpoint(state)  # a checkpoint: DynamoDB pickled, a new journal begins
    ddb.update_item(
        TableName="Durable",
        Key={"pk": {"S": "k1"}},
        UpdateExpression="SET n = n + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    ddb.update_item(
        TableName="Durable",
        Key={"pk": {"S": "k1"}},
        UpdateExpression="SET n = n + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    ddb.delete_item(TableName="Durable", Key={"pk": {"S": "k2"}})
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):  # refused, and refused again on replay
        ddb.put_item(TableName="Durable", Item={"pk": {"S": "k3"}}, ConditionExpression="attribute_not_exists(pk)")
    ddb.batch_write_item(
        RequestItems={"Durable": [{"PutRequest": {"Item": {"pk": {"S": f"new{i}"}}}} for i in range(30)]}
    )
    _kill(state)
    store = StateStore(state / "emulator")
    store.load()
    assert len(store.journal_records()) == 5  # two updates, the delete, the refused put, the batch

    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    ddb = conn.client("dynamodb")
    keys = _keys(ddb)
    assert len(keys) == 20 - 1 + 30 and "k2" not in keys
    assert ddb.get_item(TableName="Durable", Key={"pk": {"S": "k1"}})["Item"]["n"] == {"N": "2"}
    assert "pk" in ddb.get_item(TableName="Durable", Key={"pk": {"S": "k3"}})["Item"]


def test_an_sqs_message_survives_sigkill(state):
    """moto's queues hold a threading.Condition: the state must still save (and a restored queue
    serve its messages)."""
    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    sqs = conn.client("sqs")
    url = sqs.create_queue(QueueName="durable-events")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="export finished")
    _kill(state)

    conn = resolve_connection(target="local", endpoint_url=ensure_local_emulator(state).endpoint_url)
    sqs = conn.client("sqs")
    url = sqs.get_queue_url(QueueName="durable-events")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in messages] == ["export finished"]
    sqs.send_message(QueueUrl=url, MessageBody="and the restored queue takes more")
