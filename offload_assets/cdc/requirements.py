"""What a DynamoDB table must have for change capture, checked against its DescribeTable answer."""

from __future__ import annotations

from typing import Any

from offload_assets.cdc.changes import VIEW_TYPES_WITH_NEW_IMAGE


def stream_problem(table: dict[str, Any]) -> str | None:
    """Why the table's stream cannot feed change capture (``None``: it can). ``table``: DescribeTable's ``Table``."""
    name = table.get("TableName", "?")
    spec = table.get("StreamSpecification") or {}
    turn_on = (
        f"aws dynamodb update-table --table-name {name} "
        "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
    )
    if not spec.get("StreamEnabled"):
        return f"{name}: its DynamoDB stream is off; change capture needs it on with NEW_AND_OLD_IMAGES: {turn_on}"
    view = spec.get("StreamViewType")
    if view not in VIEW_TYPES_WITH_NEW_IMAGE:
        return (
            f"{name}: its stream's view type is {view}, which lacks the item after the write; change capture needs "
            f"{' or '.join(VIEW_TYPES_WITH_NEW_IMAGE)} (disable the stream, then: {turn_on})"
        )
    return None
