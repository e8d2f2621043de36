"""The per-item reference converter: simple, slow, and the oracle the fast path is tested against.

Also used by the vectorised converter to locate (and quarantine) bad lines.
"""

from __future__ import annotations

import base64
import decimal
from collections.abc import Iterator, Mapping
from decimal import Decimal

import pyarrow as pa
import pyarrow.fs as pafs

from .export_lines import iter_parsed_lines
from .options import RESCUED_COLUMN, ConversionOptions, ExpectedDataFile, json_text
from .quarantine import BadLines
from .schema_plan import FieldPlan, Kind, SchemaPlan, decimal_fits
from .value_stats import ValueStats, add_item, number_shape

_CONTEXT = decimal.Context(prec=400, Emax=999_999, Emin=-999_999)


class Misfit(Exception):
    """The value does not fit the column's type: it is rescued."""


def iter_items(
    files,
    filesystem: pafs.FileSystem,
    options: ConversionOptions,
    bad_lines: BadLines,
    expected: Mapping[str, ExpectedDataFile] | None = None,
) -> Iterator[dict[str, dict]]:
    """Items of all files in native form; bad lines go to ``bad_lines`` (raise or are skipped).
    Files in ``expected`` have their MD5 and line count checked as they are read."""
    for path in files:
        check = (expected or {}).get(path)
        lines = iter_parsed_lines(
            filesystem, path, table=bad_lines.table, input_format=options.input_format, expected=check
        )
        for line in lines:
            if line.problem is None:
                yield line.item
            elif not bad_lines.is_bad(path, line.line_no):  # the second pass skips what the first set aside
                bad_lines.add(path, line.line_no, line.problem, line.text)


def collect_stats(items) -> tuple[ValueStats, int]:
    root = ValueStats()
    rows = 0
    for item in items:
        add_item(root, item)
        rows += 1
    return root, rows


def number_value(text: str, arrow_type: pa.DataType):
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return text
    if pa.types.is_floating(arrow_type):
        return float(Decimal(text))
    shape = number_shape(text)
    if pa.types.is_integer(arrow_type):
        if not shape.fits_int64:
            raise Misfit
        value = int(Decimal(text))
        bits = arrow_type.bit_width
        signed = pa.types.is_signed_integer(arrow_type)
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if not low <= value <= high:
            raise Misfit
        return value
    if pa.types.is_decimal(arrow_type):
        if not decimal_fits(shape, arrow_type.precision, arrow_type.scale):
            raise Misfit
        return Decimal(text).quantize(Decimal(1).scaleb(-arrow_type.scale), context=_CONTEXT)
    raise AssertionError(arrow_type)


def arrow_value(value: dict, kind: Kind):
    """The Python value pyarrow stores for one native DynamoDB value (raises :class:`Misfit`)."""
    ((tag, payload),) = value.items()
    if tag == "NULL":
        return None
    if kind.tag == "JSON":
        if kind.accepts and tag not in kind.accepts:
            raise Misfit
        return json_text(value)
    if tag != kind.tag:
        raise Misfit
    if tag == "S":
        return payload
    if tag == "N":
        return number_value(payload, kind.arrow_type)
    if tag == "B":
        return base64.b64decode(payload)
    if tag == "BOOL":
        return payload
    if tag == "SS":
        return list(payload)
    if tag == "NS":
        return [number_value(e, kind.element.arrow_type) for e in payload]
    if tag == "BS":
        return [base64.b64decode(e) for e in payload]
    if tag == "M":
        by_original = {f.original: f for f in kind.fields}
        out = {f.name: None for f in kind.fields}
        for k, v in payload.items():
            f = by_original.get(k)
            if f is None:
                raise Misfit
            out[f.name] = arrow_value(v, f.kind)
        return out
    if tag == "L":
        return [arrow_value(e, kind.element) for e in payload]
    raise AssertionError(tag)


def convert_items(items, plan: SchemaPlan, batch_rows: int = 20_000):
    """Record batches of ``plan.schema`` and the rescued counts (column name → count)."""
    rescued_counts: dict[str, int] = {}
    columns: list[FieldPlan] = list(plan.columns)
    schema = plan.schema
    names = [f.name for f in schema]

    def make_batch(rows_by_column):
        arrays = [pa.array(rows_by_column[n], type=schema.field(n).type) for n in names]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    buffers = {n: [] for n in names}
    count = 0
    for item in items:
        rescued = {}
        for column in columns:
            value = item.get(column.original)
            out = None
            if value is not None:
                try:
                    out = arrow_value(value, column.kind)
                except Misfit:
                    rescued[column.original] = value
                    rescued_counts[column.name] = rescued_counts.get(column.name, 0) + 1
            buffers[column.name].append(out)
        buffers[RESCUED_COLUMN].append(json_text(rescued) if rescued else None)
        count += 1
        if count == batch_rows:
            yield make_batch(buffers), rescued_counts
            buffers = {n: [] for n in names}
            count = 0
    if count:
        yield make_batch(buffers), rescued_counts
