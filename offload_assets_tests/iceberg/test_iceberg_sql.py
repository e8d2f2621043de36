"""Local SQL over an Iceberg table: the blog's query, Athena's time travel, the metadata tables."""

from __future__ import annotations

import pytest

from offload_assets.cli.demo import BLOG_QUERY
from offload_assets.sql.query import QueryError, run_query
from offload_assets_tests.iceberg.pipeline import make_spec, review, run_partition, seed


def _put(ddb, spec, n, author=None):
    item = review(n, author=author)
    ddb.put_item(
        TableName=spec.dynamodb_table,
        Item={k: {"S": v} if isinstance(v, str) else {"N": str(v)} for k, v in item.items()},
    )


def _two_days(aws):
    spec = make_spec(dynamodb_table="reviews")
    ddb = seed(aws, spec, 90)  # n % 3 == 0: J.K. Rowling -> 30 reviews
    day1 = run_partition(aws, spec, "2026-11-20")
    for n in (1, 2):  # Tolkien -> Rowling
        _put(ddb, spec, n, author="J.K. Rowling")
    for n in (3, 6):  # Rowling reviews deleted
        ddb.delete_item(
            TableName=spec.dynamodb_table, Key={"User": {"S": f"user-{n:04d}"}, "Book": {"S": f"book-{n % 7}"}}
        )
    _put(ddb, spec, 900)  # a new Rowling review
    day2 = run_partition(aws, spec, "2026-11-21")
    return spec, day1, day2


def test_blog_query_counts_the_current_state_and_time_travel_answers_day_one(aws):
    spec, day1, day2 = _two_days(aws)
    assert run_query(BLOG_QUERY, connection=aws).scalar() == 30 + 2 - 2 + 1
    total = 'SELECT count(*) FROM "dynamodb-exports"."reviews"'
    assert run_query(total, connection=aws).scalar() == 89  # no item counted twice, no deleted item
    by_version = BLOG_QUERY.replace('"reviews"', f'"reviews" FOR VERSION AS OF {day1.snapshot_id}')
    assert run_query(by_version, connection=aws).scalar() == 30
    # day 1 committed at real wall-clock time; any instant between the two commits reads day 1
    commits = run_query(
        'SELECT snapshot_id, committed_at FROM "dynamodb-exports"."reviews$snapshots" ORDER BY committed_at',
        connection=aws,
    ).rows
    assert [r[0] for r in commits] == [day1.snapshot_id, day2.snapshot_id]
    between = commits[0][1].strftime("%Y-%m-%d %H:%M:%S.%f")
    by_time = BLOG_QUERY.replace('"reviews"', f"\"reviews\" FOR TIMESTAMP AS OF TIMESTAMP '{between} UTC'")
    assert run_query(by_time, connection=aws).scalar() == 30
    now = BLOG_QUERY.replace('"reviews"', "\"reviews\" FOR TIMESTAMP AS OF TIMESTAMP '2999-01-01 00:00:00 UTC'")
    assert run_query(now, connection=aws).scalar() == 31


def test_metadata_tables_answer(aws):
    spec, day1, day2 = _two_days(aws)
    history = run_query(
        'SELECT snapshot_id, parent_id, is_current_ancestor FROM "dynamodb-exports"."reviews$history" '
        "ORDER BY made_current_at",
        connection=aws,
    ).rows
    assert history == ((day1.snapshot_id, None, True), (day2.snapshot_id, day1.snapshot_id, True))
    files = run_query(
        'SELECT content, count(*), sum(record_count) FROM "dynamodb-exports"."reviews$files" GROUP BY content '
        "ORDER BY content",
        connection=aws,
    ).rows
    # merge-on-read, as Athena lists it: content 0 = data files (day 1's 90 rows, day 2's 3 upserts),
    # content 1 = position delete files (the 2 updated and the 2 deleted rows of day 1's file)
    assert files == ((0, day2.data_files, 93), (1, 1, 4))
    assert day2.rows == 89
    summary = run_query(
        'SELECT summary[\'offload-assets.partition\'] FROM "dynamodb-exports"."reviews$snapshots" '
        f"WHERE snapshot_id = {day2.snapshot_id}",
        connection=aws,
    ).scalar()
    assert summary == "2026-11-21"


def test_time_travel_errors_say_what_is_wrong(aws):
    spec, _, _ = _two_days(aws)
    with pytest.raises(QueryError, match="snapshot 12345 not found"):
        run_query('SELECT count(*) FROM "dynamodb-exports"."reviews" FOR VERSION AS OF 12345', connection=aws)
    with pytest.raises(QueryError, match="no Iceberg snapshot was current"):
        run_query(
            'SELECT count(*) FROM "dynamodb-exports"."reviews" FOR TIMESTAMP AS OF TIMESTAMP \'2000-01-01 00:00:00 UTC\'',
            connection=aws,
        )
