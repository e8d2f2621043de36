"""Where a table's partitions start when its entry sets no ``partitions_start``."""

import datetime as dt
import json
from pathlib import Path

import pytest

from offload_assets.defs.table_assets import partitions_for
from offload_assets.partitions.first_seen import FirstSeenDates, current_day, default_partitions_start
from offload_assets.table_spec import load_tables_file, parse_tables
from offload_assets_tests.conftest import write_tables_file


def test_a_scan_table_starts_the_day_it_is_added_and_stays_there(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(tmp_path / "home"))
    tables = write_tables_file(tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "first-seen"})
    spec = load_tables_file(tables).table("Reviews")
    today = current_day("UTC", 0)
    assert spec.partitions_start == today
    partitions = partitions_for(spec)
    assert partitions.get_partition_keys() == [today.isoformat()]  # one partition, today's: "100% filled" once run
    recorded = json.loads((tmp_path / "home" / "tables_first_seen.json").read_text())
    assert recorded == {"dynamodb-exports.reviews": today.isoformat()}

    # later days keep the recorded start (here: the file says the table was added 10 days ago)
    added = today - dt.timedelta(days=10)
    (tmp_path / "home" / "tables_first_seen.json").write_text(
        json.dumps({"dynamodb-exports.reviews": added.isoformat()})
    )
    later = load_tables_file(tables).table("Reviews")
    assert later.partitions_start == added and len(partitions_for(later).get_partition_keys()) == 11


def test_native_and_incremental_tables_start_within_the_pitr_window(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(tmp_path / "home"))
    tables = write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Native", "export_method": "native"},
        {"dynamodb_table": "Incremental", "export_method": "incremental"},
        {"dynamodb_table": "Pinned", "partitions_start": "2026-06-01"},
        defaults={"s3_bucket": "first-seen"},
    )
    loaded = load_tables_file(tables)
    today = current_day("UTC", 0)
    assert loaded.table("Native").partitions_start == today - dt.timedelta(days=35)
    assert loaded.table("Incremental").partitions_start == today - dt.timedelta(days=35)
    assert loaded.table("Pinned").partitions_start == dt.date(2026, 6, 1)  # the tables file's date wins
    recorded = json.loads((tmp_path / "home" / "tables_first_seen.json").read_text())
    assert set(recorded) == {"dynamodb-exports.native", "dynamodb-exports.incremental"}  # not the pinned one


@pytest.mark.parametrize(
    ("tz", "hour", "now", "day"),
    [
        ("UTC", 0, "2026-12-03T13:00:00+00:00", "2026-12-03"),
        ("Europe/Paris", 3, "2026-12-03T01:30:00+00:00", "2026-12-02"),  # 02:30 in Paris: before the export hour
        ("America/New_York", 0, "2026-12-03T02:00:00+00:00", "2026-12-02"),  # still Dec 2 in New York
    ],
)
def test_the_day_added_is_the_tables_current_partition(tz, hour, now, day):
    """Recording the current partition's day (not the machine's date) keeps today's partition inside the range."""
    assert current_day(tz, hour, dt.datetime.fromisoformat(now)) == dt.date.fromisoformat(day)
    spec = parse_tables(
        {"tables": [{"dynamodb_table": "Reviews", "s3_bucket": "first-seen", "timezone": tz, "export_hour": hour}]},
        Path("t"),
    ).tables[0]
    assert partitions_for(spec).get_last_partition_key() == spec.partitions_start.isoformat()


def test_an_unwritable_home_gives_the_day_without_recording_it(tmp_path):
    home = tmp_path / "home"
    home.write_text("a file, not a directory")
    day = dt.date(2026, 12, 3)
    assert FirstSeenDates(home).resolve({"db.t": day}) == {"db.t": day}
    assert default_partitions_start("scan", day) == day


def test_a_day_recorded_under_a_later_export_hour_never_hides_the_current_partition(tmp_path, monkeypatch):
    """Recorded at 06:00 UTC with export_hour 0 (day D); export_hour then moved to 18: the current
    partition is D-1, so the start is D-1 too, and an export made now is inside the range."""
    from offload_assets.export.discovery import partition_for_export_time

    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(tmp_path / "home"))
    now = dt.datetime.now(dt.UTC)
    hour = (now.hour + 12) % 24  # the current partition is yesterday's whenever now is before noon
    current = current_day("UTC", hour)
    (tmp_path / "home").mkdir()
    recorded = current + dt.timedelta(days=1)
    (tmp_path / "home" / "tables_first_seen.json").write_text(
        json.dumps({"dynamodb-exports.reviews": recorded.isoformat()})
    )
    tables = write_tables_file(
        tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "first-seen", "export_hour": hour}
    )
    spec = load_tables_file(tables).table("Reviews")
    assert spec.partitions_start == current
    keys = partitions_for(spec).get_partition_keys()
    assert keys == [current.isoformat()]
    assert partition_for_export_time(spec, now) in keys
    # the record is left as it was: only the start is bounded by the current day
    assert json.loads((tmp_path / "home" / "tables_first_seen.json").read_text()) == {
        "dynamodb-exports.reviews": recorded.isoformat()
    }


def test_the_suite_keeps_first_seen_days_out_of_the_checkout(tmp_path):
    """A test that loads a tables file without choosing a home records the day in the session's
    temporary ``$OFFLOAD_ASSETS_HOME`` (conftest), never in the checkout's ``.offload_assets/``."""
    from offload_assets.local.emulator import default_state_dir

    checkout = Path(__file__).resolve().parents[2]
    home = default_state_dir()
    assert not home.is_relative_to(checkout)
    tables = write_tables_file(tmp_path / "tables.yaml", {"dynamodb_table": "Homeless", "s3_bucket": "first-seen"})
    load_tables_file(tables).table("Homeless")
    assert "dynamodb-exports.homeless" in json.loads((home / "tables_first_seen.json").read_text())
