"""apply_changes: upserts and deletes by key, one snapshot per call, summary recorded; on the emulator."""

from __future__ import annotations

import pyarrow as pa

from offload_assets.iceberg import apply_changes, current_summary
from offload_assets.iceberg.changes import live_rows
from offload_assets_tests.iceberg.conftest import reviews


def _rows(table) -> dict[tuple, dict]:
    return {(r["user_id"], r["review_id"]): r for r in table.scan().to_arrow().to_pylist()}


def test_apply_changes_upserts_deletes_in_one_snapshot(reviews_table):
    first = apply_changes(reviews_table, upserts=reviews(100), summary={"offload.partition": "2026-11-20"})
    assert first.rows_upserted == 100 and first.files_added >= 1
    assert len(_rows(reviews_table)) == 100
    assert current_summary(reviews_table)["offload.partition"] == "2026-11-20"
    snapshots_before = len(reviews_table.metadata.snapshots)

    updates = reviews(5, start=10, author="changed")  # keys 10..14 exist
    inserts = reviews(3, start=500)
    deletes = pa.table({"user_id": ["u0", "u1", "u6"], "review_id": [0, 1, 999]})  # 999 absent
    applied = apply_changes(
        reviews_table,
        upserts=pa.concat_tables([updates, inserts]),
        deletes=deletes,
        summary={"offload.partition": "2026-11-21", "offload.export_id": "e2"},
    )

    assert len(reviews_table.metadata.snapshots) == snapshots_before + 1  # ONE snapshot
    assert applied.rows_replaced == 5 and applied.rows_deleted == 2 and applied.rows_upserted == 8
    rows = _rows(reviews_table)
    assert len(rows) == 100 - 2 + 3
    assert ("u0", 0) not in rows and ("u1", 1) not in rows
    assert rows[("u3", 10)]["author"] == "changed10" and rows[("u2", 16)]["author"] == "a16"
    assert rows[("u3", 500)]["tags"] == ["x", "t500"]
    summary = current_summary(reviews_table)
    assert summary["offload.partition"] == "2026-11-21" and summary["offload.export_id"] == "e2"
    # merge-on-read: 108 rows in data files, 7 of them named by the commit's position delete file
    assert (summary["total-records"], summary["total-position-deletes"], summary["added-delete-files"]) == (
        "108",
        "7",
        "1",
    )
    assert live_rows(reviews_table) == 101
    assert (applied.files_removed, applied.delete_files_added, applied.position_deletes_added) == (0, 1, 7)

    # the previous snapshot is still readable (time travel)
    previous = reviews_table.metadata.snapshots[-2].snapshot_id
    assert reviews_table.scan(snapshot_id=previous).to_arrow().num_rows == 100


def test_untouched_files_are_kept_and_empty_changes_still_record_a_snapshot(reviews_table):
    apply_changes(reviews_table, upserts=reviews(50), summary={"offload.partition": "d1"})
    apply_changes(reviews_table, upserts=reviews(50, start=50), summary={"offload.partition": "d2"})
    applied = apply_changes(reviews_table, upserts=reviews(1, start=60, author="z"), summary={"p": "d3"})
    # merge-on-read: no data file rewritten; one row of the file holding key 60 position-deleted
    assert (applied.files_kept, applied.files_with_deletes, applied.files_removed) == (1, 1, 0)
    assert (applied.files_added, applied.delete_files_added, applied.position_deletes_added) == (1, 1, 1)
    assert len(_rows(reviews_table)) == 100

    nothing = apply_changes(reviews_table, summary={"offload.partition": "d4"})
    assert nothing.files_added == 0 and nothing.files_removed == 0
    assert current_summary(reviews_table)["offload.partition"] == "d4"
    assert len(_rows(reviews_table)) == 100


def test_new_attribute_adds_a_column_without_rewriting(reviews_table):
    apply_changes(reviews_table, upserts=reviews(20))
    old_ids = {f.name: f.field_id for f in reviews_table.schema().fields}
    extra = reviews(2, start=100).append_column(pa.field("shelf", pa.string()), pa.array(["read", None]))
    applied = apply_changes(reviews_table, upserts=extra)
    assert applied.files_kept == 1  # existing data untouched
    schema = reviews_table.schema()
    assert {f.name: f.field_id for f in schema.fields if f.name in old_ids} == old_ids
    rows = _rows(reviews_table)
    assert rows[("u2", 100)]["shelf"] == "read" and rows[("u0", 0)]["shelf"] is None


def test_identifier_fields_and_column_docs(reviews_table):
    schema = reviews_table.schema()
    assert set(schema.identifier_field_names()) == {"user_id", "review_id"}
    assert schema.find_field("user_id").required
    assert schema.find_field("rating").doc == "DynamoDB attribute 'Rating' (N)"


def test_every_object_of_the_table_is_encrypted(reviews_table, aws):
    apply_changes(reviews_table, upserts=reviews(30))
    apply_changes(reviews_table, upserts=reviews(3, author="b"))
    s3 = aws.client("s3")
    bucket, _, prefix = reviews_table.location().removeprefix("s3://").partition("/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    kinds = {k.rsplit(".", 1)[-1] for k in keys}
    assert {"parquet", "avro", "json"} <= kinds
    for key in keys:
        assert s3.head_object(Bucket=bucket, Key=key).get("ServerSideEncryption") == "AES256", key
