"""Publishing snapshots to Glue: facts, versions, schema growth, conflicts, the latest view, retention."""

from __future__ import annotations

import pyarrow as pa
import pytest

from offload_assets.aws.s3_objects import ensure_bucket
from offload_assets.catalog.glue_tables import (
    SchemaConflictError,
    decode_presto_view,
    get_catalog_table,
    list_partitions,
)
from offload_assets.catalog.retention import RetentionRefusedError
from offload_assets.snapshot.build import list_run_dirs
from offload_assets.snapshot.publish import publish_snapshot
from offload_assets.sql.query import run_query
from offload_assets_tests.catalog.conftest import field, make_spec, write_snapshot

DB = "dynamodb-exports"
V1 = pa.schema([field("user", pa.string(), "User", "S"), field("rating", pa.int64(), "Rating", "N")])
V2 = pa.schema([*V1, field("shelf", pa.string(), "Shelf", "S")])


def _rows(n: int, day: int, shelf: bool = False) -> list[dict]:
    return [
        {"user": f"u{i}", "rating": (i + day) % 5 + 1, **({"shelf": f"s{i % 3}"} if shelf else {})} for i in range(n)
    ]


def _versions(glue, table: str) -> int:
    return len(glue.get_table_versions(DatabaseName=DB, TableName=table)["TableVersions"])


def _count(aws, sql: str):
    return run_query(sql, connection=aws).scalar()


def test_republishing_changes_nothing_and_facts_are_recorded(aws, spec):
    glue, s3 = aws.client("glue"), aws.client("s3")
    snap = write_snapshot(aws, spec, "2026-11-25", _rows(7, 1), V1)
    first = publish_snapshot(glue, s3, spec, "2026-11-25")
    assert (first.table_change, first.partition_change, first.latest_view.change) == ("created", "created", "created")
    versions = _versions(glue, "reviews")

    again = publish_snapshot(glue, s3, spec, "2026-11-25")
    assert (again.table_change, again.partition_change, again.latest_view.change) == (
        "unchanged",
        "unchanged",
        "unchanged",
    )
    assert _versions(glue, "reviews") == versions
    assert _versions(glue, "reviews_latest") == 1

    table = get_catalog_table(glue, DB, "reviews")
    assert table.parameters["offload_assets.source_table"] == "Reviews"
    assert table.parameters["offload_assets.latest_partition"] == "2026-11-25"
    assert table.parameters["offload_assets.latest_item_count"] == "7"
    assert table.parameters["offload_assets.latest_export_id"] == snap.export_id
    assert table.parameters["offload_assets.catalog.latest_view"] == "reviews_latest"
    assert table.parameters["classification"] == "parquet"
    part = list_partitions(glue, database=DB, table="reviews")[0]
    assert (
        part.parameters["offload_assets.rows"] == "7" and part.parameters["offload_assets.export_id"] == snap.export_id
    )
    assert part.location == snap.s3_uri
    # The schema read back keeps what the converter needs: original names and DynamoDB types.
    assert table.schema.field("rating").metadata == {b"original_name": b"Rating", b"dynamodb_type": b"N"}


def test_new_column_old_partitions_follow_and_read_null(aws, spec):
    glue, s3 = aws.client("glue"), aws.client("s3")
    write_snapshot(aws, spec, "2026-11-25", _rows(5, 1), V1)
    publish_snapshot(glue, s3, spec, "2026-11-25")
    write_snapshot(aws, spec, "2026-11-26", _rows(6, 2, shelf=True), V2)
    result = publish_snapshot(glue, s3, spec, "2026-11-26")
    assert result.table_change == "updated" and result.partitions_resynced == 1
    assert [f.name for f in get_catalog_table(glue, DB, "reviews").schema] == ["user", "rating", "shelf"]
    for p in glue.get_partitions(DatabaseName=DB, TableName="reviews")["Partitions"]:
        assert [c["Name"] for c in p["StorageDescriptor"]["Columns"]] == ["user", "rating", "shelf"]
    by_day = run_query(
        'SELECT ddb_export_timestamp, count(*) AS n, count(shelf) AS with_shelf FROM "dynamodb-exports"."reviews" '
        "GROUP BY 1 ORDER BY 1",
        connection=aws,
    ).rows
    assert by_day == (("2026-11-25", 5, 0), ("2026-11-26", 6, 6))
    # A backfilled older day keeps the newest day's facts and the wider table schema.
    write_snapshot(aws, spec, "2026-11-24", _rows(4, 0), V1)
    publish_snapshot(glue, s3, spec, "2026-11-24")
    table = get_catalog_table(glue, DB, "reviews")
    assert table.parameters["offload_assets.latest_partition"] == "2026-11-26"
    assert [f.name for f in table.schema] == ["user", "rating", "shelf"]
    assert _count(aws, 'SELECT count(*) FROM "dynamodb-exports"."reviews_latest"') == 6


