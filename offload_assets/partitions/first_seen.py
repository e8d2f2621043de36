"""The day each table was added: the default ``partitions_start`` of a table whose entry sets none.

A table's partitions should begin where its data can begin, so the UI's partition plots and its
"filled" share show real history (a fixed far-off start made every new scan table look 0% filled
for ever). What "the day it was added" means, concretely: the first day this project loaded the
tables file with that table in it (the day of its current partition: today in its ``timezone``,
once past its ``export_hour``), recorded once in ``$OFFLOAD_ASSETS_HOME/tables_first_seen.json``
(``{"<database>.<table>": "YYYY-MM-DD"}``) and never moved afterwards. Then:

- ``scan`` tables start that day: a scan can only ever produce the current day's partition;
- ``native`` and ``incremental`` tables start :data:`PITR_DAYS` days earlier: point-in-time
  recovery keeps 35 days, so those days can still be exported (backfilled).

The recorded day never puts the start after the table's current day: moving ``export_hour``
later (or ``timezone`` west) can make today's recorded day tomorrow's, and the start is then the
current day instead, so the current partition (and any export in it) stays inside the range.

A deployment whose home directory does not persist (a container) should set ``partitions_start``
in the tables file instead: the day recorded here would be the container's first day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from pathlib import Path

#: Days of point-in-time recovery DynamoDB keeps at most: how far back a native export can go.
PITR_DAYS = 35
FIRST_SEEN_FILE = "tables_first_seen.json"


def default_partitions_start(export_method: str, first_seen: dt.date) -> dt.date:
    """A table's first partition when its entry sets none (see the module's docstring)."""
    if export_method in ("native", "incremental"):
        return first_seen - dt.timedelta(days=PITR_DAYS)
    return first_seen


class FirstSeenDates:
    """``$OFFLOAD_ASSETS_HOME/tables_first_seen.json``: the first day each table was loaded.

    Reading a table not recorded yet records its current day (under a file lock, written atomically, so
    the code server and a command loading at the same time agree). A home directory that cannot
    be written gives that day without recording it.
    """

    def __init__(self, home: str | Path) -> None:
        self.path = Path(home) / FIRST_SEEN_FILE

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent, unreadable or not JSON: nothing recorded
            return {}
        return data if isinstance(data, dict) else {}

    def resolve(self, today: dict[str, dt.date]) -> dict[str, dt.date]:
        """The first-seen day of each table (``today``: table -> its current day), recording
        ``today[table]`` for the ones not seen before."""
        known = self._read()
        new = {t: d.isoformat() for t, d in today.items() if t not in known}
        if new:
            try:
                known = self._record(new)
            except OSError:
                known = {**known, **new}
        return {t: _parse_day(known.get(t), d) for t, d in today.items()}

    def _record(self, new: dict[str, str]) -> dict[str, str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = self._read()  # again, under the lock: another process may have recorded some
            added = {t: d for t, d in new.items() if t not in known}
            if added:
                known = {**known, **added}
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tables_first_seen.")
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        json.dump(dict(sorted(known.items())), f, indent=1)
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                    raise
            return known


def current_day(timezone: str, export_hour: int, now: dt.datetime | None = None) -> dt.date:
    """The day of the table's current partition: today in its time zone, once past its export hour."""
    import zoneinfo

    local = (now or dt.datetime.now(dt.UTC)).astimezone(zoneinfo.ZoneInfo(timezone))
    return (local - dt.timedelta(hours=export_hour)).date()


def _parse_day(text: str | None, fallback: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(text) if text else fallback
    except ValueError:
        return fallback
