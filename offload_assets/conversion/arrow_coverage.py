"""Coverage: does the typed value account for every key of the raw line?

``json_transform`` silently drops keys the read structure lacks (an attribute or map key the
sample never saw, the second of two names equal but for case). A row is *covered* when nothing
was dropped. The check is cheap for nearly every row: the compact JSON length of the typed value
(computed from string lengths and presence, column at a time) must equal the raw line's length,
since an unknown key can only make the line longer. Rows whose length differs (strings with
escapes, odd spacing, unknown keys, payloads of the wrong JSON type) get the exact check: the
line's key count (occurrences of ``":``; a string value can only add as many to both sides)
against the typed value's, and no type tag followed by a payload of the wrong JSON type
(:data:`WRONG_PAYLOAD`: ``json_transform`` reads ``{"S": 12}`` as ``"12"``, but DynamoDB never
writes it, so it is a bad line, as on the per-item path).

Known gap, kept for speed (checking every line, not only those the length check sends to the
exact check, cost ~8% of the conversion): a wrong-typed payload whose length change is exactly
balanced by escapes elsewhere in the line (``{"N": 12}`` beside ``"say \\"hi\\""``) passes the
length check and is read as ``json_transform`` reads it (``"12"``), where the per-item path calls
the line bad.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .arrow_values import list_parts, struct_field
from .duckdb_sql import ReadNode


def _int(a: pa.Array) -> pa.Array:
    return a.cast(pa.int64())


def _present(a: pa.Array) -> pa.Array:
    return pc.is_valid(a).cast(pa.int64())


def _sum(*arrays: pa.Array) -> pa.Array:
    out = arrays[0]
    for a in arrays[1:]:
        out = pc.add(out, a)
    return out


def _segment_sums(offsets: pa.Array, values: pa.Array) -> pa.Array:
    """Sum of ``values`` per list (``offsets`` from 0)."""
    n = len(offsets) - 1
    if len(values) == 0:
        return pa.nulls(n, pa.int64()).fill_null(0)
    cumulative = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(pc.fill_null(values, 0))])
    return pc.subtract(pc.take(cumulative, offsets.slice(1)), pc.take(cumulative, offsets.slice(0, n)))


def _list_payload(t: pa.Array, element_sizes: pa.Array, offsets: pa.Array) -> pa.Array:
    """``[a,b,c]``: brackets, commas and the elements."""
    length = _int(pc.list_value_length(t))
    return _sum(pc.add(pc.max_element_wise(length, 1), 1), _segment_sums(offsets, element_sizes))


def compact_size(v: pa.Array, node: ReadNode, json_leaves: bool = False) -> pa.Array:
    """Bytes of ``{"TAG":payload}`` per value, as compact JSON without escapes (0 if null).
    ``json_leaves``: scalar payloads and set elements are JSON text (quotes and escapes
    included), as the typed read (:mod:`.typed_read`) declares them."""
    quotes = 0 if json_leaves else 2
    parts = []
    for tag in node.tags:
        t = struct_field(v, tag)
        if tag in ("S", "N", "B"):
            payload = pc.add(_int(pc.binary_length(t)), quotes)
        elif tag in ("BOOL", "NULL"):
            payload = _int(pc.binary_length(t)) if json_leaves else pc.subtract(5, _int(t))  # true: 4, false: 5
        elif tag in ("SS", "NS", "BS"):
            offsets, elements, _ = list_parts(t)
            payload = _list_payload(t, pc.add(_int(pc.binary_length(elements)), quotes), offsets)
        elif tag == "M":
            payload = object_size(t, node.fields, json_leaves) if node.fields else _int(pc.binary_length(t))
        else:  # L
            offsets, elements, _ = list_parts(t)
            sizes = (
                compact_size(elements, node.element, json_leaves)
                if node.element is not None
                else _int(pc.binary_length(elements))
            )
            payload = _list_payload(t, sizes, offsets)
        # max_element_wise skips nulls, so mask absent tags explicitly
        parts.append(pc.if_else(pc.is_valid(t), pc.fill_null(pc.add(payload, len(tag) + 5), 0), 0))
    if not parts:
        return pa.nulls(len(v), pa.int64()).fill_null(0)
    return _sum(*parts)


def object_size(obj: pa.Array, fields: dict[str, ReadNode], json_leaves: bool = False) -> pa.Array:
    """``{"k":v,...}`` over the present entries of a struct of typed values."""
    count = None
    sizes = None
    for name, child in fields.items():
        c = struct_field(obj, name)
        present = _present(c)
        size = pc.multiply(present, pc.add(compact_size(c, child, json_leaves), len(orjson.dumps(name)) + 1))
        count = present if count is None else pc.add(count, present)
        sizes = size if sizes is None else pc.add(sizes, size)
    return _sum(pc.max_element_wise(count, 1), 1, sizes)


def key_count(v: pa.Array, node: ReadNode) -> pa.Array:
    """Keys a typed value accounts for: its tag(s), map keys and below (0 if null)."""
    parts = []
    for tag in node.tags:
        t = struct_field(v, tag)
        parts.append(_present(t))
        if tag == "M":
            if node.fields:
                for name, child in node.fields.items():
                    c = struct_field(t, name)
                    parts.append(pc.multiply(_present(c), pc.add(key_count(c, child), 1)))
            else:
                parts.append(pc.fill_null(_int(pc.count_substring(t, '":')), 0))
        elif tag == "L":
            offsets, elements, _ = list_parts(t)
            inner = (
                key_count(elements, node.element)
                if node.element is not None
                else _int(pc.count_substring(elements, '":'))
            )
            parts.append(_segment_sums(offsets, inner))
    if not parts:
        return pa.nulls(len(v), pa.int64()).fill_null(0)
    return pc.fill_null(_sum(*parts), 0)


#: A type tag followed by a payload of the wrong JSON type: ``json_transform`` would read
#: ``{"S": 12}`` as ``"12"`` and ``{"BOOL": 1}`` as true. Also matches a map key named like a
#: tag (``{"M": {"S": {...}}}``): such rows merely take the per-item path.
WRONG_PAYLOAD = (
    r'"(?:S|N|B)"\s*:\s*[^"\s]|"(?:BOOL|NULL)"\s*:\s*[^tf\s]'
    r'|"(?:SS|NS|BS|L)"\s*:\s*[^\[\s]|"M"\s*:\s*[^{\s]'
    r'|"(?:SS|NS|BS)"\s*:\s*\[(?:\s*"(?:[^"\\]|\\.)*"\s*,)*\s*[^"\s\]]'
)


#: The line's item is a JSON object (``{"Item": {``, any spacing).
ITEM_IS_OBJECT = r'^\s*\{\s*"Item"\s*:\s*\{'


def covered_rows(item: pa.Array, raw: pa.Array, root: ReadNode) -> pa.Array:
    """Per row: the typed ``item`` accounts for every key of the ``raw`` line ``{"Item":...}``,
    and every payload had the JSON type its tag wants."""
    present = pc.is_valid(item)
    if not root.fields:  # no attribute known: only an empty item ``{"Item":{}}`` is covered
        empty = pc.equal(pc.utf8_trim_whitespace(item.cast(pa.string())), "{}")
        return pc.fill_null(pc.and_(pc.and_(present, empty), pc.equal(_int(pc.count_substring(raw, '":')), 1)), False)
    expected = pc.add(object_size(item, root.fields), 9)  # {"Item": ... }
    # json_transform reads any JSON value as a struct (``{"Item": 12}`` gives all-null fields),
    # so the line must also open an object for the item: compact here, any spacing below
    fast = pc.fill_null(
        pc.and_(pc.and_(present, pc.equal(expected, _int(pc.binary_length(raw)))), pc.starts_with(raw, '{"Item":{')),
        False,
    )
    if pc.all(fast).as_py():
        return fast
    # exact check for the others
    slow = pc.and_(pc.invert(fast), present)
    index = pc.indices_nonzero(slow)
    if len(index) == 0:
        return fast
    sub = item.take(index)
    sub_raw = raw.take(index)
    typed = pc.add(
        _sum(
            *[
                pc.multiply(_present(struct_field(sub, name)), pc.add(key_count(struct_field(sub, name), node), 1))
                for name, node in root.fields.items()
            ]
        ),
        1,
    )
    exact = pc.and_(
        pc.equal(_int(pc.count_substring(sub_raw, '":')), typed),
        pc.invert(pc.match_substring_regex(sub_raw, WRONG_PAYLOAD)),
    )
    exact = pc.and_(exact, pc.match_substring_regex(sub_raw, ITEM_IS_OBJECT))
    return pc.replace_with_mask(fast, slow, pc.fill_null(exact, False))
