"""Arrow-side conversion of typed DynamoDB values (as DuckDB's ``json_transform`` returns them:
one struct of tags per value) into the Parquet columns of a :class:`SchemaPlan`.

Everything is column-at-a-time Arrow compute: validity, statistics, numbers, lists and maps. Only
rare things go through Python per value: base64 decoding, the JSON of rescued values and of
JSON-typed columns.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .arrow_values import (
    all_false,
    all_true,
    base64_decode,
    clear_caches,
    list_parts,
    number_codes,
    rows_all,
    struct_field,
)
from .duckdb_sql import ReadNode
from .options import RESCUED_COLUMN, json_text
from .schema_plan import Kind, SchemaPlan
from .value_stats import NumberShape, ValueStats


def decode_code(code: int) -> NumberShape:
    return NumberShape(code // 1024, (code // 2) % 512, code % 2 == 1)


def _tag(v: pa.Array, tag: str) -> pa.Array:
    return struct_field(v, tag)


def _valid(a: pa.Array) -> pa.Array:
    return pc.is_valid(a)


def _and(*masks: pa.Array) -> pa.Array:
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_(out, m)
    return out


def nullish(v: pa.Array, node: ReadNode) -> pa.Array:
    """Absent, or the DynamoDB NULL."""
    absent = pc.is_null(v)
    if "NULL" in node.tags:
        return pc.or_(absent, _valid(_tag(v, "NULL")))
    return absent


# ---------------------------------------------------------------------------------------------
# Validity


def valid(v: pa.Array, node: ReadNode) -> pa.Array:
    """Per value: absent, or exactly one tag with a well-formed payload (recursively)."""
    n = len(v)
    present = _valid(v)
    ntags = None
    for t in node.tags:
        one = _valid(_tag(v, t)).cast(pa.int8())
        ntags = one if ntags is None else pc.add(ntags, one)
    ok = pc.equal(ntags, 1) if ntags is not None else all_false(n)
    checks = [ok]
    if "N" in node.tags:
        checks.append(pc.fill_null(pc.greater_equal(number_codes(_tag(v, "N")), 0), True))
    if "NULL" in node.tags:
        checks.append(pc.fill_null(_tag(v, "NULL"), True))
    if "B" in node.tags:
        checks.append(base64_decode(_tag(v, "B"))[1])
    for t in ("SS", "NS", "BS"):
        if t in node.tags:
            offsets, elements, parents = list_parts(_tag(v, t))
            if t == "SS":
                element_ok = _valid(elements)
            elif t == "NS":
                element_ok = pc.fill_null(pc.greater_equal(number_codes(elements), 0), False)
            else:
                element_ok = pc.and_(_valid(elements), base64_decode(elements)[1])
            checks.append(rows_all(n, element_ok, parents))
    if "M" in node.tags:
        m = _tag(v, "M")
        if node.fields:
            for name, child in node.fields.items():
                checks.append(valid(struct_field(m, name), child))
        else:  # read as JSON text: only the empty map is handled here, others per item
            checks.append(pc.fill_null(pc.equal(m, "{}"), True))
    if "L" in node.tags:
        lst = _tag(v, "L")
        if node.element is not None:
            offsets, elements, parents = list_parts(lst)
            element_ok = pc.and_(_valid(elements), valid(elements, node.element))
            checks.append(rows_all(n, element_ok, parents))
        else:  # elements never typed: only the empty list is handled here, others per item
            checks.append(pc.fill_null(pc.equal(pc.list_value_length(lst), 0), True))
    return pc.or_(pc.invert(present), pc.fill_null(_and(*checks), False))


# ---------------------------------------------------------------------------------------------
# Statistics


def add_stats(v: pa.Array, node: ReadNode, stats: ValueStats, rows: pa.Array | None = None) -> None:
    """Account the values of ``v`` (only where ``rows`` is true, when given: the same arrays serve
    validity, statistics and conversion, so their number codes and base64 are computed once)."""
    for t in node.tags:
        a = _tag(v, t)
        count = len(a) - a.null_count if rows is None else pc.sum(pc.and_(_valid(a), rows)).as_py() or 0
        if count:
            stats.tags[t] += count
    if "N" in node.tags:
        _count_codes(number_codes(_tag(v, "N")), stats.numbers, rows)
    if "NS" in node.tags:
        _, elements, parents = list_parts(_tag(v, "NS"))
        _count_codes(number_codes(elements), stats.set_numbers, _element_rows(rows, parents))
    if "M" in node.tags and node.fields:
        m = _tag(v, "M")
        for name, child in node.fields.items():
            add_stats(struct_field(m, name), child, stats.field_stats(name), rows)
    if "L" in node.tags and node.element is not None:
        _, elements, parents = list_parts(_tag(v, "L"))
        add_stats(elements, node.element, stats.element_stats(), _element_rows(rows, parents))


def _element_rows(rows: pa.Array | None, parents: pa.Array) -> pa.Array | None:
    """Per list element: whether its row is counted."""
    return None if rows is None else pc.take(rows, parents)


def _count_codes(codes: pa.Array, counter: Counter, rows: pa.Array | None = None) -> None:
    if rows is not None:
        codes = pc.filter(codes, rows)
    codes = codes.drop_null()
    if len(codes):
        for entry in pc.value_counts(codes).to_pylist():
            counter[decode_code(entry["values"])] += entry["counts"]


# ---------------------------------------------------------------------------------------------
# DynamoDB JSON of typed values (per value, for the rare paths)


def native_value(value, node: ReadNode):
    """A typed value (``to_pylist`` form) back in native DynamoDB JSON form; keeps every non-null
    tag, so an invalid value stays invalid."""
    if value is None:
        return None
    out = {}
    for tag in node.tags:
        payload = value.get(tag)
        if payload is None:
            continue
        if tag == "M":
            if node.fields:
                payload = {k: native_value(x, node.fields[k]) for k, x in payload.items() if x is not None}
            else:
                payload = orjson.loads(payload)
        elif tag == "L":
            if node.element is not None:
                payload = [native_value(x, node.element) for x in payload]
            else:
                payload = [orjson.loads(x) for x in payload]
        out[tag] = payload
    return out


# ---------------------------------------------------------------------------------------------
# Conversion


def convert(v: pa.Array, node: ReadNode | None, kind: Kind) -> tuple[pa.Array, pa.Array]:
    """``(fit, out)`` per value: whether a present, non-NULL value fits ``kind``, and the
    converted values (null where absent, NULL or not fitting)."""
    n = len(v)
    if node is None:
        return all_false(n), pa.nulls(n, kind.arrow_type)
    if kind.tag == "JSON":
        if kind.accepts:
            fit = all_false(n)
            for t in kind.accepts:
                if t in node.tags:
                    fit = pc.or_(fit, _valid(_tag(v, t)))
        else:
            fit = all_true(n)
        use = pc.and_(fit, pc.invert(nullish(v, node)))
        texts = [json_text(native_value(x, node)) if u else None for x, u in zip(v.to_pylist(), use.to_pylist())]
        return fit, pa.array(texts, kind.arrow_type)
    if kind.tag not in node.tags:
        return all_false(n), pa.nulls(n, kind.arrow_type)
    t = _tag(v, kind.tag)
    if kind.tag in ("S", "BOOL", "SS"):
        return _valid(t), t.cast(kind.arrow_type)
    if kind.tag == "N":
        fit, out = convert_numbers(t, kind.arrow_type)
        return fit, out
    if kind.tag == "B":
        out, _ = base64_decode(t)
        return _valid(t), out.cast(kind.arrow_type)
    if kind.tag in ("NS", "BS"):
        offsets, elements, parents = list_parts(t)
        if kind.tag == "NS":
            element_fit, converted = convert_numbers(elements, kind.element.arrow_type)
        else:
            converted, element_fit = base64_decode(elements)
            converted = converted.cast(kind.element.arrow_type)
        fit = pc.and_(_valid(t), rows_all(n, element_fit, parents))
        out = pa.ListArray.from_arrays(offsets, converted, type=kind.arrow_type, mask=pc.invert(fit))
        return fit, out
    if kind.tag == "M":
        m = t
        checks = [_valid(m)]
        arrays, fields = [], []
        planned = set()
        for f in kind.fields:
            planned.add(f.original)
            fields.append(pa.field(f.name, f.kind.arrow_type, metadata=_field_metadata(kind, f.name)))
            child = node.fields.get(f.original)
            if child is None:
                arrays.append(pa.nulls(n, f.kind.arrow_type))
                continue
            c = struct_field(m, f.original)
            c_fit, c_out = convert(c, child, f.kind)
            checks.append(pc.or_(nullish(c, child), c_fit))
            arrays.append(c_out)
        for name in node.fields:
            if name not in planned:
                checks.append(pc.is_null(struct_field(m, name)))
        fit = pc.fill_null(_and(*checks), False)
        out = pa.StructArray.from_arrays(arrays, fields=fields, mask=pc.invert(fit))
        return fit, out
    if kind.tag == "L":
        offsets, elements, parents = list_parts(t)
        if node.element is None:
            fit = pc.fill_null(pc.and_(_valid(t), pc.equal(pc.list_value_length(t), 0)), False)
            return fit, pa.array([[] if f else None for f in fit.to_pylist()], kind.arrow_type)
        e_fit, e_out = convert(elements, node.element, kind.element)
        e_ok = pc.or_(nullish(elements, node.element), e_fit)
        fit = pc.and_(_valid(t), rows_all(n, e_ok, parents))
        out = pa.ListArray.from_arrays(offsets, e_out, type=kind.arrow_type, mask=pc.invert(fit))
        return fit, out
    raise AssertionError(kind)


def _field_metadata(kind: Kind, name: str):
    return kind.arrow_type.field(name).metadata


def convert_numbers(t: pa.Array, arrow_type: pa.DataType) -> tuple[pa.Array, pa.Array]:
    present = _valid(t)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return present, t.cast(arrow_type)
    codes = number_codes(t)
    if pa.types.is_floating(arrow_type):  # only numbers DynamoDB could hold (rows left out may hold others)
        return present, pc.cast(
            pc.if_else(pc.fill_null(pc.greater_equal(codes, 0), False), t, pa.scalar(None, t.type)), arrow_type
        )
    if pa.types.is_integer(arrow_type):
        fit = pc.fill_null(pc.and_(pc.greater_equal(codes, 0), pc.equal(pc.bit_wise_and(codes, 1), 1)), False)
        if arrow_type.bit_width < 64 or pa.types.is_unsigned_integer(arrow_type):
            as64 = pc.cast(pc.if_else(fit, t, pa.scalar(None, t.type)), pa.int64())
            info = (
                (0, 2**arrow_type.bit_width - 1)
                if pa.types.is_unsigned_integer(arrow_type)
                else (-(2 ** (arrow_type.bit_width - 1)), 2 ** (arrow_type.bit_width - 1) - 1)
            )
            fit = pc.fill_null(
                pc.and_(fit, pc.and_(pc.greater_equal(as64, info[0]), pc.less_equal(as64, info[1]))), False
            )
    elif pa.types.is_decimal(arrow_type):
        p, s = arrow_type.precision, arrow_type.scale
        int_digits = pc.divide(codes, 1024)
        frac_digits = pc.bit_wise_and(pc.divide(codes, 2), 511)
        fit = pc.fill_null(
            _and(pc.greater_equal(codes, 0), pc.less_equal(int_digits, p - s), pc.less_equal(frac_digits, s)), False
        )
    else:
        raise AssertionError(arrow_type)
    out = pc.cast(pc.if_else(fit, t, pa.scalar(None, t.type)), arrow_type)
    return fit, out


# ---------------------------------------------------------------------------------------------
# A batch


class BatchConverter:
    """Converts batches of typed items with one plan. Thread-safe: every call returns its own
    statistics and rescued counts for the caller to merge."""

    def __init__(self, plan: SchemaPlan, root: ReadNode, with_stats: bool) -> None:
        self.plan = plan
        self.root = root
        self.with_stats = with_stats
        self._columns = []
        for field in plan.schema:
            column = next((c for c in plan.columns if c.name == field.name), None)
            self._columns.append((field, column, root.fields.get(column.original) if column else None))

    def ok_rows(self, item: pa.Array, covered: pa.Array) -> pa.Array:
        checks = [pc.fill_null(covered, False)]
        if self.root.fields:
            for name, node in self.root.fields.items():
                checks.append(valid(struct_field(item, name), node))
        return _and(*checks)

    def convert(
        self, item: pa.Array, rows: pa.Array | None = None
    ) -> tuple[pa.RecordBatch, ValueStats | None, Counter]:
        """The output batch for rows that are all covered and valid, their statistics (when
        gathering) and rescued counts per column. ``rows``: convert only these rows (the others
        are left out of the batch, the statistics and the rescued counts), without copying
        ``item`` first (what :meth:`ok_rows` computed for its arrays is reused)."""
        n = len(item)
        stats = None
        if self.with_stats:
            stats = ValueStats()
            stats.tags["M"] += n if rows is None else pc.sum(rows).as_py() or 0
            for name, node in self.root.fields.items():
                add_stats(struct_field(item, name), node, stats.field_stats(name), rows)
        rescued: Counter = Counter()
        arrays = []
        misfits = []
        for field, column, node in self._columns:
            if column is None:  # _rescued_data
                arrays.append(None)
                continue
            if node is None:
                arrays.append(pa.nulls(n, field.type))
                continue
            v = struct_field(item, column.original)
            fit, out = convert(v, node, column.kind)
            misfit = pc.and_(pc.invert(nullish(v, node)), pc.invert(fit))
            if rows is not None:
                misfit = pc.and_(misfit, rows)
            count = pc.sum(misfit).as_py() or 0
            if count:
                rescued[column.name] += count
                misfits.append((column, v, node, misfit))
            arrays.append(out.cast(field.type) if out.type != field.type else out)
        rescue_index = self.plan.schema.get_field_index(RESCUED_COLUMN)
        arrays[rescue_index] = self._rescue(n, misfits)
        clear_caches()
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.plan.schema)
        return (batch if rows is None else batch.filter(rows)), stats, rescued

    def _rescue(self, n: int, misfits) -> pa.Array:
        if not misfits:
            return pa.nulls(n, pa.string())
        rows: dict[int, dict] = {}
        for column, v, node, misfit in misfits:
            index = pc.indices_nonzero(misfit)
            values = v.take(index).to_pylist()
            for i, value in zip(index.to_pylist(), values):
                rows.setdefault(i, {})[column.original] = native_value(value, node)
        texts = [None] * n
        for i, rescued in rows.items():
            texts[i] = json_text(rescued)
        return pa.array(texts, pa.string())
