"""What the asset pages show about a Parquet snapshot: one definition for every engine."""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg
import pyarrow as pa

from offload_assets.catalog.glue_types import arrow_to_glue
from offload_assets.conversion.options import ORIGINAL_NAME_KEY
from offload_assets.snapshot.build import SnapshotManifest
from offload_assets.snapshot.checks import WARN, CheckOutcome


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """Columns with their Glue types; the description is the DynamoDB attribute name."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=arrow_to_glue(f.type),
                description=(f.metadata or {}).get(ORIGINAL_NAME_KEY, b"").decode() or None,
            )
            for f in schema
        ]
    )


def snapshot_metadata(snap: SnapshotManifest, started: float) -> dict[str, Any]:
    """The Parquet snapshot asset's metadata; ``started`` is the ``time.monotonic()`` of the step's start."""
    return {
        "dagster/row_count": snap.rows,
        "dagster/column_schema": column_schema(snap.schema),
        "export_id": snap.export_id,
        "s3_uri": snap.s3_uri,
        "files": len(snap.files),
        "bytes": snap.total_bytes,
        "rescued_values": sum(snap.rescued_counts.values()),
        "rescued_counts": dg.MetadataValue.json(snap.rescued_counts),
        "duration_seconds": round(time.monotonic() - started, 3),
        "export_item_count": snap.extra.get("export_item_count"),
        "input_bytes": snap.extra.get("input_bytes"),
        "quarantined_lines": snap.extra.get("quarantined_lines"),
    }


def check_result(outcome: CheckOutcome, **extra: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if outcome.severity == WARN else dg.AssetCheckSeverity.ERROR,
        description=outcome.description,
        metadata=_check_metadata({**outcome.metadata, **extra}),
    )


def _check_metadata(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = (
            dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
            if isinstance(value, (dict, list, tuple))
            else value
        )
    return out
