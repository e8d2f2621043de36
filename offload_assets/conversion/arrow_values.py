"""Vectorised (Arrow compute) helpers: DynamoDB number shapes, base64, per-row list checks."""

from __future__ import annotations

import binascii
import threading

import pyarrow as pa
import pyarrow.compute as pc

from .export_lines import MAX_NUMBER_DIGITS, number_problem
from .value_stats import INT64_MAX, INT64_MIN

CANONICAL_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$"


_LOCAL = threading.local()


def _codes_cache() -> dict[tuple, tuple[pa.Array, pa.Array]]:
    cache = getattr(_LOCAL, "codes", None)
    if cache is None:
        cache = _LOCAL.codes = {}
    return cache


def clear_caches() -> None:
    _codes_cache().clear()
    _fields_cache().clear()


def _fields_cache() -> dict[tuple, tuple[pa.Array, pa.Array]]:
    cache = getattr(_LOCAL, "fields", None)
    if cache is None:
        cache = _LOCAL.fields = {}
    return cache


def struct_field(v: pa.Array, name: str) -> pa.Array:
    """A struct's child, memoised per array until :func:`clear_caches` (validity, statistics and
    conversion walk the same paths). DuckDB exports a null struct with null children (and
    filter/take keep them so), so the child is taken as is, without copying validity."""
    cache = _fields_cache()
    key = (id(v), name)
    hit = cache.get(key)
    if hit is None or hit[0] is not v:
        child = v.field(name) if isinstance(v, pa.StructArray) else pc.struct_field(v, name)
        hit = cache[key] = (v, child)
    return hit[1]


def number_codes(arr: pa.Array) -> pa.Array:
    """:func:`compute_number_codes`, memoised per array (validity, statistics and conversion of a
    batch ask for the same numbers; :func:`clear_caches` after each batch)."""
    return _memoised("numbers", arr, compute_number_codes)


def _memoised(kind: str, arr: pa.Array, compute):
    """``compute(arr)``, once per batch for the same values (the cache is :func:`_codes_cache`)."""
    # struct_field gives a fresh validity buffer each call: key on the value buffers
    key = (
        (kind,)
        + tuple(b.address if b is not None else 0 for b in arr.buffers()[1:])
        + (arr.offset, len(arr), arr.null_count)
    )
    cache = _codes_cache()
    hit = cache.get(key)
    if hit is None:
        # the entry keeps ``arr`` alive, so its buffer addresses cannot be reused meanwhile
        hit = cache[key] = (arr, compute(arr))
    return hit[1]


