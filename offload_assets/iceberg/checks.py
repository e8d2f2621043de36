"""The catalog checks of an Iceberg table, from its partition commits' snapshot summaries.

* row parity: after a partition's full-export commit, SQL's count of the table = the export's items
  (the table IS that export's state);
* changes add up: inserted + updated + unchanged = the export's items, and
  updated + deleted + unchanged = the rows before the commit;
* freshness: the newest committed partition's export is recent enough (as for Hive tables).
"""

from __future__ import annotations

import datetime as dt

from pyiceberg.table import Table

from offload_assets.iceberg.publish import COUNT_KEYS, EXPORT_ITEMS, EXPORT_TIME, PartitionCommit, partition_commits
from offload_assets.snapshot.checks import CheckOutcome, freshness
from offload_assets.table_spec import TableSpec


def commit_of(table: Table | None, partition_key: str) -> PartitionCommit | None:
    """The (last) commit of ``partition_key``, or None."""
    if table is None:
        return None
    same = [c for c in partition_commits(table) if c.partition_key == partition_key]
    return same[-1] if same else None


def _counts(commit: PartitionCommit) -> dict[str, int]:
    return {k: int(commit.summary.get(v, 0)) for k, v in COUNT_KEYS.items()}


def changes_add_up(spec: TableSpec, partition_key: str, commit: PartitionCommit | None) -> CheckOutcome:
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    if commit is None:
        return CheckOutcome(False, f"{where}: no Iceberg commit of this partition")
    c = _counts(commit)
    export_items = int(commit.summary.get(EXPORT_ITEMS, -1))
    new_side = c["inserted"] + c["updated"] + c["unchanged"]
    old_side = c["updated"] + c["deleted"] + c["unchanged"]
    metadata = {**c, "export_items": export_items, "snapshot_id": commit.snapshot_id}
    problems = []
    if new_side != export_items:
        problems.append(f"inserted + updated + unchanged = {new_side}, the export has {export_items} items")
    if old_side != c["previous-rows"]:
        problems.append(f"updated + deleted + unchanged = {old_side}, the table had {c['previous-rows']} rows")
    if problems:
        return CheckOutcome(False, f"{where}: the changes do not add up: " + "; ".join(problems), metadata=metadata)
    return CheckOutcome(
        True,
        f"{where}: {c['inserted']} inserted + {c['updated']} updated + {c['unchanged']} unchanged = {export_items} "
        f"exported items; {c['deleted']} deleted of {c['previous-rows']} previous rows.",
        metadata=metadata,
    )


def sql_count_of_commit(spec: TableSpec, commit: PartitionCommit) -> str:
    """Athena SQL counting the table as this commit left it (time travel: exact even after later commits)."""
    return (
        f'SELECT count(*) AS row_count FROM "{spec.catalog_database}"."{spec.catalog_table}" '
        f"FOR VERSION AS OF {commit.snapshot_id}"
    )


def iceberg_row_parity(
    spec: TableSpec, partition_key: str, commit: PartitionCommit, *, sql_rows: int, sql_engine: str
) -> CheckOutcome:
    """SQL's count of the table at this partition's commit = the export's items."""
    where = f"table {spec.dynamodb_table!r}, partition {partition_key}"
    export_items = int(commit.summary.get(EXPORT_ITEMS, -1))
    metadata = {"sql_rows": sql_rows, "export_items": export_items, "snapshot_id": commit.snapshot_id}
    if sql_rows != export_items:
        return CheckOutcome(
            False,
            f"{where}: {sql_engine} counts {sql_rows} rows, the export had {export_items} items",
            metadata=metadata,
        )
    return CheckOutcome(
        True,
        f"{where}: {sql_engine} counts {sql_rows} rows at snapshot {commit.snapshot_id} = the export's items.",
        metadata=metadata,
    )


def iceberg_freshness(spec: TableSpec, table: Table | None, *, now: dt.datetime) -> tuple[str | None, CheckOutcome]:
    commits = partition_commits(table) if table is not None else []
    if not commits:
        return None, freshness(spec, None, now=now)
    newest = max(commits, key=lambda c: c.partition_key)
    recorded = newest.summary.get(EXPORT_TIME)
    export_time = dt.datetime.fromisoformat(recorded) if recorded else None
    return newest.partition_key, freshness(spec, newest.partition_key, now=now, export_time=export_time)


__all__ = ["changes_add_up", "commit_of", "iceberg_freshness", "iceberg_row_parity", "sql_count_of_commit"]
