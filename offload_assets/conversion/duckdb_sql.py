"""SQL for the vectorised converter: what DuckDB reads.

DuckDB reads every export line as JSON text and types it with ``json_transform`` and a *read
structure* (every attribute, map key and DynamoDB type seen). ``json_transform`` silently ignores
keys it was not told about, so every row is checked for coverage (:mod:`.arrow_coverage`); rows
not covered (unseen attributes, case-colliding names) take the per-item path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .schema_plan import MAX_TYPED_LEVELS
from .value_stats import ValueStats

TAG_TYPES = {
    "S": "VARCHAR",
    "N": "VARCHAR",
    "B": "VARCHAR",
    "BOOL": "BOOLEAN",
    "NULL": "BOOLEAN",
    "SS": ["VARCHAR"],
    "NS": ["VARCHAR"],
    "BS": ["VARCHAR"],
}
TAG_ORDER = ("S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "M", "L")


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class ReadNode:
    """What ``json_transform`` extracts at one position: the tags seen, map fields, list element.
    A map whose fields were never seen is read as raw JSON text (so is a list never seen with
    elements)."""

    tags: tuple[str, ...] = ()
    fields: dict[str, ReadNode] = field(default_factory=dict)
    element: ReadNode | None = None
    case_collisions: bool = False  # (root only) names equal but for case were seen: some not declared

    def structure(self):
        out = {}
        for tag in TAG_ORDER:
            if tag not in self.tags:
                continue
            if tag == "M":
                out["M"] = {k: v.structure() for k, v in self.fields.items()} if self.fields else "JSON"
            elif tag == "L":
                out["L"] = [self.element.structure()] if self.element is not None else ["JSON"]
            else:
                out[tag] = TAG_TYPES[tag]
        return out or {"NULL": "BOOLEAN"}


def read_node(stats: ValueStats, level: int = 1) -> ReadNode:
    """``level``: 1 for a top-level attribute. Maps and lists deeper than the schema types them
    (``MAX_TYPED_LEVELS``) are read as JSON text, which also keeps the Arrow data DuckDB hands
    over within pyarrow's nesting limit; rows holding such non-empty values take the per-item
    path."""
    tags = tuple(t for t in TAG_ORDER if stats.tags.get(t))
    node = ReadNode(tags=tags)
    if level > MAX_TYPED_LEVELS:
        return node
    if "M" in tags:
        node.fields = read_fields(stats.fields, level + 1)
    if "L" in tags and stats.elements is not None and any(stats.elements.tags.values()):
        node.element = read_node(stats.elements, level + 1)
    return node


def read_fields(fields: dict[str, ValueStats], level: int = 1) -> dict[str, ReadNode]:
    """Map keys to declare. Of names equal but for case only the most frequent one is declared
    (DuckDB struct field names are case-insensitive): rows holding the others are not covered and
    take the per-item path."""
    groups: dict[str, list[str]] = {}
    for name in fields:
        groups.setdefault(name.lower(), []).append(name)
    keep = {max(names, key=lambda n: (sum(fields[n].tags.values()), [-ord(c) for c in n])) for names in groups.values()}
    return {name: read_node(fields[name], level) for name in fields if name in keep}


def read_root(fields: dict[str, ValueStats]) -> ReadNode:
    """The read structure of the items whose attributes are ``fields``."""
    return ReadNode(tags=("M",), fields=read_fields(fields), case_collisions=_case_collisions(fields))


def _case_collisions(fields: dict[str, ValueStats]) -> bool:
    if len({name.lower() for name in fields}) < len(fields):
        return True
    return any(
        _case_collisions(s.fields) or (s.elements is not None and _case_collisions({"": s.elements}))
        for s in fields.values()
    )


def item_structure(root: ReadNode) -> dict:
    return {"Item": {k: v.structure() for k, v in root.fields.items()} or "JSON"}


def build_query(source_sql: str, root: ReadNode, paths: list[str] | None = None) -> str:
    """SELECT over ``source_sql`` (columns ``json``, ``filename``): the typed ``item``, the raw
    line ``_raw`` (for the coverage check and the per-item path) and its file ``_file``."""
    structure = sql_string(orjson.dumps(item_structure(root)).decode())
    # the file of every row, as a dictionary (an ENUM exports as one): cheap to hand over
    file_column = (
        f"CAST(filename AS ENUM({', '.join(sql_string(p) for p in dict.fromkeys(paths))}))" if paths else "filename"
    )
    return f"""
SELECT struct_extract(json_transform(json, {structure}), 'Item') AS item, json::VARCHAR AS _raw,
       {file_column} AS _file
FROM {source_sql}
"""
