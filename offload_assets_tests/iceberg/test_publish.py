"""A partition a day into one Iceberg table: changes only, exact state, idempotent re-runs, date order."""

from __future__ import annotations

import pytest

from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.publish import PartitionOrderError, iceberg_location, partition_commits
from offload_assets_tests.iceberg.pipeline import (
    dynamodb_state,
    make_spec,
    publish_partition,
    review,
    run_partition,
    seed,
)


def _table_state(aws, spec):
    table = load_table(connect_catalog(aws), iceberg_location(spec))
    rows = table.scan().to_arrow().to_pylist()
    state = {(r["user"], r["book"]): (r["author"], r["rating"]) for r in rows}
    assert len(state) == len(rows)  # no duplicate keys
    return table, state


def test_partitions_commit_changes_only_and_rerun_changes_nothing(aws):
    spec = make_spec()
    ddb = seed(aws, spec, 120)
    day1 = run_partition(aws, spec, "2026-11-20")
    assert day1.change == "created" and day1.rows == 120
    assert day1.counts == {"inserted": 120, "updated": 0, "deleted": 0, "unchanged": 0, "previous-rows": 0}

    for n in (1, 2, 3):
        ddb.put_item(
            TableName=spec.dynamodb_table,
            Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in review(n, author="Changed").items()},
        )
    for n in (10, 11):
        ddb.delete_item(
            TableName=spec.dynamodb_table, Key={"User": {"S": f"user-{n:04d}"}, "Book": {"S": f"book-{n % 7}"}}
        )
    for n in (500, 501, 502, 503):
        ddb.put_item(
            TableName=spec.dynamodb_table,
            Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in review(n).items()},
        )

    day2 = run_partition(aws, spec, "2026-11-21")
    assert day2.change == "committed"
    assert day2.counts == {"inserted": 4, "updated": 3, "deleted": 2, "unchanged": 115, "previous-rows": 120}
    table, state = _table_state(aws, spec)
    assert state == dynamodb_state(ddb, spec.dynamodb_table)  # exactly the new state
    assert day2.applied.files_added >= 1
    summary = table.current_snapshot().summary.additional_properties
    assert summary["offload-assets.partition"] == "2026-11-21" and summary["offload-assets.export-items"] == "122"
    # the staged Parquet is gone: the Iceberg table holds the data
    staged = aws.client("s3").list_objects_v2(Bucket=spec.s3_bucket, Prefix=spec.parquet_root + "/")
    assert staged.get("KeyCount", 0) == 0

    snapshots = len(table.metadata.snapshots)
    assert publish_partition(aws, spec, "2026-11-21").change == "already committed"
    assert run_partition(aws, spec, "2026-11-21").change == "already committed"  # new export, same state
    table, again = _table_state(aws, spec)
    assert again == state and len(table.metadata.snapshots) == snapshots

    # day 1 is still there by time travel
    first = partition_commits(table)[0]
    assert first.partition_key == "2026-11-20"
    assert table.scan(snapshot_id=first.snapshot_id).to_arrow().num_rows == 120

    with pytest.raises(PartitionOrderError, match="older than the newest committed partition 2026-11-21"):
        run_partition(aws, spec, "2026-11-20")


def test_glue_registers_the_table_the_way_athena_expects(aws):
    spec = make_spec()
    seed(aws, spec, 10)
    run_partition(aws, spec, "2026-11-20")
    glue_table = aws.client("glue").get_table(DatabaseName=spec.catalog_database, Name=spec.catalog_table)["Table"]
    params = glue_table["Parameters"]
    assert params["table_type"] == "ICEBERG"
    assert params["metadata_location"].startswith(f"s3://{spec.s3_bucket}/{spec.s3_prefix}/iceberg/reviews/metadata/")
    columns = {c["Name"]: c for c in glue_table["StorageDescriptor"]["Columns"]}
    assert columns["rating"]["Type"] == "bigint"
    assert columns["user"]["Comment"] == "DynamoDB attribute 'User' (S)"


def test_the_tables_file_refuses_iceberg_with_the_glue_engine():
    from offload_assets.table_spec import TablesFileError

    with pytest.raises(TablesFileError, match="table_format 'iceberg' needs engine 'local'"):
        make_spec(engine="glue")


def test_a_partition_that_loses_the_commit_race_redoes_it_on_the_new_snapshot(aws, monkeypatch):
    """Another writer (change capture, say) commits between our read and our commit: pyiceberg's
    optimistic commit fails, nothing of ours lands, and the publish is redone on the new current
    snapshot, so both commits are kept and the table ends in the export's state."""
    import pyarrow as pa

    import offload_assets.iceberg.publish as publish

    spec = make_spec()
    ddb = seed(aws, spec, 40)
    run_partition(aws, spec, "2026-11-20")
    for n in (1, 2):
        ddb.put_item(
            TableName=spec.dynamodb_table,
            Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in review(n, author="Changed").items()},
        )
    real_apply, calls = publish.apply_changes, []

    def apply_after_another_writer(table, **kwargs):
        calls.append(table.metadata.current_snapshot_id)
        if len(calls) == 1:  # the other writer: its own catalog, its own commit, first
            other = load_table(connect_catalog(aws), iceberg_location(spec))
            row = other.scan(row_filter="user == 'user-0005'").to_arrow()
            changed = row.set_column(row.schema.get_field_index("author"), "author", pa.array(["Intruder"]))
            real_apply(other, upserts=changed, deletes=None, summary={"writer": "other"})
        return real_apply(table, **kwargs)

    monkeypatch.setattr(publish, "apply_changes", apply_after_another_writer)
    day2 = run_partition(aws, spec, "2026-11-21")
    assert len(calls) == 2 and calls[0] != calls[1]  # lost once, redone on the other writer's snapshot
    table, state = _table_state(aws, spec)
    assert state == dynamodb_state(ddb, spec.dynamodb_table)  # the export's state (the intruder's row re-diffed)
    assert day2.counts["updated"] == 3  # the two changed reviews and the intruder's row, put back
    writers = [s.summary.additional_properties.get("writer") for s in table.metadata.snapshots]
    assert writers.count("other") == 1 and len(partition_commits(table)) == 2  # both commits kept
