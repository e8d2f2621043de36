"""Finding exports started outside Dagster: partition mapping, cursor, S3 discovery, adoption."""

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.defs.table_assets import partitions_for
from offload_assets.export.discovery import (
    ExportCursor,
    SummaryObject,
    adopt_export,
    discover_exports,
    export_data_bytes,
    parse_summary_key,
    partition_for_export_time,
    table_name_from_arn,
)
from offload_assets.export.layout import iter_export_lines, latest_completed_export, list_export_ids
from offload_assets_tests.defs.conftest import drop_export, make_spec, reviews

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("hour", "tz", "instant", "expected"),
    [
        (0, "UTC", "2026-03-10T00:00:00+00:00", "2026-03-10"),  # the nightly export, on the hour
        (0, "UTC", "2026-03-10T00:07:31+00:00", "2026-03-10"),  # a few minutes later
        (0, "UTC", "2026-03-09T23:59:59+00:00", "2026-03-09"),  # just before midnight: still yesterday's window
        (3, "Europe/Paris", "2026-03-10T02:00:00+00:00", "2026-03-10"),  # 03:00 in Paris (UTC+1)
        (3, "Europe/Paris", "2026-03-10T01:59:00+00:00", "2026-03-09"),  # 02:59 in Paris: before the export hour
        (3, "Europe/Paris", "2026-07-10T01:00:00+00:00", "2026-07-10"),  # summer time: 03:00 is 01:00 UTC
        (22, "America/New_York", "2026-03-11T02:30:00+00:00", "2026-03-10"),  # 22:30 the evening before in New York
    ],
)
def test_export_time_maps_to_the_partition_whose_window_contains_it(hour, tz, instant, expected):
    spec = make_spec(export_hour=hour, timezone=tz)
    assert partition_for_export_time(spec, dt.datetime.fromisoformat(instant)) == expected


@settings(max_examples=60, deadline=None)
@given(
    instant=st.datetimes(
        min_value=dt.datetime(2026, 1, 2), max_value=dt.datetime(2027, 12, 30), timezones=st.just(UTC)
    ),
    hour=st.integers(0, 23),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]),
)
def test_partition_mapping_agrees_with_dagsters_partition_windows(instant, hour, tz):
    spec = make_spec(export_hour=hour, timezone=tz)
    key = partition_for_export_time(spec, instant)
    window = partitions_for(spec).time_window_for_partition_key(key)
    assert window.start <= instant < window.end


def test_summary_keys_arns_and_cursor_round_trip():
    assert parse_summary_key("a/b/AWSDynamoDB/0176-abc/manifest-summary.json") == ("a/b", "0176-abc")
    assert parse_summary_key("AWSDynamoDB/x/manifest-summary.json") == ("", "x")
    with pytest.raises(ValueError, match="not an export's manifest-summary.json"):
        parse_summary_key("a/bAWSDynamoDB/x/manifest-summary.json")
    assert table_name_from_arn("arn:aws:dynamodb:eu-west-1:1:table/Reviews/export/0176-abc") == "Reviews"
    assert table_name_from_arn(None) is None

    fresh = ExportCursor.from_json(None, now=NOW)
    assert fresh.horizon == NOW - dt.timedelta(hours=48) and fresh.seen == {}
    old = SummaryObject("b", "p/AWSDynamoDB/old/manifest-summary.json", NOW - dt.timedelta(days=3))
    new = SummaryObject("b", "p/AWSDynamoDB/new/manifest-summary.json", NOW - dt.timedelta(minutes=5))
    late = SummaryObject("b", "p/AWSDynamoDB/late/manifest-summary.json", NOW - dt.timedelta(hours=30))
    assert not fresh.is_new(old) and fresh.is_new(new)

    advanced = fresh.advanced([new], pending=[late])
    assert not advanced.is_new(new)  # handled
    assert advanced.is_new(late)  # still waiting: the horizon did not pass it
    assert advanced.horizon == late.last_modified
    again = ExportCursor.from_json(advanced.to_json(), now=NOW)
    assert again == advanced and json.loads(advanced.to_json())["seen"] == {"new": new.last_modified.isoformat()}
    # Ids far behind the newest one are forgotten: the cursor stays small.
    much_later = SummaryObject("b", "p/AWSDynamoDB/much-later/manifest-summary.json", NOW + dt.timedelta(days=5))
    assert set(again.advanced([much_later]).seen) == {"much-later"}
    with pytest.raises(ValueError, match="reset the sensor's cursor"):
        ExportCursor.from_json("{not json", now=NOW)


# --------------------------------------------------------------------------- against the emulator