def test_type_conflict_is_refused_and_catalog_untouched(aws, spec):
    glue, s3 = aws.client("glue"), aws.client("s3")
    write_snapshot(aws, spec, "2026-11-25", _rows(3, 1), V1)
    publish_snapshot(glue, s3, spec, "2026-11-25")
    versions = _versions(glue, "reviews")
    bad = pa.schema([field("user", pa.string()), field("rating", pa.string())])
    write_snapshot(aws, spec, "2026-11-26", [{"user": "x", "rating": "five"}], bad)
    with pytest.raises(
        SchemaConflictError,
        match=r"partition 2026-11-26, column 'rating': the snapshot has type string but the catalog table has bigint.*Re-materialize",
    ):
        publish_snapshot(glue, s3, spec, "2026-11-26")
    assert _versions(glue, "reviews") == versions
    assert [p.value for p in list_partitions(glue, database=DB, table="reviews")] == ["2026-11-25"]


def test_struct_gaining_a_field_widens_the_table(aws, spec):
    glue, s3 = aws.client("glue"), aws.client("s3")
    narrow = pa.schema([field("user", pa.string()), field("details", pa.struct([("pages", pa.int64())]))])
    wide = pa.schema(
        [field("user", pa.string()), field("details", pa.struct([("pages", pa.int64()), ("format", pa.string())]))]
    )
    write_snapshot(aws, spec, "2026-11-25", [{"user": "a", "details": {"pages": 10}}], narrow)
    publish_snapshot(glue, s3, spec, "2026-11-25")
    write_snapshot(aws, spec, "2026-11-26", [{"user": "a", "details": {"pages": 12, "format": "ebook"}}], wide)
    publish_snapshot(glue, s3, spec, "2026-11-26")
    rows = run_query(
        'SELECT ddb_export_timestamp, details.pages, details.format FROM "dynamodb-exports".reviews ORDER BY 1',
        connection=aws,
    ).rows
    assert rows == (("2026-11-25", 10, None), ("2026-11-26", 12, "ebook"))


def test_latest_view_counts_one_snapshot_after_many_nights(aws, spec):
    glue, s3 = aws.client("glue"), aws.client("s3")
    sizes = {"2026-11-21": 3, "2026-11-22": 4, "2026-11-23": 5, "2026-11-24": 5, "2026-11-25": 9}
    for day, n in sizes.items():
        write_snapshot(aws, spec, day, _rows(n, int(day[-2:])), V1)
        publish_snapshot(glue, s3, spec, day)
        assert _count(aws, 'SELECT COUNT(*) FROM "dynamodb-exports"."reviews_latest"') == n
    assert _count(aws, 'SELECT COUNT(*) FROM "dynamodb-exports"."reviews"') == sum(sizes.values())
    view = glue.get_table(DatabaseName=DB, Name="reviews_latest")["Table"]
    assert view["TableType"] == "VIRTUAL_VIEW" and view["Parameters"]["presto_view"] == "true"
    definition = decode_presto_view(view["ViewOriginalText"])
    assert definition["originalSql"].endswith("WHERE \"ddb_export_timestamp\" = '2026-11-25'")
    assert definition["columns"] == [
        {"name": "user", "type": "varchar"},
        {"name": "rating", "type": "bigint"},
        {"name": "ddb_export_timestamp", "type": "varchar"},
    ]
    assert [c["Type"] for c in view["StorageDescriptor"]["Columns"]] == ["string", "bigint", "string"]
    # Re-running the newest day replaces its run: the view still counts it once. The run it replaced
    # is kept until the next commit of that day (a slower publisher may still point Glue at it).
    first_run = list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix("2026-11-25"))
    write_snapshot(aws, spec, "2026-11-25", _rows(9, 25), V1, files=3)
    result = publish_snapshot(glue, s3, spec, "2026-11-25")
    assert result.partition_change == "updated" and result.removed_run_dirs == () and result.generation == 2
    assert _count(aws, 'SELECT COUNT(*) FROM "dynamodb-exports"."reviews_latest"') == 9
    third = write_snapshot(aws, spec, "2026-11-25", _rows(4, 25), V1)
    result = publish_snapshot(glue, s3, spec, "2026-11-25")
    assert list(result.removed_run_dirs) == first_run and result.generation == 3
    assert _count(aws, 'SELECT COUNT(*) FROM "dynamodb-exports"."reviews_latest"') == 4
    assert len(list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=third.run_dir.rsplit("/", 1)[0])) == 2


