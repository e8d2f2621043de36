"""Athena partition projection on ``ddb_export_timestamp`` (opt-in: ``partition_projection: true``).

With projection, Athena computes partition locations from table properties instead of asking
Glue for partitions: ``<parquet root>/ddb_export_timestamp=<date>/`` for every date in range.
It then reads every Parquet file below that directory.

The trade-off, and why it is off by default: a snapshot is written to a run-unique directory
*below* the date directory (``.../ddb_export_timestamp=<date>/run-<time>-<id>/``) and published
by pointing the Glue partition at it. A template cannot name the run directory (it is not a
function of the date), so projection can only name the date directory, and the atomic switch
is lost: while a day is being (re)converted, Athena under projection reads the files written so
far next to the published run's, until the catalog step deletes the older run. Use projection
for tables with very many snapshots where partition lookup dominates, and schedule queries
away from the nightly run; keep the default when every query must see exactly one snapshot
per day. Glue partitions are still registered either way (the local engine, retention and
tools that ignore projection rely on them), and ``<table>_latest`` filters by date as before.

The local engine honours projection the same way (see :func:`projected_locations`), so the
trade-off can be seen locally before it is met on Athena.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from offload_assets.table_spec import PARTITION_COLUMN, TableSpec

PARAM_ENABLED = "projection.enabled"
PARAM_TEMPLATE = "storage.location.template"
_NOW = re.compile(r"^NOW(?:\s*([+-])\s*(\d+)\s*(DAY|DAYS|WEEK|WEEKS|MONTH|MONTHS|YEAR|YEARS))?$", re.IGNORECASE)
_JAVA_TO_STRPTIME = {"yyyy-MM-dd": "%Y-%m-%d", "yyyyMMdd": "%Y%m%d", "yyyy/MM/dd": "%Y/%m/%d"}


class ProjectionError(ValueError):
    """A table's projection properties are ones this project cannot evaluate (the message says which)."""


def projection_parameters(spec: TableSpec) -> dict[str, str]:
    """Glue table properties for a daily date projection of ``ddb_export_timestamp``.

    The range ends at ``NOW+1DAYS``: partition dates are local dates of the export hour in the
    table's time zone, which can be a day ahead of the UTC date Athena evaluates NOW in.
    """
    key = f"projection.{PARTITION_COLUMN}"
    return {
        PARAM_ENABLED: "true",
        f"{key}.type": "date",
        f"{key}.format": "yyyy-MM-dd",
        f"{key}.range": f"{spec.partitions_start.isoformat()},NOW+1DAYS",
        f"{key}.interval": "1",
        f"{key}.interval.unit": "DAYS",
        PARAM_TEMPLATE: f"s3://{spec.s3_bucket}/{spec.parquet_root}/{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/",
    }


def _shift(day: dt.date, sign: str, amount: int, unit: str) -> dt.date:
    n = amount if sign == "+" else -amount
    unit = unit.upper().rstrip("S")
    if unit == "DAY":
        return day + dt.timedelta(days=n)
    if unit == "WEEK":
        return day + dt.timedelta(weeks=n)
    months = day.month - 1 + (n * 12 if unit == "YEAR" else n)
    year, month = day.year + months // 12, months % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _range_end(text: str, fmt: str, today: dt.date, where: str) -> dt.date:
    m = _NOW.match(text.strip())
    if m:
        return _shift(today, m.group(1), int(m.group(2)), m.group(3)) if m.group(1) else today
    try:
        return dt.datetime.strptime(text.strip(), fmt).date()
    except ValueError:
        raise ProjectionError(
            f"{where}: projection range end {text!r} is neither a date in the format nor NOW[+-N UNIT]"
        ) from None


@dataclass(frozen=True)
class DateProjection:
    column: str
    first: dt.date
    last: dt.date
    strptime_format: str
    template: str

    def location(self, value: str) -> str:
        return self.template.replace(f"${{{self.column}}}", value)

    def accepts(self, value: str) -> bool:
        try:
            day = dt.datetime.strptime(value, self.strptime_format).date()
        except ValueError:
            return False
        return self.first <= day <= self.last and day.strftime(self.strptime_format) == value


def parse_projection(
    parameters: dict[str, str], partition_keys: tuple[str, ...], *, where: str, today: dt.date | None = None
) -> DateProjection | None:
    """The table's projection if enabled (only the daily date projection this project writes is supported)."""
    if parameters.get(PARAM_ENABLED, "false").lower() != "true":
        return None
    if len(partition_keys) != 1:
        raise ProjectionError(f"{where}: projection over {len(partition_keys)} partition keys is not supported locally")
    column = partition_keys[0]
    key = f"projection.{column}"
    if parameters.get(f"{key}.type") != "date":
        raise ProjectionError(
            f"{where}: projection type {parameters.get(f'{key}.type')!r} of {column} is not supported locally (only 'date')"
        )
    java_format = parameters.get(f"{key}.format", "")
    fmt = _JAVA_TO_STRPTIME.get(java_format)
    if fmt is None:
        raise ProjectionError(f"{where}: projection date format {java_format!r} is not supported locally")
    unit = parameters.get(f"{key}.interval.unit", "DAYS").upper()
    if unit not in ("DAYS", "DAY") or parameters.get(f"{key}.interval", "1") != "1":
        raise ProjectionError(f"{where}: only a 1-day projection interval is supported locally")
    bounds = parameters.get(f"{key}.range", "").split(",")
    if len(bounds) != 2:
        raise ProjectionError(f"{where}: projection range {parameters.get(f'{key}.range')!r} is not 'start,end'")
    today = today or dt.datetime.now(dt.UTC).date()
    template = parameters.get(PARAM_TEMPLATE, "")
    if f"${{{column}}}" not in template:
        raise ProjectionError(f"{where}: {PARAM_TEMPLATE} {template!r} has no ${{{column}}}")
    return DateProjection(
        column=column,
        first=_range_end(bounds[0], fmt, today, where),
        last=_range_end(bounds[1], fmt, today, where),
        strptime_format=fmt,
        template=template,
    )


def template_root(projection: DateProjection) -> str:
    """The directory of the template above its first placeholder (where to list date directories)."""
    fixed = projection.template.split("${", 1)[0]
    return fixed[: fixed.rfind("/") + 1]


def projected_locations(projection: DateProjection, date_dir_values: list[str]) -> dict[str, str]:
    """Partition value -> location for the existing date directories Athena would project."""
    return {v: projection.location(v) for v in sorted(date_dir_values) if projection.accepts(v)}
