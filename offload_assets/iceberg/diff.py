"""A full export against the Iceberg table's current state, by primary key: what changed.

Both sides are conformed to one schema (the table's columns, then the export's new ones), then
DuckDB compares them: rows of the export that are not identical to a row of the table are the
upserts (inserted when their key is new, updated otherwise); keys of the table absent from the
export are the deletes; the rest is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from offload_assets.iceberg.changes import conform_to


@dataclass(frozen=True)
class StateDiff:
    upserts: pa.Table
    deletes: pa.Table  # key columns only
    inserted: int
    updated: int
    unchanged: int

    @property
    def deleted(self) -> int:
        return self.deletes.num_rows

    def counts(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
        }


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def diff_full_state(current: pa.Table, export: pa.Table, keys: tuple[str, ...]) -> StateDiff:
    """Changes turning ``current`` (the table now) into ``export`` (the whole new state)."""
    target = pa.schema(
        [pa.field(f.name, f.type) for f in current.schema]
        + [pa.field(f.name, f.type) for f in export.schema if f.name not in current.schema.names]
    )
    old, new = conform_to(current, target), conform_to(export, target)
    on = " AND ".join(f"n.{_quoted(k)} = o.{_quoted(k)}" for k in keys)
    with duckdb.connect() as con:
        con.register("old_state", old)
        con.register("new_state", new)
        con.execute("CREATE TEMP TABLE changed AS SELECT * FROM new_state EXCEPT SELECT * FROM old_state")
        upserts = con.sql("SELECT * FROM changed").to_arrow_table()
        updated = con.sql(f"SELECT count(*) FROM changed n SEMI JOIN old_state o ON {on}").fetchall()[0][0]
        deletes = con.sql(
            f"SELECT {', '.join('o.' + _quoted(k) for k in keys)} FROM old_state o ANTI JOIN new_state n ON {on}"
        ).to_arrow_table()
    return StateDiff(
        upserts=conform_to(upserts, target),
        deletes=conform_to(deletes, pa.schema([target.field(k) for k in keys])),
        inserted=upserts.num_rows - updated,
        updated=updated,
        unchanged=new.num_rows - upserts.num_rows,
    )


__all__ = ["StateDiff", "diff_full_state"]
