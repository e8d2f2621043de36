"""A ChangeTarget in memory for the pure-core tests: rows by key and snapshot summaries.

It keeps the contract the Iceberg target keeps (one commit = rows + properties, atomically);
the Iceberg target itself is tested against the emulator in test_iceberg_capture.py.
"""

from __future__ import annotations

import pyarrow as pa

from offload_assets.cdc.changes import convert_images


class MemoryTarget:
    def __init__(self, key_columns: tuple[str, ...]):
        self._keys = key_columns
        self.rows: dict[tuple, dict] = {}
        self.schema: pa.Schema | None = None
        self.snapshots: list[dict[str, str]] = []  # oldest first

    def summaries(self) -> list[dict[str, str]]:
        return list(reversed(self.snapshots))

    def arrow_schema(self) -> pa.Schema | None:
        return self.schema

    def key_columns(self) -> tuple[str, ...]:
        return self._keys

    def commit(self, upserts, deletes, properties) -> dict:
        if upserts is not None:
            self.schema = upserts.schema
        deleted = 0
        for row in deletes.to_pylist() if deletes is not None else []:
            deleted += self.rows.pop(tuple(row[k] for k in self._keys), None) is not None
        for row in upserts.to_pylist() if upserts is not None else []:
            self.rows[tuple(row[k] for k in self._keys)] = row
        self.snapshots.append(dict(properties))
        return {"rows_upserted": upserts.num_rows if upserts is not None else 0, "rows_deleted": deleted}

    def load_full_export(self, items: list[dict], properties: dict[str, str]) -> None:
        """What a (re-)bootstrap commits: the table becomes exactly ``items``."""
        table = convert_images(items, self.schema)
        self.schema = table.schema
        self.rows = {tuple(r[k] for k in self._keys): r for r in table.to_pylist()}
        self.snapshots.append(dict(properties))

    def state(self) -> list[dict]:
        """Rows as sorted JSON-able dicts, without columns that are NULL everywhere in a row."""
        return sorted(({k: v for k, v in r.items() if v is not None} for r in self.rows.values()), key=repr)


def scan_state(items: list[dict], schema: pa.Schema | None) -> list[dict]:
    """A full scan of the source converted like the target's rows (the state to converge to)."""
    rows = convert_images(items, schema).to_pylist() if items else []
    return sorted(({k: v for k, v in r.items() if v is not None} for r in rows), key=repr)
