"""SQL for the vectorised converter: what DuckDB reads, and the coverage check.

DuckDB reads every export line as JSON text and types it with ``json_transform`` and a *read
structure* (every attribute, map key and DynamoDB type seen). ``json_transform`` silently ignores
keys it was not told about, so each row also gets a *coverage* check: the number of JSON keys in
the raw line (occurrences of ``":``, which a string value can only add to) must equal the number
of keys the typed value accounts for. Rows that fail it (unseen attributes, case-colliding names,
unusual JSON spacing) come back with their raw text and take the per-item path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .value_stats import ValueStats

TAG_TYPES = {
    "S": "VARCHAR", "N": "VARCHAR", "B": "VARCHAR", "BOOL": "BOOLEAN", "NULL": "BOOLEAN",
    "SS": ["VARCHAR"], "NS": ["VARCHAR"], "BS": ["VARCHAR"],
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


def read_node(stats: ValueStats) -> ReadNode:
    tags = tuple(t for t in TAG_ORDER if stats.tags.get(t))
    node = ReadNode(tags=tags)
    if "M" in tags:
        node.fields = read_fields(stats.fields)
    if "L" in tags and stats.elements is not None and any(stats.elements.tags.values()):
        node.element = read_node(stats.elements)
    return node


def read_fields(fields: dict[str, ValueStats]) -> dict[str, ReadNode]:
    """Map keys to declare. Of names equal but for case only the most frequent one is declared
    (DuckDB struct field names are case-insensitive): rows holding the others are not covered and
    take the per-item path."""
    groups: dict[str, list[str]] = {}
    for name in fields:
        groups.setdefault(name.lower(), []).append(name)
    keep = {
        max(names, key=lambda n: (sum(fields[n].tags.values()), [-ord(c) for c in n]))
        for names in groups.values()
    }
    return {name: read_node(fields[name]) for name in fields if name in keep}


def _get(expr: str, name: str) -> str:
    return f"struct_extract({expr}, {sql_string(name)})"


class _KeyCount:
    def __init__(self) -> None:
        self._var = 0

    def value(self, v: str, node: ReadNode) -> str:
        """Keys the typed value ``v`` accounts for: its tag(s), map keys and everything below."""
        parts = [f"({_get(v, t)} IS NOT NULL)::INTEGER" for t in node.tags]
        if "M" in node.tags:
            m = _get(v, "M")
            if node.fields:
                for name, child in node.fields.items():
                    c = _get(m, name)
                    parts.append(f"CASE WHEN {c} IS NULL THEN 0 ELSE 1 + {self.value(c, child)} END")
            else:
                parts.append(f"CASE WHEN {m} IS NULL THEN 0 ELSE {_raw_keys(m + '::VARCHAR')} END")
        if "L" in node.tags:
            lst = _get(v, "L")
            self._var += 1
            e = f"e{self._var}"
            inner = self.value(e, node.element) if node.element is not None else _raw_keys(f"{e}::VARCHAR")
            parts.append(f"coalesce(list_sum(list_transform({lst}, lambda {e}: {inner})), 0)")
        return "(" + " + ".join(parts or ["0"]) + ")"


class _ExpectedLength:
    """Bytes the typed value takes as compact JSON when no string needed escaping. A line whose
    length equals it has no key the read structure lacks (an unknown key, like an escape, only
    makes the line longer), so the exact, costlier key count is only needed for the others."""

    def __init__(self) -> None:
        self._var = 0

    def value(self, v: str, node: ReadNode) -> str:
        parts = []
        for tag in node.tags:
            t = _get(v, tag)
            if tag in ("S", "N", "B"):
                payload = f"strlen({t}) + 2"
            elif tag == "BOOL":
                payload = f"CASE WHEN {t} THEN 4 ELSE 5 END"
            elif tag == "NULL":
                payload = f"CASE WHEN {t} THEN 4 ELSE 5 END"
            elif tag in ("SS", "NS", "BS"):
                self._var += 1
                e = f"e{self._var}"
                payload = (f"1 + greatest(len({t}), 1) + "
                           f"coalesce(list_sum(list_transform({t}, lambda {e}: strlen({e}) + 2)), 0)")
            elif tag == "M":
                if node.fields:
                    entries = [(_get(t, name), child, len(orjson.dumps(name)) + 1)
                               for name, child in node.fields.items()]
                    count = " + ".join(f"({c} IS NOT NULL)::INTEGER" for c, _, _ in entries)
                    sizes = " + ".join(f"CASE WHEN {c} IS NULL THEN 0 ELSE {k} + {self.value(c, child)} END"
                                       for c, child, k in entries)
                    payload = f"1 + greatest({count}, 1) + {sizes}"
                else:
                    payload = f"strlen({t}::VARCHAR)"
            else:  # L
                self._var += 1
                e = f"e{self._var}"
                inner = self.value(e, node.element) if node.element is not None else f"strlen({e}::VARCHAR)"
                payload = (f"1 + greatest(len({t}), 1) + "
                           f"coalesce(list_sum(list_transform({t}, lambda {e}: {inner})), 0)")
            parts.append(f"CASE WHEN {t} IS NULL THEN 0 ELSE {len(tag) + 5} + {payload} END")
        return "(" + " + ".join(parts or ["0"]) + ")"


def _raw_keys(text: str) -> str:
    return f"((length({text}) - length(replace({text}, '\":', ''))) // 2)"


def item_structure(root: ReadNode) -> dict:
    return {"Item": {k: v.structure() for k, v in root.fields.items()} or "JSON"}


def build_query(source_sql: str, root: ReadNode) -> str:
    """SELECT over ``source_sql`` (columns ``json``, ``filename``): the typed ``item``, ``_cov``
    and, for rows not covered, ``_raw`` (the line's text).

    The typed key count is an expression over the read structure; for big structures (slow to
    plan) it is taken from the typed value's own JSON instead: keys it serialises minus those
    serialised as null (a string value can only add the same amount to both sides).
    """
    structure = sql_string(orjson.dumps(item_structure(root)).decode())
    item = "struct_extract(j, 'Item')"
    counter = _KeyCount()
    typed = " + ".join(
        f"CASE WHEN {_get(item, n)} IS NULL THEN 0 ELSE 1 + {counter.value(_get(item, n), node)} END"
        for n, node in root.fields.items()
    ) or "0"
    if len(typed) > TYPED_COUNT_SQL_LIMIT:
        t = f"to_json({item})::VARCHAR"
        typed = f"({_raw_keys(t)} - ((length({t}) - length(replace({t}, '\":null', ''))) // 6))"
    exact = f"{_raw_keys('json')} = 1 + {typed}"
    if root.fields:
        sizer = _ExpectedLength()
        entries = [(_get(item, n), node, len(orjson.dumps(n)) + 1) for n, node in root.fields.items()]
        count = " + ".join(f"({c} IS NOT NULL)::INTEGER" for c, _, _ in entries)
        sizes = " + ".join(f"CASE WHEN {c} IS NULL THEN 0 ELSE {k} + {sizer.value(c, node)} END"
                           for c, node, k in entries)
        expected = f"9 + 1 + greatest({count}, 1) + {sizes}"  # {"Item":{...}}
        covered = f"({item} IS NOT NULL AND CASE WHEN strlen(json) = {expected} THEN true ELSE {exact} END)"
    else:
        covered = f"({item} IS NOT NULL AND {exact})"
    return f"""
SELECT item, _cov, CASE WHEN _cov THEN NULL ELSE json END AS _raw, filename AS _file
FROM (
  SELECT json, filename, {item} AS item, coalesce({covered}, false) AS _cov
  FROM (SELECT json::VARCHAR AS json, filename, json_transform(json, {structure}) AS j FROM {source_sql})
)
"""


TYPED_COUNT_SQL_LIMIT = 16_000
