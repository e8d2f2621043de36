"""Merge-on-read commits: a day's changes are new data files plus ONE position delete file, read alike by every reader.

Three days on one table (updates, deletes, inserts, a row changed twice, a deleted key coming
back): each change commit adds exactly the changed rows and names exactly the replaced and
deleted rows; our SQL, pyiceberg's scan and iceberg-rust read the state DynamoDB had on every
day (current and by time travel); compaction folds the deletes in and changes no row.
"""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from offload_assets.iceberg.catalog import connect_catalog, load_table
from offload_assets.iceberg.changes import live_rows
from offload_assets.iceberg.maintenance import maintain_table
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.sql.query import QueryError, run_query
from offload_assets_tests.iceberg.pipeline import dynamodb_state, make_spec, review, run_partition, seed
from offload_assets_tests.iceberg.test_second_reader import iceberg_rust_rows, sql_rows

SEEDED = 3000


def _put(ddb, spec, n, author):
    item = review(n, author=author)
    ddb.put_item(
        TableName=spec.dynamodb_table,
        Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in item.items()},
    )


def _delete(ddb, spec, n):
    ddb.delete_item(TableName=spec.dynamodb_table, Key={"User": {"S": f"user-{n:04d}"}, "Book": {"S": f"book-{n % 7}"}})


def _expected(ddb, spec) -> list[tuple]:
    return sorted((u, b, a, r) for (u, b), (a, r) in dynamodb_state(ddb, spec.dynamodb_table).items())


def _pyiceberg_rows(table, snapshot_id) -> list[tuple]:
    rows = table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return sorted((r["user"], r["book"], r["author"], r["rating"]) for r in rows)


def _summary(table, snapshot_id) -> dict[str, str]:
    return table.snapshot_by_id(snapshot_id).summary.additional_properties


@pytest.fixture()
def three_days(aws):
    """(spec, table, [(snapshot id, metadata file, DynamoDB's rows that day)] for days 1..3)."""
    spec = make_spec(dynamodb_table="reviews")
    ddb = seed(aws, spec, SEEDED)
    days = []

    def commit(day):
        result = run_partition(aws, spec, day)
        table = load_table(connect_catalog(aws), iceberg_location(spec))
        days.append((result.snapshot_id, table.metadata_location, _expected(ddb, spec)))
        return result

    commit("2026-11-20")
    for n in (1, 2, 3, 4, 5):
        _put(ddb, spec, n, "Updated")
    for n in (10, 11, 12):
        _delete(ddb, spec, n)
    for n in (9000, 9001):
        _put(ddb, spec, n, "Inserted")
    commit("2026-11-21")
    _put(ddb, spec, 1, "Updated twice")  # its live row is now in day 2's data file
    _put(ddb, spec, 9000, "Changed insert")  # day 2's insert, updated
    _put(ddb, spec, 10, "Back again")  # deleted on day 2, inserted again
    _delete(ddb, spec, 20)  # a day-1 row
    _delete(ddb, spec, 9001)  # a day-2 insert
    commit("2026-11-22")
    return spec, load_table(connect_catalog(aws), iceberg_location(spec)), days


