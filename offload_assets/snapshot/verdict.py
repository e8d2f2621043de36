"""The blocking checks' verdict, written into the snapshot it judges: ``<run dir>/_checks.json``.

Only a snapshot whose blocking checks (``row_count_parity``, ``unique_primary_keys``) both passed
may be published (:mod:`offload_assets.snapshot.publish`), whoever publishes it: the catalog step of
the run that built it, or a later catalog-only run. A failure is final: a snapshot that failed a
blocking check once is never published, even if a later re-check would pass (re-convert instead).
A snapshot with no verdict (its run died during the checks) is checked by the publisher first.

The file is updated by compare-and-swap, so the checks op and a publisher checking at the same
time both keep their results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from offload_assets.aws.s3_conditional import put_json_if, read_json
from offload_assets.snapshot.build import SnapshotManifest, key_attributes
from offload_assets.snapshot.checks import (
    ERROR,
    CheckOutcome,
    row_count_parity,
    snapshot_parquet_rows,
    unique_primary_keys,
)
from offload_assets.table_spec import TableSpec

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_s3 import S3Client

CHECKS_FILE = "_checks.json"
BLOCKING_CHECKS = ("row_count_parity", "unique_primary_keys")
_ATTEMPTS = 10

#: What a publisher calls on a complete snapshot that has no verdict yet.
SnapshotVerifier = Callable[[SnapshotManifest], "CheckVerdict"]


@dataclass(frozen=True)
class CheckVerdict:
    run_dir: str
    checks: dict[str, dict[str, Any]]  # check name -> {"passed", "severity", "description", "checked_at"}

    @property
    def failed(self) -> list[str]:
        """Blocking checks that failed (final: the snapshot is never publishable)."""
        return [n for n in BLOCKING_CHECKS if n in self.checks and self._failed(self.checks[n])]

    @property
    def missing(self) -> list[str]:
        """Blocking checks with no decisive result yet (not run, or could not judge)."""
        return [n for n in BLOCKING_CHECKS if n not in self.checks or not self.checks[n]["passed"]]

    @property
    def publishable(self) -> bool:
        return not self.missing

    @staticmethod
    def _failed(result: dict[str, Any]) -> bool:
        return not result["passed"] and result.get("severity", ERROR) == ERROR

    def describe(self) -> str:
        if self.failed:
            return "failed " + "; ".join(f"{n}: {self.checks[n]['description']}" for n in self.failed)
        if self.missing:
            return "not checked yet (" + ", ".join(self.missing) + ")"
        return "passed " + ", ".join(BLOCKING_CHECKS)


def verdict_key(snapshot: SnapshotManifest) -> str:
    return f"{snapshot.run_dir}/{CHECKS_FILE}"


def read_check_verdict(s3: S3Client, snapshot: SnapshotManifest) -> CheckVerdict | None:
    found = read_json(s3, bucket=snapshot.bucket, key=verdict_key(snapshot))
    return CheckVerdict(snapshot.run_dir, dict(found.body.get("checks", {}))) if found else None


def record_check_results(s3: S3Client, snapshot: SnapshotManifest, outcomes: dict[str, CheckOutcome]) -> CheckVerdict:
    """Merge these check results into the snapshot's verdict; a recorded blocking failure is never overwritten."""
    now = dt.datetime.now(dt.UTC).isoformat()
    new = {
        name: {"passed": o.passed, "severity": o.severity, "description": o.description[:1000], "checked_at": now}
        for name, o in outcomes.items()
    }
    for _ in range(_ATTEMPTS):
        current = read_json(s3, bucket=snapshot.bucket, key=verdict_key(snapshot))
        checks = dict(current.body.get("checks", {})) if current else {}
        for name, result in new.items():
            if not (name in checks and CheckVerdict._failed(checks[name])):
                checks[name] = result
        body = {"run_dir": snapshot.run_dir, "export_id": snapshot.export_id, "checks": checks}
        if put_json_if(s3, bucket=snapshot.bucket, key=verdict_key(snapshot), body=body, expected=current):
            return CheckVerdict(snapshot.run_dir, checks)
    raise RuntimeError(f"{snapshot.s3_uri}{CHECKS_FILE}: kept changing while recording check results")


def export_items_of(snapshot: SnapshotManifest) -> int | None:
    recorded = snapshot.extra.get("export_item_count")
    return int(recorded) if recorded is not None else None


def run_blocking_checks(
    s3: S3Client, filesystem: Any, dynamodb: DynamoDBClient, spec: TableSpec, snapshot: SnapshotManifest
) -> CheckVerdict:
    """Run ``row_count_parity`` and ``unique_primary_keys`` on ``snapshot`` and record their verdict."""
    present = snapshot_parquet_rows(filesystem, snapshot)
    outcomes = {
        "row_count_parity": row_count_parity(spec, snapshot, present, export_items=export_items_of(snapshot)),
        "unique_primary_keys": unique_primary_keys(
            spec, filesystem, snapshot, key_attributes(dynamodb, spec.dynamodb_table), present
        ),
    }
    return record_check_results(s3, snapshot, outcomes)


def blocking_checks_verifier(
    s3: S3Client, filesystem: Any, dynamodb: DynamoDBClient, spec: TableSpec
) -> SnapshotVerifier:
    """A :data:`SnapshotVerifier` for publishers (the catalog step, catalog-only runs)."""
    return lambda snapshot: run_blocking_checks(s3, filesystem, dynamodb, spec, snapshot)
