"""Change capture for one table of the tables file: the stream, the Iceberg table, the bootstrap, wired.

What the command line (``offload-assets cdc run / status``) and the Dagster asset and sensor share:
:func:`open_table_capture` checks the table can feed change capture (stream on, a view type with
the new image) and builds the source (boto3 ``dynamodbstreams``), the target (the table's Iceberg
table, created by the first bootstrap if it does not exist yet) and the settings from the spec;
:func:`run_table_capture` applies what waits; :func:`capture_status` says where it stands.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyiceberg.exceptions import NoSuchIcebergTableError, NoSuchPropertyException

from offload_assets.cdc.capture import (
    COMMITTED_AT_PROPERTY,
    POSITION_PROPERTY,
    CaptureSettings,
    NotBootstrapped,
    waiting_lag,
)
from offload_assets.cdc.catch_up import CaptureRun, FullSnapshot, apply_waiting
from offload_assets.cdc.iceberg_target import IcebergTarget
from offload_assets.cdc.native_snapshot import native_export_snapshot
from offload_assets.cdc.positions import CapturePosition
from offload_assets.cdc.reader import ContinuityLost
from offload_assets.cdc.requirements import stream_problem
from offload_assets.cdc.source import Boto3StreamSource
from offload_assets.export.incremental import key_names_of
from offload_assets.iceberg.catalog import create_table, load_table
from offload_assets.iceberg.publish import iceberg_location
from offload_assets.iceberg.schema import key_columns_of
from offload_assets.table_spec import TableSpec


class ChangeCaptureRefused(ValueError):
    """The table cannot feed change capture as configured; the message says what to change."""


@dataclass
class TableCapture:
    spec: TableSpec
    source: Boto3StreamSource
    target: IcebergTarget
    settings: CaptureSettings
    take_snapshot: Callable[[], FullSnapshot]


def open_table_capture(spec: TableSpec, *, dynamodb: Any, streams: Any, s3: Any, catalog: Any) -> TableCapture:
    """Source, target and settings of ``spec``'s change capture; refuses a table whose stream cannot feed it."""
    if spec.change_capture != "streams":
        raise ChangeCaptureRefused(
            f"{spec.dynamodb_table}: change_capture is {spec.change_capture!r}; set change_capture: streams "
            "(and table_format: iceberg) in the tables file"
        )
    described = dynamodb.describe_table(TableName=spec.dynamodb_table)["Table"]
    problem = stream_problem(described)
    if problem:
        raise ChangeCaptureRefused(problem)
    key_names = key_names_of(described)
    where = iceberg_location(spec)

    def create(schema):
        return create_table(catalog, where, schema, key_columns_of(schema, key_names))

    try:
        table = load_table(catalog, where)
    except (NoSuchPropertyException, NoSuchIcebergTableError) as err:
        raise ChangeCaptureRefused(
            f"{spec.dynamodb_table}: the Glue table {where.database}.{where.table} is not an Iceberg table ({err}); "
            "change capture applies to the table table_format: iceberg publishes"
        ) from None
    return TableCapture(
        spec=spec,
        source=Boto3StreamSource(streams),
        target=IcebergTarget(table, create=create),
        settings=CaptureSettings(
            table_name=spec.dynamodb_table, key_names=key_names, max_records=spec.change_capture_max_records
        ),
        take_snapshot=lambda: native_export_snapshot(dynamodb, s3, spec),
    )


def run_table_capture(capture: TableCapture, **kwargs: Any) -> CaptureRun:
    """Apply what waits (bootstrap and re-bootstraps included); ``kwargs`` go to :func:`apply_waiting`."""
    return apply_waiting(
        capture.source, capture.target, capture.settings, take_snapshot=capture.take_snapshot, **kwargs
    )


def capture_status(capture: TableCapture, now: dt.datetime | None = None) -> dict:
    """Lag, position and last commit of the table's change capture (read only: nothing is applied)."""
    now = now or dt.datetime.now(dt.UTC)
    out: dict[str, Any] = {
        "table": capture.spec.dynamodb_table,
        "iceberg_table": ".".join(iceberg_location(capture.spec).identifier),
    }
    summaries = capture.target.summaries()
    position = next((s for s in summaries if POSITION_PROPERTY in s), None)
    last = next((s for s in summaries if COMMITTED_AT_PROPERTY in s), None)
    out["last_commit"] = (
        {
            k.removeprefix("offload.cdc."): v
            for k, v in last.items()
            if k.startswith("offload.cdc.") and k != POSITION_PROPERTY
        }
        if last
        else None
    )
    if position is not None:
        pos = CapturePosition.from_json(position[POSITION_PROPERTY])
        out["position"] = {"stream_arn": pos.stream_arn, "shards": pos.shards, "finished": sorted(pos.finished)}
    else:
        out["position"] = None
    try:
        lag = waiting_lag(capture.source, capture.target, capture.settings, now=lambda: now)
        out["state"] = "caught up" if lag is None else "changes waiting"
        out["lag_seconds"] = 0.0 if lag is None else round(lag, 3)
    except NotBootstrapped as err:
        out.update(state="not bootstrapped", lag_seconds=None, detail=str(err))
    except ContinuityLost as err:
        out.update(state=f"continuity lost ({err.reason})", lag_seconds=None, detail=str(err))
    return out


def enable_stream(dynamodb: Any, table_name: str) -> bool:
    """Turn the table's stream on with NEW_AND_OLD_IMAGES if it is off; True if it was turned on now."""
    described = dynamodb.describe_table(TableName=table_name)["Table"]
    if (described.get("StreamSpecification") or {}).get("StreamEnabled"):
        return False
    dynamodb.update_table(
        TableName=table_name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    return True


def bootstrap_from_export(capture: TableCapture, export_start: dt.datetime, origin: str) -> dict:
    """Bootstrap on the table's current Iceberg state, taken from an export that started at ``export_start``.

    For a table just published from a partition (the demo): the partition's content is the table as
    read from ``export_start`` on, so the stream is applied from ``export_start`` minus the overlap.
    ONE commit, no data rewritten: only the position lands.
    """
    from offload_assets.cdc.capture import bootstrap_properties

    properties = bootstrap_properties(capture.source, capture.settings, export_start, f"bootstrap from {origin}")
    return capture.target.commit(None, None, properties)
