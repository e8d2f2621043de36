"""The query compatibility suite: analyst queries, written once in Athena's SQL, answered locally.

Built once for the module through the real path: two DynamoDB tables seeded in the emulator
(the demo's ``Reviews`` and a ``Books`` table), two nightly snapshots of ``Reviews`` (the table
grows and some ratings change in between) and one of ``Books``, each exported, converted by the
Dagster job and registered in Glue. Every query's answer is checked against the same question
answered in Python from the items written to DynamoDB.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from decimal import Decimal
from statistics import mean

import dagster as dg
import pytest

from offload_assets.aws.connection import resolve_connection
from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import partitions_for
from offload_assets.local.demo_data import generate_reviews, put_items, seed_reviews
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.catalog.nightly_runs import offload_night
from offload_assets_tests.conftest import reset_emulator, write_tables_file

DB = '"dynamodb-exports"'
FIRST_NIGHT_ITEMS = 700
ITEMS = 900

BOOKS = [
    {
        "Title": "Harry Potter and the Philosopher's Stone",
        "Author": "J.K. Rowling",
        "Year": 1997,
        "Genres": {"fantasy", "children"},
        "Stats": {"Pages": 223, "Editions": 120},
        "InPrint": True,
    },
    {
        "Title": "Harry Potter and the Chamber of Secrets",
        "Author": "J.K. Rowling",
        "Year": 1998,
        "Genres": {"fantasy", "children"},
        "Stats": {"Pages": 251, "Editions": 90},
        "InPrint": True,
    },
    {
        "Title": "Harry Potter and the Prisoner of Azkaban",
        "Author": "J.K. Rowling",
        "Year": 1999,
        "Genres": {"fantasy"},
        "Stats": {"Pages": 317, "Editions": 85},
        "InPrint": True,
    },
    {
        "Title": "The Casual Vacancy",
        "Author": "J.K. Rowling",
        "Year": 2012,
        "Genres": {"literary"},
        "Stats": {"Pages": 503},
        "InPrint": True,
    },
    {
        "Title": "The Hobbit",
        "Author": "J.R.R. Tolkien",
        "Year": 1937,
        "Genres": {"fantasy", "classic"},
        "Stats": {"Pages": 310, "Editions": 200},
        "InPrint": True,
        "Awards": ["Carnegie (commended)"],
    },
    {
        "Title": "The Fellowship of the Ring",
        "Author": "J.R.R. Tolkien",
        "Year": 1954,
        "Genres": {"fantasy", "classic"},
        "Stats": {"Pages": 423},
        "InPrint": True,
    },
    {
        "Title": "The Two Towers",
        "Author": "J.R.R. Tolkien",
        "Year": 1954,
        "Genres": {"fantasy", "classic"},
        "Stats": {"Pages": 352},
        "InPrint": True,
    },
    {
        "Title": "The Return of the King",
        "Author": "J.R.R. Tolkien",
        "Year": 1955,
        "Genres": {"fantasy", "classic"},
        "Stats": {"Pages": 416},
        "InPrint": True,
    },
    {
        "Title": "Pride and Prejudice",
        "Author": "Jane Austen",
        "Year": 1813,
        "Genres": {"classic", "romance"},
        "Stats": {"Pages": 432, "Editions": 500},
        "InPrint": True,
    },
    {
        "Title": "Emma",
        "Author": "Jane Austen",
        "Year": 1815,
        "Genres": {"classic", "romance"},
        "Stats": {"Pages": 474},
        "InPrint": True,
    },
    {
        "Title": "Persuasion",
        "Author": "Jane Austen",
        "Year": 1817,
        "Genres": {"classic", "romance"},
        "Stats": {"Pages": 249},
        "InPrint": False,
    },
    {
        "Title": "A Wizard of Earthsea",
        "Author": "Ursula K. Le Guin",
        "Year": 1968,
        "Genres": {"fantasy"},
        "Stats": {"Pages": 183},
        "InPrint": True,
        "Awards": ["Boston Globe-Horn Book"],
    },
    {
        "Title": "The Left Hand of Darkness",
        "Author": "Ursula K. Le Guin",
        "Year": 1969,
        "Genres": {"sci-fi"},
        "Stats": {"Pages": 304},
        "InPrint": True,
        "Awards": ["Hugo", "Nebula"],
    },
    {
        "Title": "Beloved",
        "Author": "Toni Morrison",
        "Year": 1987,
        "Genres": {"literary"},
        "Stats": {"Pages": 324},
        "InPrint": True,
        "Awards": ["Pulitzer"],
    },
    {
        "Title": "Song of Solomon",
        "Author": "Toni Morrison",
        "Year": 1977,
        "Genres": {"literary"},
        "Stats": {"Pages": 337},
        "InPrint": True,
    },
    {
        "Title": "Kafka on the Shore",
        "Author": "Haruki Murakami",
        "Year": 2002,
        "Genres": {"literary", "fantasy"},
        "Stats": {"Pages": 505},
        "InPrint": True,
    },
    {
        "Title": "Norwegian Wood",
        "Author": "Haruki Murakami",
        "Year": 1987,
        "Genres": {"literary", "romance"},
        "Stats": {"Pages": 296},
        "InPrint": True,
    },
    # "1Q84", "Americanah", "Half of a Yellow Sun" and "The Hobbit"'s sequels are reviewed but some are missing here on purpose.
    {
        "Title": "Americanah",
        "Author": "Chimamanda Ngozi Adichie",
        "Year": 2013,
        "Genres": {"literary", "romance"},
        "Stats": {"Pages": 477},
        "InPrint": True,
    },
]


def _create_books_table(dynamodb) -> None:
    dynamodb.create_table(
        TableName="Books",
        KeySchema=[{"AttributeName": "Title", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Title", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName="Books")


class Suite:
    def __init__(self, connection, first_night, today, night1, night2, books):
        self.connection, self.first_night, self.today = connection, first_night, today
        self.night1, self.night2, self.books = night1, night2, books

    def q(self, sql: str):
        return run_query(sql, connection=self.connection)


@pytest.fixture(scope="module")
def suite(emulator, tmp_path_factory):
    reset_emulator(emulator)
    connection = resolve_connection(target="local", endpoint_url=emulator.endpoint_url)
    tables_file = write_tables_file(
        tmp_path_factory.mktemp("compat") / "tables.yaml",
        {"dynamodb_table": "Reviews"},
        {"dynamodb_table": "Books"},
        defaults={"s3_bucket": "compat-bucket", "partitions_start": "2026-01-01"},  # a past night exists
    )
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    specs = load_tables_file(tables_file)
    reviews, books = specs.table("Reviews"), specs.table("Books")
    today = partitions_for(reviews).get_last_partition_key()
    keys = partitions_for(reviews).get_partition_keys()
    first_night = keys[keys.index(today) - 1]
    instance = dg.DagsterInstance.ephemeral()
    dynamodb = connection.client("dynamodb")

    all_items = generate_reviews(ITEMS - 2)
    night1 = seed_reviews(dynamodb, count=FIRST_NIGHT_ITEMS - 2)
    assert night1 == all_items[:FIRST_NIGHT_ITEMS]
    offload_night(connection, defs, reviews, first_night, instance)

    # During the day: new reviews arrive and every 10th existing review's rating changes.
    night2 = [dict(i) for i in all_items]
    for i in range(0, FIRST_NIGHT_ITEMS, 10):
        night2[i]["Rating"] = night2[i]["Rating"] % 5 + 1
    put_items(dynamodb, "Reviews", night2)
    _create_books_table(dynamodb)
    put_items(dynamodb, "Books", BOOKS)
    offload_night(connection, defs, reviews, today, instance, whole_job=True)
    offload_night(connection, defs, books, today, instance, whole_job=True)
    return Suite(connection, first_night, today, night1, night2, BOOKS)


def latest(suite):
    return suite.night2


# --- the queries -------------------------------------------------------------------------------
# Each entry: (id, SQL in Athena's dialect, ground truth from the items). {d1}/{d2}: snapshot dates.


def _author_counts(items):
    return sorted(Counter(i["Author"] for i in items).items(), key=lambda kv: (-kv[1], kv[0]))


def _votes(items, kind):
    return [i["HelpfulVotes"] for i in items if isinstance(i.get("HelpfulVotes"), kind)]


def _month(item):
    return int(item["ReviewedAt"][5:7])


def _books_by_title(suite):
    return {b["Title"]: b for b in suite.books}


QUERIES = [
    (
        "blog_query_on_latest",
        f"SELECT COUNT(author) AS num_reviews FROM {DB}.\"reviews_latest\" WHERE author = 'J.K. Rowling'",
        lambda s: [(sum(i["Author"] == "J.K. Rowling" for i in latest(s)),)],
    ),
    ("latest_count_is_item_count", f'SELECT COUNT(*) FROM {DB}."reviews_latest"', lambda s: [(len(latest(s)),)]),
    (
        "all_snapshots_count_every_night",
        f'SELECT COUNT(*) FROM {DB}."reviews"',
        lambda s: [(len(s.night1) + len(s.night2),)],
    ),
    (
        "partition_filter_first_night",
        f"SELECT COUNT(*), COUNT(DISTINCT user) FROM {DB}.reviews WHERE ddb_export_timestamp = '{{d1}}'",
        lambda s: [(len(s.night1), len(s.night1))],
    ),
    (
        "rows_per_snapshot",
        f"SELECT ddb_export_timestamp, count(*) FROM {DB}.reviews GROUP BY ddb_export_timestamp ORDER BY 1",
        lambda s: [(s.first_night, len(s.night1)), (s.today, len(s.night2))],
    ),
    (
        "reviews_per_author",
        f"SELECT author, count(*) AS n FROM {DB}.reviews_latest GROUP BY author ORDER BY n DESC, author",
        lambda s: _author_counts(latest(s)),
    ),
    (
        "average_rating_per_author",
        f"SELECT author, round(avg(rating), 4) FROM {DB}.reviews_latest GROUP BY 1 ORDER BY 1",
        lambda s: sorted(
            (a, round(mean(i["Rating"] for i in latest(s) if i["Author"] == a), 4))
            for a in {i["Author"] for i in latest(s)}
        ),
    ),
    (
        "integer_division_like_trino",
        f"SELECT sum(rating) / count(*), sum(rating) * 100 / count(*) FROM {DB}.reviews_latest",
        lambda s: [
            (
                sum(i["Rating"] for i in latest(s)) // len(latest(s)),
                sum(i["Rating"] for i in latest(s)) * 100 // len(latest(s)),
            )
        ],
    ),
    (
        "rating_histogram",
        f"SELECT rating, count(*) FROM {DB}.reviews_latest GROUP BY rating ORDER BY rating",
        lambda s: sorted(Counter(i["Rating"] for i in latest(s)).items()),
    ),
    (
        "filters_and_in_list",
        f"SELECT count(*) FROM {DB}.reviews_latest WHERE rating >= 4 AND author IN ('Jane Austen', 'Toni Morrison') AND book <> 'Emma'",
        lambda s: [
            (
                sum(
                    i["Rating"] >= 4 and i["Author"] in ("Jane Austen", "Toni Morrison") and i["Book"] != "Emma"
                    for i in latest(s)
                ),
            )
        ],
    ),
    (
        "struct_field_group_by",
        f"SELECT details.format, count(*) FROM {DB}.reviews_latest WHERE details IS NOT NULL GROUP BY 1 ORDER BY 1",
        lambda s: sorted(Counter(i["Details"]["Format"] for i in latest(s) if "Details" in i).items()),
    ),
    (
        "nested_struct_field",
        f"SELECT details.publisher.name AS publisher, sum(details.pages) FROM {DB}.reviews_latest "
        "WHERE details.publisher IS NOT NULL GROUP BY 1 ORDER BY 1",
        lambda s: sorted(
            {
                p: sum(
                    i["Details"]["Pages"]
                    for i in latest(s)
                    if i.get("Details", {}).get("Publisher", {}).get("Name") == p
                )
                for p in {i["Details"]["Publisher"]["Name"] for i in latest(s) if "Publisher" in i.get("Details", {})}
            }.items()
        ),
    ),
    (
        "struct_field_filter",
        f"SELECT count(*) FROM {DB}.reviews_latest WHERE details.pages > 600",
        lambda s: [(sum(i.get("Details", {}).get("Pages", 0) > 600 for i in latest(s)),)],
    ),
    (
        "array_cardinality",
        f"SELECT sum(cardinality(tags)), count(tags), max(cardinality(shelves)) FROM {DB}.reviews_latest",
        lambda s: [
            (
                sum(len(i.get("Tags", ())) for i in latest(s)),
                sum("Tags" in i for i in latest(s)),
                max(len(i.get("Shelves", ())) for i in latest(s)),
            )
        ],
    ),
    (
        "array_contains",
        f"SELECT count(*) FROM {DB}.reviews_latest WHERE contains(tags, 'fantasy')",
        lambda s: [(sum("fantasy" in i.get("Tags", ()) for i in latest(s)),)],
    ),
    (
        "unnest_top_tags",
        f"SELECT tag, count(*) AS n FROM {DB}.reviews_latest CROSS JOIN UNNEST(tags) AS t(tag) GROUP BY tag ORDER BY n DESC, tag LIMIT 5",
        lambda s: sorted(
            Counter(t for i in latest(s) for t in i.get("Tags", ())).items(), key=lambda kv: (-kv[1], kv[0])
        )[:5],
    ),
    (
        "unnest_number_set",
        f"SELECT count(*), sum(session) FROM {DB}.reviews_latest CROSS JOIN UNNEST(readingsessions) AS r(session)",
        lambda s: [
            (
                sum(len(i.get("ReadingSessions", ())) for i in latest(s)),
                sum(sum(i.get("ReadingSessions", ())) for i in latest(s)),
            )
        ],
    ),
    (
        "list_lambda_any_match",
        f"SELECT count(*) FROM {DB}.reviews_latest WHERE any_match(shelves, x -> x = 'abandoned')",
        lambda s: [(sum("abandoned" in i.get("Shelves", ()) for i in latest(s)),)],
    ),
    (
        "exact_decimals",
        f"SELECT sum(price), min(price), max(price) FROM {DB}.reviews_latest",
        lambda s: [
            (
                sum(i["Price"] for i in latest(s) if "Price" in i),
                min(i["Price"] for i in latest(s) if "Price" in i),
                max(i["Price"] for i in latest(s) if "Price" in i),
            )
        ],
    ),
    (
        "booleans_and_count_if",
        f"SELECT count_if(spoiler), count_if(NOT spoiler), count(spoiler) FROM {DB}.reviews_latest",
        lambda s: [
            (
                sum(i.get("Spoiler") is True for i in latest(s)),
                sum(i.get("Spoiler") is False for i in latest(s)),
                sum("Spoiler" in i for i in latest(s)),
            )
        ],
    ),
    (
        "nulls_and_sparse_attributes",
        f"SELECT count(*) - count(reviewtext), count(moderatornote) FROM {DB}.reviews_latest",
        lambda s: [(sum("ReviewText" not in i for i in latest(s)), 0)],
    ),
    (
        "rescued_values_are_kept",
        f"SELECT sum(helpfulvotes), count(helpfulvotes), "
        f"sum(CAST(json_extract_scalar(_rescued_data, '$.HelpfulVotes.S') AS bigint)) FROM {DB}.reviews_latest",
        lambda s: [
            (
                sum(_votes(latest(s), int)),
                len(_votes(latest(s), int)),
                sum(int(v) for v in _votes(latest(s), str)) or None,
            )
        ],
    ),
    (
        "binary_attribute",
        f"SELECT count(coverthumbnail), sum(length(coverthumbnail)) FROM {DB}.reviews_latest",
        lambda s: [
            (
                sum("CoverThumbnail" in i for i in latest(s)),
                sum(len(i["CoverThumbnail"]) for i in latest(s) if "CoverThumbnail" in i),
            )
        ],
    ),
    (
        "string_functions",
        f"SELECT count(*) FROM {DB}.reviews_latest WHERE lower(book) LIKE '%harry potter%' AND strpos(author, 'Rowling') > 0",
        lambda s: [(sum("harry potter" in i["Book"].lower() for i in latest(s)),)],
    ),
    (
        "timestamps_from_text",
        f"SELECT month(from_iso8601_timestamp(reviewedat)) AS m, count(*) FROM {DB}.reviews_latest "
        "WHERE reviewedat IS NOT NULL GROUP BY 1 ORDER BY 1",
        lambda s: sorted(Counter(_month(i) for i in latest(s) if "ReviewedAt" in i).items()),
    ),
    (
        "distinct_and_having",
        f"SELECT book FROM {DB}.reviews_latest GROUP BY book HAVING count(DISTINCT user) > 60 ORDER BY book",
        lambda s: sorted((b,) for b, n in Counter(i["Book"] for i in latest(s)).items() if n > 60),
    ),
    (
        "window_function_rank",
        f"WITH a AS (SELECT author, count(*) AS n FROM {DB}.reviews_latest GROUP BY author) "
        "SELECT author, rank() OVER (ORDER BY n DESC) AS r FROM a ORDER BY r, author LIMIT 3",
        lambda s: [(a, 1 + sum(m > n for _, m in _author_counts(latest(s)))) for a, n in _author_counts(latest(s))[:3]],
    ),
    (
        "changes_between_snapshots",
        f"SELECT count(*) FROM {DB}.reviews a JOIN {DB}.reviews b ON a.user = b.user AND a.book = b.book "
        f"WHERE a.ddb_export_timestamp = '{{d1}}' AND b.ddb_export_timestamp = '{{d2}}' AND a.rating <> b.rating",
        lambda s: [(sum(a["Rating"] != b["Rating"] for a, b in zip(s.night1, s.night2)),)],
    ),
    (
        "new_since_first_night",
        f"SELECT count(*) FROM {DB}.reviews_latest n LEFT JOIN (SELECT user FROM {DB}.reviews WHERE ddb_export_timestamp = '{{d1}}') o "
        "ON n.user = o.user WHERE o.user IS NULL",
        lambda s: [(len(s.night2) - len(s.night1),)],
    ),
    (
        "join_two_tables_by_genre",
        f"SELECT g, count(*), round(avg(r.rating), 3) FROM {DB}.reviews_latest r JOIN {DB}.books_latest b ON r.book = b.title "
        "CROSS JOIN UNNEST(b.genres) AS t(g) GROUP BY g ORDER BY g",
        lambda s: sorted((g, len(rs), round(mean(rs), 3)) for g, rs in _ratings_by_genre(s).items()),
    ),
    (
        "join_filter_on_other_table",
        f"SELECT count(*) FROM {DB}.reviews_latest r JOIN {DB}.books b ON r.book = b.title "
        f"WHERE b.year < 1950 AND b.ddb_export_timestamp = '{{d2}}'",
        lambda s: [(sum(_books_by_title(s).get(i["Book"], {}).get("Year", 9999) < 1950 for i in latest(s)),)],
    ),
    (
        "anti_join_books_without_catalog_entry",
        f"SELECT r.book, count(*) FROM {DB}.reviews_latest r LEFT JOIN {DB}.books_latest b ON r.book = b.title "
        "WHERE b.title IS NULL GROUP BY r.book ORDER BY r.book",
        lambda s: sorted(Counter(i["Book"] for i in latest(s) if i["Book"] not in _books_by_title(s)).items()),
    ),
    (
        "map_attribute_sparse_field_from_other_table",
        f"SELECT sum(stats.editions), count(stats.editions), count(awards), sum(cardinality(awards)) FROM {DB}.books_latest WHERE inprint",
        lambda s: [
            (
                sum(b["Stats"].get("Editions", 0) for b in s.books if b["InPrint"]),
                sum("Editions" in b["Stats"] for b in s.books if b["InPrint"]),
                sum("Awards" in b for b in s.books if b["InPrint"]),
                sum(len(b.get("Awards", ())) for b in s.books if b["InPrint"]),
            )
        ],
    ),
]


def _ratings_by_genre(s):
    books = _books_by_title(s)
    out = defaultdict(list)
    for i in latest(s):
        for g in books.get(i["Book"], {}).get("Genres", ()):
            out[g].append(i["Rating"])
    return out


def _normalize(rows):
    return [tuple(float(v) if isinstance(v, float) else v for v in row) for row in rows]


@pytest.mark.parametrize(("name", "sql", "truth"), QUERIES, ids=[q[0] for q in QUERIES])
def test_query_matches_ground_truth(suite, name, sql, truth):
    text = sql.replace("{d1}", suite.first_night).replace("{d2}", suite.today)
    result = suite.q(text)
    expected = [tuple(row) for row in truth(suite)]
    assert expected and all(v not in (None, 0) for v in expected[0][:1]) or name == "nulls_and_sparse_attributes", (
        expected
    )
    assert _normalize(result.rows) == _normalize(expected), f"{name}: {result.details.get('translated_sql')}"


def test_suite_is_big_enough_and_covers_the_issue():
    assert len(QUERIES) >= 25
    text = " ".join(q[1].lower() for q in QUERIES)
    for feature in (
        "unnest",
        "cardinality",
        "contains(",
        "details.publisher.name",
        "ddb_export_timestamp =",
        "_latest",
        " join ",
    ):
        assert feature in text, feature


def test_schema_seen_by_sql_matches_the_converter(suite):
    result = suite.q(f"SELECT * FROM {DB}.reviews_latest LIMIT 1")
    assert {
        "user",
        "book",
        "author",
        "rating",
        "details",
        "tags",
        "price",
        "helpfulvotes",
        "_rescued_data",
        "ddb_export_timestamp",
    } <= set(result.columns)
    glue = suite.connection.client("glue")
    view = glue.get_table(DatabaseName="dynamodb-exports", Name="reviews_latest")["Table"]
    assert view["Parameters"]["offload_assets.latest_partition"] == suite.today
    rescued = suite.q(f"SELECT _rescued_data FROM {DB}.reviews_latest WHERE _rescued_data IS NOT NULL LIMIT 1").scalar()
    assert re.fullmatch(r'\{"HelpfulVotes":\{"S":"\d+"\}\}', rescued.replace(" ", "")), rescued
    assert json.loads(rescued)
    assert isinstance(suite.q(f"SELECT max(price) FROM {DB}.reviews_latest").scalar(), Decimal)