def test_retention_removes_partitions_and_files_together(aws):
    spec = make_spec(retention_snapshots=2)
    glue, s3 = aws.client("glue"), aws.client("s3")
    ensure_bucket(s3, spec.s3_bucket)
    # A raw export left by each night, and an abandoned, never-published run of an old day.
    for day in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"):
        s3.put_object(Bucket=spec.s3_bucket, Key=f"{spec.export_prefix(day)}/AWSDynamoDB/x/data/a.json.gz", Body=b"x")
    write_snapshot(aws, spec, "2026-11-19", _rows(2, 0), V1, complete=False)
    for day in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"):
        write_snapshot(aws, spec, day, _rows(3, int(day[-2:])), V1)
        result = publish_snapshot(glue, s3, spec, day)
    assert [p.value for p in list_partitions(glue, database="dynamodb-exports", table="reviews")] == [
        "2026-11-22",
        "2026-11-23",
    ]
    assert result.retention.removed_partitions == ("2026-11-21",)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=spec.s3_bucket).get("Contents", [])]
    for gone in ("2026-11-19", "2026-11-20", "2026-11-21"):
        assert not any(f"ddb_export_timestamp={gone}/" in k for k in keys), gone
    for kept in ("2026-11-22", "2026-11-23"):
        assert any(k.startswith(spec.parquet_partition_prefix(kept) + "/") for k in keys)
        assert any(k.startswith(spec.export_prefix(kept) + "/") for k in keys)
    assert _count(aws, 'SELECT count(*) FROM "dynamodb-exports"."reviews"') == 6
    # A backfill older than the retained window would be deleted at once: refused, nothing touched.
    write_snapshot(aws, spec, "2026-11-10", _rows(2, 0), V1)
    with pytest.raises(
        RetentionRefusedError, match=r"partition 2026-11-10 is older than the 2 newest snapshots.*retention_snapshots"
    ):
        publish_snapshot(glue, s3, spec, "2026-11-10")
    assert len(list_partitions(glue, database="dynamodb-exports", table="reviews")) == 2


def test_projection_parameters_and_what_athena_would_read(aws):
    spec = make_spec(partition_projection=True)
    glue, s3 = aws.client("glue"), aws.client("s3")
    first = write_snapshot(aws, spec, "2026-11-25", _rows(4, 1), V1)
    publish_snapshot(glue, s3, spec, "2026-11-25")
    params = get_catalog_table(glue, DB, "reviews").parameters
    assert params["projection.enabled"] == "true"
    assert params["projection.ddb_export_timestamp.type"] == "date"
    assert params["projection.ddb_export_timestamp.range"] == "2026-11-01,NOW+1DAYS"
    assert params["storage.location.template"] == (
        "s3://catalog-test/dynamodb-offload/parquet/reviews/ddb_export_timestamp=${ddb_export_timestamp}/"
    )
    assert _count(aws, 'SELECT count(*) FROM "dynamodb-exports"."reviews"') == 4
    # The trade-off, made visible: a re-run being written is read at once under projection
    # (Athena reads the whole date directory), while the registered partition still points at one run.
    write_snapshot(aws, spec, "2026-11-25", _rows(4, 1), V1, complete=False)
    assert _count(aws, 'SELECT count(*) FROM "dynamodb-exports"."reviews"') == 8
    # Turning projection off removes the properties; SQL then follows the registered partitions.
    plain = make_spec(partition_projection=False)
    last = write_snapshot(aws, plain, "2026-11-25", _rows(4, 1), V1)
    publish_snapshot(glue, s3, plain, "2026-11-25")
    assert not any(
        k.startswith(("projection.", "storage.location")) for k in get_catalog_table(glue, DB, "reviews").parameters
    )
    assert _count(aws, 'SELECT count(*) FROM "dynamodb-exports"."reviews"') == 4
    # Without projection the replaced run is kept until the next commit; the abandoned one is gone.
    runs = list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix("2026-11-25"))
    assert runs == [first.run_dir, last.run_dir]


def test_latest_view_never_moves_back_while_its_snapshot_exists(aws, spec):
    """A publisher that listed partitions before a newer one was registered must not roll the view back."""
    from offload_assets.catalog.glue_tables import delete_partitions
    from offload_assets.catalog.latest_view import publish_latest_view

    glue, s3 = aws.client("glue"), aws.client("s3")
    for day in ("2026-11-25", "2026-11-26"):
        write_snapshot(aws, spec, day, _rows(3, 1), V1)
        publish_snapshot(glue, s3, spec, day)
    stale = publish_latest_view(
        glue, database=DB, table="reviews", schema=V1, partition_values=["2026-11-25"], source_table="Reviews"
    )
    assert (stale.partition, stale.change) == ("2026-11-26", "unchanged")
    delete_partitions(glue, database=DB, table="reviews", values=["2026-11-26"])
    moved = publish_latest_view(
        glue, database=DB, table="reviews", schema=V1, partition_values=["2026-11-25"], source_table="Reviews"
    )
    assert (moved.partition, moved.change) == ("2026-11-25", "updated")
    gone = publish_latest_view(
        glue, database=DB, table="reviews", schema=V1, partition_values=[], source_table="Reviews"
    )
    assert gone.change == "deleted" and "reviews_latest" not in [
        t["Name"] for t in glue.get_tables(DatabaseName=DB)["TableList"]
    ]