def compute_number_codes(arr: pa.Array) -> pa.Array:
    """Shape code per value: ``((int_digits * 512) + frac_digits) * 2 + fits_int64`` (int64);
    ``-1`` when the text is not in DynamoDB's canonical form (no exponent, sign only ``-``, no
    leading or trailing zeros: DynamoDB trims them) or is a number DynamoDB cannot hold (more
    than 38 significant digits, beyond its range); null for null. Agrees with
    :func:`value_stats.number_shape` on canonical text.
    """
    if len(arr) == 0:
        return pa.array([], pa.int64())
    # plain digits (most numbers) need no regular expression: canonical unless a leading zero
    digits = pc.ascii_is_decimal(arr)
    canonical = pc.and_(digits, pc.or_(pc.invert(pc.starts_with(arr, "0")), pc.equal(pc.binary_length(arr), 1)))
    others = pc.and_(pc.is_valid(arr), pc.invert(pc.fill_null(digits, True)))
    if pc.any(others).as_py():
        checked = pc.match_substring_regex(pc.filter(arr, others), CANONICAL_NUMBER)
        canonical = pc.replace_with_mask(pc.fill_null(canonical, False), others, checked)
    length = pc.binary_length(arr).cast(pa.int64())
    dot = pc.find_substring(arr, ".").cast(pa.int64())
    neg = pc.starts_with(arr, "-").cast(pa.int64())
    has_dot = pc.greater_equal(dot, 0)
    zero_int = pc.or_(pc.starts_with(arr, "0"), pc.starts_with(arr, "-0"))
    int_digits = pc.if_else(zero_int, 0, pc.subtract(pc.if_else(has_dot, dot, length), neg))
    frac_digits = pc.if_else(has_dot, pc.subtract(pc.subtract(length, dot), 1), 0)
    fits = pc.and_(pc.invert(has_dot), pc.less(int_digits, 19))
    code = pc.add(pc.multiply(pc.add(pc.multiply(int_digits, 512), frac_digits), 2), fits.cast(pa.int64()))
    edge = pc.and_(pc.and_(canonical, pc.invert(has_dot)), pc.equal(int_digits, 19))
    if pc.any(edge).as_py():  # 19-digit integers: compare exactly (rare)
        idx = pc.indices_nonzero(edge).to_pylist()
        values = arr.take(idx).to_pylist()
        fixed = [(19 * 512) * 2 + int(INT64_MIN <= int(v) <= INT64_MAX) for v in values]
        code = pc.replace_with_mask(code, pc.fill_null(edge, False), pa.array(fixed, pa.int64()))
    out = pc.if_else(canonical, code, -1)
    # more than 38 digits: maybe beyond DynamoDB's precision or range (rare); -1 sends the row to
    # the per-item path, which names the problem
    digits = pc.add(int_digits, frac_digits)
    long = pc.fill_null(pc.and_(canonical, pc.greater(digits, MAX_NUMBER_DIGITS)), False)
    if pc.any(long).as_py():
        idx = pc.indices_nonzero(long)
        bad = [number_problem(v) is not None for v in arr.take(idx).to_pylist()]
        if any(bad):
            out = pc.replace_with_mask(out, long, pc.if_else(pa.array(bad), -1, pc.take(out, idx)))
    if arr.null_count:
        out = pc.if_else(pc.is_valid(arr), out, pa.scalar(None, pa.int64()))
    return out


def base64_decode(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``(binary values, valid)``: decoded strict, padded base64; invalid values become null and
    ``valid`` false (nulls stay null and valid). Memoised like :func:`number_codes` (validity
    and conversion both need it)."""
    return _memoised("b64", arr, _base64_decode)


def _base64_decode(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    out, ok = [], []
    for text in arr.to_pylist():
        if text is None:
            out.append(None)
            ok.append(True)
            continue
        try:
            out.append(binascii.a2b_base64(text, strict_mode=True))
            ok.append(True)
        except (binascii.Error, ValueError):
            out.append(None)
            ok.append(False)
    return pa.array(out, pa.binary()), pa.array(ok, pa.bool_())


def list_parts(arr: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``(offsets from 0, elements, parent row of each element)`` of a (sliced) list array."""
    offsets = arr.offsets
    first = offsets[0].as_py()
    last = offsets[len(offsets) - 1].as_py()
    elements = arr.values.slice(first, last - first)
    if first:
        offsets = pc.subtract(offsets, first)
    parents = pc.list_parent_indices(pa.ListArray.from_arrays(offsets, pa.nulls(last - first)))
    return offsets, elements, parents


def rows_all(n: int, element_ok: pa.Array, parents: pa.Array) -> pa.Array:
    """Per row: whether every element of the row is ok (True for rows without elements)."""
    bad = pc.invert(pc.fill_null(element_ok, True))
    if not pc.any(bad).as_py():
        return all_true(n)
    bad_rows = pc.unique(pc.filter(parents, bad)).cast(pa.int64())
    return pc.invert(pc.is_in(pa.array(range(n), pa.int64()), value_set=bad_rows))


def all_true(n: int) -> pa.Array:
    return pa.nulls(n, pa.bool_()).fill_null(True)


def all_false(n: int) -> pa.Array:
    return pa.nulls(n, pa.bool_()).fill_null(False)
