"""Crawler mode: what the emulator can show (create, update, start, time-bounded wait), and its settings."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from offload_assets.catalog.crawler import CrawlerTimeoutError, crawler_name, ensure_crawler, run_crawler
from offload_assets.snapshot.build import list_run_dirs
from offload_assets.snapshot.publish import publish_snapshot
from offload_assets.table_spec import TablesFileError
from offload_assets_tests.catalog.conftest import field, make_spec, write_snapshot

ROLE = "arn:aws:iam::123456789012:role/offload-crawler"


def test_crawler_mode_needs_a_role_and_excludes_projection():
    with pytest.raises(TablesFileError, match="table 'Reviews'.*catalog_mode 'crawler' needs crawler_role"):
        make_spec(catalog_mode="crawler")
    with pytest.raises(TablesFileError, match="partition_projection needs catalog_mode 'direct'"):
        make_spec(catalog_mode="crawler", crawler_role=ROLE, partition_projection=True)


def test_crawler_is_created_once_and_kept_up_to_date(aws):
    glue = aws.client("glue")
    spec = make_spec(catalog_mode="crawler", crawler_role=ROLE)
    assert ensure_crawler(glue, spec) == "created"
    assert ensure_crawler(glue, spec) == "unchanged"
    crawler = glue.get_crawler(Name=crawler_name(spec))["Crawler"]
    assert crawler["Targets"]["S3Targets"] == [
        {"Path": "s3://catalog-test/dynamodb-offload/parquet/reviews/", "Exclusions": ["**/_*", "**/_*/**"]}
    ]
    assert crawler["DatabaseName"] == "dynamodb-exports" and crawler["Role"] == ROLE
    assert json.loads(crawler["Configuration"])["Grouping"] == {"TableGroupingPolicy": "CombineCompatibleSchemas"}
    # (A changed setting is applied with UpdateCrawler, which the emulator does not implement.)


def test_a_crawl_that_never_finishes_fails_within_the_deadline(aws):
    glue = aws.client("glue")
    spec = make_spec(catalog_mode="crawler", crawler_role=ROLE)
    sleeps: list[float] = []
    with pytest.raises(
        CrawlerTimeoutError,
        match=r"crawler 'offload-assets-dynamodb-exports-reviews' still RUNNING after 0.01 min.*asked to stop.*catalog_mode: direct",
    ):
        run_crawler(
            glue, spec, timeout_minutes=0.01, poll_seconds=0.05, sleep=lambda s: (sleeps.append(s), time.sleep(s))
        )
    assert sleeps and sum(sleeps) < 5
    assert glue.get_crawler(Name=crawler_name(spec))["Crawler"]["State"] == "STOPPING"


def test_publish_in_crawler_mode_cleans_runs_then_waits_for_the_crawler(aws):
    glue, s3 = aws.client("glue"), aws.client("s3")
    spec = make_spec(catalog_mode="crawler", crawler_role=ROLE, crawler_timeout_minutes=0.01)
    schema = pa.schema([field("user", pa.string())])
    write_snapshot(aws, spec, "2026-11-25", [{"user": "a"}], schema)
    write_snapshot(aws, spec, "2026-11-25", [{"user": "a"}, {"user": "b"}], schema)
    with pytest.raises(CrawlerTimeoutError):
        publish_snapshot(glue, s3, spec, "2026-11-25", crawler_poll_seconds=0.05)
    assert (
        len(list_run_dirs(s3, bucket=spec.s3_bucket, partition_prefix=spec.parquet_partition_prefix("2026-11-25"))) == 1
    )
    assert glue.get_crawler(Name=crawler_name(spec))["Crawler"].get("LastCrawl", {}).get("Status") == "STOPPING"
    assert "reviews" not in [t["Name"] for t in glue.get_tables(DatabaseName="dynamodb-exports")["TableList"]]
