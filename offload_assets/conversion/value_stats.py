"""What an export holds, per attribute position: the statistics the schema is decided from.

A :class:`ValueStats` describes every value found at one position of the items (a top-level
attribute, a field of a map, the elements of a list): how many values had each DynamoDB type, the
shapes of its numbers, the fields of its maps and the elements of its lists. Both converters (the
vectorised DuckDB one and the per-item reference) produce the same tree.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, order=True)
class NumberShape:
    """Digits a number needs: ``int_digits`` before and ``frac_digits`` after the point.

    Zeros that carry no value are not counted (``1.50`` → 1, 1; ``1E+3`` → 4, 0; ``0.0`` → 0, 0).
    ``fits_int64`` says the number is an integer within int64.
    """

    int_digits: int
    frac_digits: int
    fits_int64: bool


_CANONICAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


def number_shape(text: str) -> NumberShape:
    """The shape of a DynamoDB number string (raises ``ValueError`` if it is not a number)."""
    if _CANONICAL.fullmatch(text):  # DynamoDB's own form: no exponent, no extra zeros
        body = text[1:] if text[0] == "-" else text
        int_part, _, frac_part = body.partition(".")
        int_digits = 0 if int_part == "0" else len(int_part)
        if frac_part:
            return NumberShape(int_digits, len(frac_part), False)
        return NumberShape(int_digits, 0, int_digits < 19 or INT64_MIN <= int(text) <= INT64_MAX)
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    sign, digits, exponent = value.as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    if digits == [0]:
        return NumberShape(0, 0, True)
    int_digits = max(0, len(digits) + exponent)
    frac_digits = max(0, -exponent)
    fits = frac_digits == 0 and int_digits <= 19 and INT64_MIN <= int(value) <= INT64_MAX
    return NumberShape(int_digits, frac_digits, fits)


@dataclass
class ValueStats:
    """Statistics of every value found at one position of the items."""

    tags: Counter = field(default_factory=Counter)
    """DynamoDB type tag (``S``, ``N``, ``M`` ...) → number of values with it."""
    numbers: Counter = field(default_factory=Counter)
    """:class:`NumberShape` → count, for the N values."""
    set_numbers: Counter = field(default_factory=Counter)
    """:class:`NumberShape` → count, for the elements of the NS values."""
    fields: dict[str, ValueStats] = field(default_factory=dict)
    """Map key → stats of its values, for the M values."""
    elements: ValueStats | None = None
    """Stats of the elements of the L values."""

    def field_stats(self, name: str) -> ValueStats:
        stats = self.fields.get(name)
        if stats is None:
            stats = self.fields[name] = ValueStats()
        return stats

    def element_stats(self) -> ValueStats:
        if self.elements is None:
            self.elements = ValueStats()
        return self.elements

    def add(self, value: dict) -> None:
        """Account one native DynamoDB JSON value (``{"TAG": payload}``)."""
        ((tag, payload),) = value.items()
        self.tags[tag] += 1
        if tag == "N":
            self.numbers[number_shape(payload)] += 1
        elif tag == "NS":
            for e in payload:
                self.set_numbers[number_shape(e)] += 1
        elif tag == "M":
            for k, v in payload.items():
                self.field_stats(k).add(v)
        elif tag == "L":
            elements = self.element_stats()
            for v in payload:
                elements.add(v)

    def merge(self, other: ValueStats) -> None:
        self.tags.update(other.tags)
        self.numbers.update(other.numbers)
        self.set_numbers.update(other.set_numbers)
        for k, v in other.fields.items():
            self.field_stats(k).merge(v)
        if other.elements is not None:
            self.element_stats().merge(other.elements)


def add_item(root: ValueStats, item: dict[str, dict]) -> None:
    """Account one item; the root of a stats tree counts items as the fields of one M value."""
    root.tags["M"] += 1
    for name, value in item.items():
        root.field_stats(name).add(value)
