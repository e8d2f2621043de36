"""The demo's ``Reviews`` table: the blog post's two items plus a deterministic sample.

The sample has the variety real tables have: sparse attributes, nested maps, lists, string
and number sets, binary values, decimals, and occasional type mix-ups (a number stored as a
string), so the demo exercises the converter the way production data does.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

REVIEWS_TABLE = "Reviews"

BLOG_ITEMS: list[dict[str, Any]] = [
    {"User": "Alice", "Book": "Harry Potter and the Philosopher's Stone", "Author": "J.K. Rowling", "Rating": 5},
    {"User": "Bob", "Book": "The Hobbit", "Author": "J.R.R. Tolkien", "Rating": 4},
]

_AUTHORS = [
    (
        "J.K. Rowling",
        ["Harry Potter and the Chamber of Secrets", "Harry Potter and the Prisoner of Azkaban", "The Casual Vacancy"],
    ),
    ("J.R.R. Tolkien", ["The Fellowship of the Ring", "The Two Towers", "The Return of the King"]),
    ("Jane Austen", ["Pride and Prejudice", "Emma", "Persuasion"]),
    ("Ursula K. Le Guin", ["A Wizard of Earthsea", "The Left Hand of Darkness"]),
    ("Toni Morrison", ["Beloved", "Song of Solomon"]),
    ("Haruki Murakami", ["Kafka on the Shore", "Norwegian Wood", "1Q84"]),
    ("Chimamanda Ngozi Adichie", ["Americanah", "Half of a Yellow Sun"]),
]
_TAGS = ["fantasy", "classic", "romance", "sci-fi", "literary", "favorite", "reread", "book-club"]
_SHELVES = ["read", "to-read", "currently-reading", "abandoned"]


def generate_reviews(count: int = 3000, seed: int = 20251127) -> list[dict[str, Any]]:
    """The blog's two items plus ``count`` generated reviews, as plain Python values (boto3 resource style)."""
    rng = random.Random(seed)
    items = [dict(i) for i in BLOG_ITEMS]
    for n in range(count):
        author, books = _AUTHORS[rng.randrange(len(_AUTHORS))]
        item: dict[str, Any] = {
            "User": f"user-{n:06d}",
            "Book": rng.choice(books),
            "Author": author,
            "Rating": rng.randint(1, 5),
            "ReviewedAt": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
        }
        if rng.random() < 0.6:
            item["ReviewText"] = " ".join(
                rng.choice(["great", "slow", "moving", "dense", "funny", "sad"]) for _ in range(rng.randint(3, 12))
            )
        if rng.random() < 0.5:
            item["Tags"] = set(rng.sample(_TAGS, rng.randint(1, 3)))
        if rng.random() < 0.4:
            details: dict[str, Any] = {
                "Pages": rng.randint(90, 1200),
                "Format": rng.choice(["hardcover", "paperback", "ebook"]),
            }
            if rng.random() < 0.5:
                details["Publisher"] = {
                    "Name": rng.choice(["Bloomsbury", "Penguin", "Vintage"]),
                    "Country": rng.choice(["UK", "US"]),
                }
            item["Details"] = details
        if rng.random() < 0.3:
            item["Shelves"] = [rng.choice(_SHELVES) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            item["Price"] = Decimal(f"{rng.randint(1, 60)}.{rng.randint(0, 99):02d}")
        if rng.random() < 0.1:
            item["ReadingSessions"] = {rng.randint(10, 300) for _ in range(rng.randint(1, 4))}
        if rng.random() < 0.05:
            item["CoverThumbnail"] = bytes(rng.getrandbits(8) for _ in range(rng.randint(4, 24)))
        if rng.random() < 0.15:
            item["Spoiler"] = rng.random() < 0.5
        if rng.random() < 0.05:
            item["ModeratorNote"] = None
        if rng.random() < 0.3:
            # Type mix-up seen in real tables: an old client wrote the vote count as a string.
            votes = rng.randint(0, 500)
            item["HelpfulVotes"] = str(votes) if rng.random() < 0.1 else votes
        items.append(item)
    return items


def to_low_level(item: dict[str, Any]) -> dict[str, Any]:
    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in item.items()}


def create_reviews_table(dynamodb: Any, table_name: str = REVIEWS_TABLE) -> bool:
    """Create the demo table (User hash key, Book range key) if missing; True if created."""
    try:
        dynamodb.describe_table(TableName=table_name)
        return False
    except dynamodb.exceptions.ResourceNotFoundException:
        pass
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "User", "KeyType": "HASH"}, {"AttributeName": "Book", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "User", "AttributeType": "S"},
            {"AttributeName": "Book", "AttributeType": "S"},
        ],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 1000, "WriteCapacityUnits": 1000},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    return True


def put_items(dynamodb: Any, table_name: str, items: list[dict[str, Any]]) -> int:
    """Write items with BatchWriteItem, retrying unprocessed ones; returns how many were written."""
    low = [to_low_level(i) for i in items]
    for start in range(0, len(low), 25):
        requests = {table_name: [{"PutRequest": {"Item": i}} for i in low[start : start + 25]]}
        while requests:
            requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
    return len(low)


def seed_reviews(
    dynamodb: Any, *, table_name: str = REVIEWS_TABLE, count: int = 3000, seed: int = 20251127
) -> list[dict[str, Any]]:
    """Create and fill the demo table (idempotent: same keys, same values); returns the items."""
    create_reviews_table(dynamodb, table_name)
    items = generate_reviews(count, seed)
    put_items(dynamodb, table_name, items)
    return items
