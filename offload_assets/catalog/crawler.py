"""Optional crawler mode (``catalog_mode: crawler``): register snapshots the way the blog does.

Off by default, for parity only. Direct registration is better in every way we measured:
a crawler guesses the schema we already know, runs minutes after the data is complete, adds a
table version per run, and here it would also see the run directories below each date as a
second partition level (``partition_1``). What this module does: create or update one crawler
per table (S3 target = the table's Parquet root, hidden ``_*`` files excluded), start it (or
wait for a crawl already under way, then start a fresh one so it sees the new snapshot), wait
with a deadline, and report the crawl's outcome and Glue's crawler metrics.

The local emulator's crawlers are API-only: they are created and started but never finish and
never change the catalog, so locally this mode ends in :class:`CrawlerTimeoutError`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from offload_assets.catalog.glue_tables import ensure_database
from offload_assets.table_spec import TableSpec

if TYPE_CHECKING:
    from types_boto3_glue import GlueClient

CRAWLER_CONFIGURATION = {
    "Version": 1.0,
    "CrawlerOutput": {
        "Partitions": {"AddOrUpdateBehavior": "InheritFromTable"},
        "Tables": {"AddOrUpdateBehavior": "MergeNewColumns"},
    },
    "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
}


class CrawlerTimeoutError(TimeoutError):
    """The crawl did not finish within the table's crawler_timeout_minutes (it was asked to stop)."""


class CrawlerFailedError(RuntimeError):
    """The crawl finished but did not succeed (the message has Glue's reason)."""


@dataclass(frozen=True)
class CrawlOutcome:
    crawler: str
    crawler_change: str  # created / updated / unchanged
    status: str  # SUCCEEDED / FAILED / CANCELLED
    elapsed_seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


def crawler_name(spec: TableSpec) -> str:
    return f"offload-assets-{spec.catalog_database}-{spec.catalog_table}"


def crawler_definition(spec: TableSpec) -> dict[str, Any]:
    return {
        "Name": crawler_name(spec),
        "Role": spec.crawler_role,
        "DatabaseName": spec.catalog_database,
        "Description": f"Crawls the Parquet snapshots of DynamoDB table {spec.dynamodb_table} (offload_assets crawler mode)",
        "Targets": {
            "S3Targets": [{"Path": f"s3://{spec.s3_bucket}/{spec.parquet_root}/", "Exclusions": ["**/_*", "**/_*/**"]}]
        },
        "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "DELETE_FROM_DATABASE"},
        "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_EVERYTHING"},
        "Configuration": json.dumps(CRAWLER_CONFIGURATION, sort_keys=True),
    }


def ensure_crawler(glue: GlueClient, spec: TableSpec) -> str:
    """Create the table's crawler or bring its settings up to date; ``created``/``updated``/``unchanged``."""
    if not spec.crawler_role:
        raise ValueError(f"table {spec.dynamodb_table!r}: catalog_mode 'crawler' needs crawler_role")
    wanted = crawler_definition(spec)
    try:
        current = glue.get_crawler(Name=wanted["Name"])["Crawler"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_crawler(**wanted)
        return "created"
    same = all(current.get(k) == v for k, v in wanted.items() if k not in ("Configuration", "Targets")) and (
        json.loads(current.get("Configuration") or "{}") == CRAWLER_CONFIGURATION
        and [(t.get("Path"), t.get("Exclusions")) for t in current.get("Targets", {}).get("S3Targets", [])]
        == [(t["Path"], t["Exclusions"]) for t in wanted["Targets"]["S3Targets"]]
    )
    if same:
        return "unchanged"
    glue.update_crawler(**wanted)
    return "updated"


def _state(glue: GlueClient, name: str) -> tuple[str, dict[str, Any]]:
    crawler = glue.get_crawler(Name=name)["Crawler"]
    return crawler.get("State", "READY"), crawler.get("LastCrawl") or {}


def _wait_ready(
    glue: GlueClient,
    name: str,
    deadline: float,
    poll_seconds: float,
    sleep: Callable[[float], None],
    what: str,
    timeout_minutes: float,
    since: dt.datetime | None = None,
) -> dict[str, Any]:
    while True:
        state, last = _state(glue, name)
        started = last.get("StartTime")
        # Right after StartCrawler, Glue may still report READY with the previous crawl as LastCrawl.
        if state == "READY" and (since is None or (isinstance(started, dt.datetime) and started >= since)):
            return last
        if time.monotonic() >= deadline:
            try:
                glue.stop_crawler(Name=name)
                stopped = "asked to stop"
            except glue.exceptions.CrawlerNotRunningException:
                stopped = "not running any more"
            raise CrawlerTimeoutError(
                f"crawler {name!r} still {state}{what} after {timeout_minutes:g} min (crawler_timeout_minutes); it was "
                f"{stopped}. The local emulator's crawlers never finish: use catalog_mode: direct locally."
            )
        sleep(poll_seconds)


def run_crawler(
    glue: GlueClient,
    spec: TableSpec,
    *,
    timeout_minutes: float | None = None,
    poll_seconds: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CrawlOutcome:
    """Create/update the crawler, run one complete crawl, and report; raises on timeout or failure."""
    timeout_minutes = timeout_minutes if timeout_minutes is not None else spec.crawler_timeout_minutes
    started = time.monotonic()
    deadline = started + timeout_minutes * 60
    ensure_database(glue, spec.catalog_database)  # a crawler writes into an existing database only
    change = ensure_crawler(glue, spec)
    name = crawler_name(spec)
    state, _ = _state(glue, name)
    if state != "READY":
        # A crawl that started before our snapshot was complete may miss it: let it end, then crawl again.
        _wait_ready(glue, name, deadline, poll_seconds, sleep, " (a crawl started elsewhere)", timeout_minutes)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)  # tolerate a little clock skew
    glue.start_crawler(Name=name)
    last = _wait_ready(glue, name, deadline, poll_seconds, sleep, "", timeout_minutes, since)
    status = last.get("Status", "UNKNOWN")
    if status != "SUCCEEDED":
        raise CrawlerFailedError(
            f"crawler {name!r} ended {status}: {last.get('ErrorMessage', 'no reason given')} "
            f"(log group {last.get('LogGroup', '?')}, stream {last.get('LogStream', '?')})"
        )
    metrics: dict[str, Any] = {}
    try:
        for m in glue.get_crawler_metrics(CrawlerNameList=[name]).get("CrawlerMetricsList", []):
            metrics = {
                k: m[k] for k in ("TablesCreated", "TablesUpdated", "TablesDeleted", "LastRuntimeSeconds") if k in m
            }
    except glue.exceptions.ClientError:
        metrics = {}  # not every catalog implementation serves metrics; the crawl itself succeeded
    return CrawlOutcome(name, change, status, time.monotonic() - started, metrics)