def test_a_change_commit_writes_the_changed_rows_and_one_position_delete_file(three_days):
    spec, table, days = three_days
    (day1, _, _), (day2, _, state2), (day3, _, state3) = days
    first, second = _summary(table, day1), _summary(table, day2)
    # day 2: 5 updates + 2 inserts written, 5 replaced + 3 deleted rows named; no data file rewritten
    assert (second["added-data-files"], second["added-records"]) == ("1", "7")
    assert (second["added-delete-files"], second["added-position-deletes"]) == ("1", "8")
    assert "deleted-data-files" not in second and "removed-files-size" not in second
    # the bytes follow the changes: less than the table's one data file, mostly Parquet footers at this size
    assert int(second["added-files-size"]) < int(first["added-files-size"])
    assert live_rows(table, day2) == len(state2) == SEEDED - 3 + 2
    assert second["offload-assets.updated"] == "5" and second["offload-assets.deleted"] == "3"

    # day 3: deletes name rows of day 1's file and of day 2's file; nothing counted twice
    third = _summary(table, day3)
    assert (third["added-data-files"], third["added-records"]) == ("1", "3")
    assert (third["added-delete-files"], third["added-position-deletes"]) == ("1", "4")
    assert (third["total-data-files"], third["total-delete-files"]) == ("3", "2")
    assert live_rows(table, day3) == len(state3)

    files = table.inspect.files().to_pylist()
    deletes = [f for f in files if f["content"] == 1]
    assert len(deletes) == 2 and sum(f["content"] == 0 for f in files) == 3
    day1_file = next(f["file_path"] for f in files if f["content"] == 0 and f["record_count"] == SEEDED)
    for f in deletes:  # the spec's layout: field ids, sorted by file_path then pos
        written = pq.read_table(f["file_path"].removeprefix("s3://"), filesystem=table.io.fs_by_scheme("s3", None))
        ids = [field.metadata[b"PARQUET:field_id"] for field in written.schema]
        assert written.column_names == ["file_path", "pos"] and ids == [b"2147483546", b"2147483545"]
        pairs = list(zip(written.column("file_path").to_pylist(), written.column("pos").to_pylist(), strict=True))
        assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs)
    day3_targets = {
        p
        for f in deletes
        for p in pq.read_table(f["file_path"].removeprefix("s3://"), filesystem=table.io.fs_by_scheme("s3", None))
        .column("file_path")
        .to_pylist()
    }
    assert day1_file in day3_targets and len(day3_targets) == 2  # day 3 also deleted rows of day 2's file


def test_every_reader_reads_dynamodbs_state_of_each_day(aws, three_days):
    spec, table, days = three_days
    for snapshot_id, metadata_file, expected in days:
        ours = sql_rows(aws, f" FOR VERSION AS OF {snapshot_id}")
        assert ours == expected, snapshot_id
        assert _pyiceberg_rows(table, snapshot_id) == expected
        assert iceberg_rust_rows(aws, metadata_file) == expected
    current = days[-1][2]
    assert sql_rows(aws) == current
    assert ("user-0010", "book-3", "Back again", 1) in current and not any(r[0] == "user-9001" for r in current)
    listed = run_query(
        'SELECT content, count(*) FROM "dynamodb-exports"."reviews$files" GROUP BY content ORDER BY content',
        connection=aws,
    ).rows
    assert listed == ((0, 3), (1, 2))  # as Athena lists them: data files, position delete files


def test_local_sql_reads_only_the_snapshots_files(aws, three_days):
    spec, table, days = three_days
    with pytest.raises(QueryError, match="refused"):
        run_query(
            'SELECT count(*) FROM "dynamodb-exports"."reviews", read_csv(\'offload://iceberg-test/x.csv\')',
            connection=aws,
        )


def test_compaction_folds_the_deletes_in_and_changes_no_row(aws, three_days):
    spec, table, days = three_days
    before = sql_rows(aws)
    out = maintain_table(
        table,
        aws.client("s3"),
        retention_snapshots=None,
        retention_days=None,
        target_bytes=64 * 1024 * 1024,
        now=dt.datetime.now(dt.UTC),
    )
    assert out.files_compacted == 3 and out.files_written == 1 and out.data_files == 1
    table.refresh()
    summary = table.current_snapshot().summary.additional_properties
    assert summary["total-delete-files"] == "0" and summary["total-position-deletes"] == "0"
    assert summary["removed-delete-files"] == "2" and summary["total-records"] == str(len(before))
    assert all(not task.delete_files for task in table.scan().plan_files())
    assert {f["content"] for f in table.inspect.files().to_pylist()} == {0}
    assert sql_rows(aws) == before == days[-1][2]
    assert iceberg_rust_rows(aws, table.metadata_location) == before
    # history is untouched: day 2 still reads as it was
    day2, _, state2 = days[1]
    assert sql_rows(aws, f" FOR VERSION AS OF {day2}") == state2