def test_only_complete_exports_of_the_table_are_found(aws):
    s3 = aws.client("s3")
    spec = make_spec(external_export_prefixes=["s3://backup-bucket/dynamodb/reviews"])
    landing = spec.export_prefix_root
    complete = drop_export(
        s3, bucket=spec.s3_bucket, prefix=landing, items=reviews(40), export_time=NOW - dt.timedelta(hours=2)
    )
    drop_export(s3, bucket=spec.s3_bucket, prefix=landing, items=reviews(40), complete=False)  # still being written
    other = drop_export(s3, bucket=spec.s3_bucket, prefix=landing, items=reviews(5), table_name="Orders")
    incremental = drop_export(
        s3, bucket=spec.s3_bucket, prefix=landing, items=reviews(5), export_type="INCREMENTAL_EXPORT"
    )
    external = drop_export(
        s3, bucket="backup-bucket", prefix="dynamodb/reviews", items=reviews(25), export_time=NOW - dt.timedelta(days=3)
    )
    too_early = drop_export(
        s3,
        bucket="backup-bucket",
        prefix="dynamodb/reviews",
        items=reviews(3),
        export_time=dt.datetime(2025, 12, 30, tzinfo=UTC),
    )

    found = discover_exports(s3, spec, ExportCursor.from_json(None, now=NOW), now=NOW)
    assert {f.export_id: f.partition_key for f in found.found} == {complete: "2026-03-10", external: "2026-03-07"}
    reasons = {s.summary.export_id: s.reason for s in found.skipped}
    assert set(reasons) == {other, incremental, too_early}
    assert "table 'Orders'" in reasons[other] and "INCREMENTAL_EXPORT" in reasons[incremental]
    assert "before partitions_start" in reasons[too_early]
    assert found.later == []

    cursor = ExportCursor.from_json(None, now=NOW).advanced(
        [f.summary for f in found.found] + [s.summary for s in found.skipped]
    )
    assert discover_exports(s3, spec, cursor, now=NOW).found == []  # a repeated look finds nothing new


def test_adoption_moves_landing_exports_and_copies_external_ones(aws):
    s3 = aws.client("s3")
    spec = make_spec(external_export_prefixes=["s3://backup-bucket/dynamodb/reviews"])
    items = reviews(30)
    landing_id = drop_export(
        s3,
        bucket=spec.s3_bucket,
        prefix=spec.export_prefix_root,
        items=items,
        files=2,
        export_time=NOW - dt.timedelta(hours=1),
    )
    external_id = drop_export(
        s3,
        bucket="backup-bucket",
        prefix="dynamodb/reviews",
        items=reviews(12),
        export_time=dt.datetime(2026, 3, 8, 5, tzinfo=UTC),
    )
    # An older export of 2026-03-10 made earlier: the adopted one replaces it, as a re-run would.
    previous = drop_export(s3, bucket=spec.s3_bucket, prefix=spec.export_prefix("2026-03-10"), items=reviews(3))
    discovery = discover_exports(s3, spec, ExportCursor.from_json(None, now=NOW), now=NOW)
    by_id = {f.export_id: f for f in discovery.found}
    assert by_id[previous].in_partition_directory and by_id[previous].partition_key == "2026-03-10"

    adopted = adopt_export(s3, spec, by_id[landing_id])
    assert adopted.export_prefix == spec.export_prefix("2026-03-10") and adopted.item_count == 30
    assert adopted.summary["adoptedFrom"].startswith(
        f"s3://{spec.s3_bucket}/{spec.export_prefix_root}/AWSDynamoDB/{landing_id}/"
    )
    assert adopted.summary["exportArn"].endswith(landing_id)  # the export's own facts are kept
    assert (
        list_export_ids(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix_root) == []
    )  # moved out of the landing area
    assert list_export_ids(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix("2026-03-10")) == [landing_id]
    for key in [f.key for f in adopted.data_files] + [f"{adopted.export_dir}/manifest-summary.json"]:
        assert s3.head_object(Bucket=spec.s3_bucket, Key=key)["ServerSideEncryption"] == "AES256"  # written encrypted
    lines = [json.loads(line)["Item"]["User"]["S"] for _, line in iter_export_lines(s3, adopted)]
    assert sorted(lines) == sorted(i["User"] for i in items)
    assert export_data_bytes(s3, adopted) > 0

    copied = adopt_export(s3, spec, by_id[external_id])
    assert copied.export_prefix == spec.export_prefix("2026-03-08") and copied.item_count == 12
    assert list_export_ids(s3, bucket="backup-bucket", export_prefix="dynamodb/reviews") == [
        external_id
    ]  # left in place
    assert (
        latest_completed_export(s3, bucket=spec.s3_bucket, export_prefix=spec.export_prefix("2026-03-08")).export_id
        == external_id
    )
    # Adopting again is harmless (a tick that died after copying).
    assert adopt_export(s3, spec, by_id[external_id]).export_id == external_id


def test_half_written_export_is_found_once_it_completes(aws):
    s3 = aws.client("s3")
    spec = make_spec()
    export_id = drop_export(
        s3, bucket=spec.s3_bucket, prefix=spec.export_prefix_root, items=reviews(10), complete=False
    )
    cursor = ExportCursor.from_json(None, now=NOW)
    first = discover_exports(s3, spec, cursor, now=NOW)
    assert first.found == [] and first.skipped == []
    drop_export(
        s3,
        bucket=spec.s3_bucket,
        prefix=spec.export_prefix_root,
        items=reviews(10),
        export_id=export_id,
        export_time=NOW - dt.timedelta(minutes=3),
    )
    second = discover_exports(s3, spec, cursor.advanced([s.summary for s in first.skipped], first.later), now=NOW)
    assert [f.export_id for f in second.found] == [export_id]
    assert second.found[0].manifest.item_count == 10
