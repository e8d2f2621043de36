"""examples/downstream_sensor.py, the README's downstream consumer, against the deployed stack on the emulator.

offload_assets publishes a partition; the stack's queue gets the snapshot_published message; the
example's sensor (another code location's) turns it into one run request keyed by the event id; that
run reads the published Parquet snapshot and rolls it up; a second tick finds nothing, and the same
message delivered twice still makes one request.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import dagster as dg

from offload_assets.defs.definitions import build_definitions
from offload_assets.local.demo_data import seed_reviews
from offload_assets.local.emulator import backdate_point_in_time_recovery
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.deploy.conftest import bucket_output, database_output, deploy_stack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "downstream_sensor.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("downstream_sensor", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_downstream_sensor_starts_one_rollup_per_published_snapshot(tmp_path, emulator, aws, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "offload-local",
        "AWS_SECRET_ACCESS_KEY": "offload-local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    stack = deploy_stack(
        aws, write_tables_file(tmp_path / "b.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "stack-lake"})
    )
    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {
            "dynamodb_table": "Reviews",
            "s3_bucket": bucket_output(stack),
            "catalog_database": database_output(stack),
            "notification_topic_arn": stack.outputs["NotificationTopicArn"],
            "export_method": "native",
        },
    )
    items = seed_reviews(aws.client("dynamodb"), table_name="Reviews", count=90)
    backdate_point_in_time_recovery(emulator.endpoint_url, "Reviews", days=2)
    partition = dt.datetime.now(dt.UTC).date().isoformat()
    offload = build_definitions(tables, target="local", endpoint_url=emulator.endpoint_url)
    assert offload.resolve_job_def("reviews_offload_job").execute_in_process(partition_key=partition).success

    example = _load_example()
    dg.Definitions.validate_loadable(example.defs)
    events = example.SnapshotEvents(
        queue_url=stack.outputs["SnapshotPublishedQueueUrl"],
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
    )
    instance = dg.DagsterInstance.ephemeral()
    tick = example.snapshot_published_sensor(dg.build_sensor_context(instance=instance, resources={"events": events}))
    [request] = tick.run_requests
    assert request.partition_key == partition
    config = request.run_config["ops"]["reviews_rollup"]["config"]
    assert request.run_key == config["event_id"] and config["row_count"] == len(items)

    result = dg.materialize(
        [example.reviews_rollup],
        partition_key=request.partition_key,
        run_config=request.run_config,
        resources={"events": events},
        instance=instance,
        tags=request.tags,
    )
    [materialization] = result.asset_materializations_for_node("reviews_rollup")
    metadata = materialization.metadata
    books = {i["Book"] for i in items}
    assert metadata["dagster/row_count"].value == len(items) and metadata["books"].value == len(books)
    assert metadata["most_reviews"].value == max(sum(i["Book"] == b for i in items) for b in books)
    assert metadata["source_snapshot"].value == config["snapshot_location"]

    # The queue is drained: the next tick asks for nothing.
    again = example.snapshot_published_sensor(dg.build_sensor_context(instance=instance, resources={"events": events}))
    assert not again.run_requests
    # A message delivered twice (at least once) still maps to one run key.
    body = json.dumps({**config, "schema_version": 1, "event": "snapshot_published", "partition": partition})
    twice = example.run_requests_for([{"Body": body}, {"Body": body}])
    assert len({r.run_key for r in twice}) == 1
