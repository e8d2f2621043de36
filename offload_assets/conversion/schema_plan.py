"""Deciding the Parquet schema: one column per attribute, one type per column.

The rules (the README's type-mapping table is TYPE_MAPPING.md):

* The column's DynamoDB type is the type most of its values have (``NULL`` values do not count;
  ties go to the first of S N B BOOL M L SS NS BS). Values of any other type are *rescued*: the
  column is null in that row and ``_rescued_data`` holds ``{"attribute": <DynamoDB JSON>}``.
* N → int64 when every N value is an integer within int64, otherwise decimal128(38, s) with the
  scale ``s`` that lets the most values fit exactly (ties: the smallest ``s``); a number that does
  not fit is rescued, never rounded. If no number fits any decimal128 the column holds the number
  text (string). float64 only with ``numbers_as_float``.
* M → struct of its keys (each decided by the same rules, names made safe the same way), or a
  DynamoDB-JSON string when the map has more than ``max_map_keys`` distinct keys.
* L → list of one element type when every non-NULL element has the same DynamoDB type, otherwise
  a list of DynamoDB-JSON strings (one per element).
* SS/NS/BS → list<string> / list<number type> / list<binary>; B → binary; BOOL → boolean;
  an attribute that is only ever NULL → string.
* A value nested in a map or list that does not fit rescues its whole top-level attribute.
* Maps and lists are typed down to :data:`MAX_TYPED_LEVELS` levels (the top-level attribute is
  level 1); a map or list below that is stored as its DynamoDB JSON text (a string field).
* Existing columns (``existing_schema``) keep their type; their DynamoDB type comes from the
  ``dynamodb_type`` field metadata or, when absent (a schema read back from Glue), from the Arrow
  type, choosing among the DynamoDB types that produce it the one most values have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from .column_names import assign_column_names
from .options import (
    DYNAMODB_TYPE_KEY,
    ORIGINAL_NAME_KEY,
    RESCUED_COLUMN,
    RESERVED_COLUMNS,
    ConversionOptions,
)
from .value_stats import NumberShape, ValueStats

TAG_PRECEDENCE = ("S", "N", "B", "BOOL", "M", "L", "SS", "NS", "BS")
MAX_DECIMAL_DIGITS = 38
#: Maps and lists at levels 1..24 become structs and lists; one at level 25 or deeper (DynamoDB
#: allows 31) is a JSON string. DuckDB's JSON reader hands pyarrow two nesting levels per
#: DynamoDB level (the type-tag struct and the map or list) and pyarrow refuses more than 64:
#: measured, reading broke at 30 levels (29 with a set at the bottom); 24 keeps a margin.
MAX_TYPED_LEVELS = 24


@dataclass(frozen=True)
class Kind:
    """How the values of one position are stored.

    ``tag`` is the DynamoDB type accepted (``JSON``: the DynamoDB JSON text of values whose tag is
    in ``accepts``, any tag when ``accepts`` is empty). ``NULL`` values are always stored as null.
    """

    tag: str
    arrow_type: pa.DataType
    fields: tuple[FieldPlan, ...] = ()
    element: Kind | None = None
    accepts: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        if self.tag == "JSON":
            return "M_JSON" if self.accepts == {"M"} else "JSON"
        if self.tag == "L" and self.element is not None and self.element.tag == "JSON":
            return "L_JSON"
        return self.tag


@dataclass(frozen=True)
class FieldPlan:
    """A column (or struct field): its safe ``name``, the attribute it holds and how."""

    name: str
    original: str
    kind: Kind
    existing: bool = False

    def arrow_field(self) -> pa.Field:
        return pa.field(
            self.name,
            self.kind.arrow_type,
            metadata={ORIGINAL_NAME_KEY: self.original.encode(), DYNAMODB_TYPE_KEY: self.kind.label.encode()},
        )


@dataclass(frozen=True)
class SchemaPlan:
    """The output schema and, per column, how to fill it."""

    columns: tuple[FieldPlan, ...]
    """Data columns in schema order, without ``_rescued_data``."""
    schema: pa.Schema
    """Full output schema, ``_rescued_data`` included."""
    by_attribute: dict[str, FieldPlan] = field(default_factory=dict)

    @property
    def renamed_columns(self) -> dict[str, str]:
        return {c.original: c.name for c in self.columns if c.original != c.name}


# ---------------------------------------------------------------------------------------------
# Kinds decided from statistics


def list_of(value_type: pa.DataType, label: str) -> pa.DataType:
    """A list type as Parquet writes it back (element field named ``element``), the element's
    DynamoDB type in its metadata."""
    return pa.list_(pa.field("element", value_type, metadata={DYNAMODB_TYPE_KEY: label.encode()}))


def string_kind() -> Kind:
    return Kind("S", pa.string())


def json_kind(accepts: frozenset[str] = frozenset()) -> Kind:
    return Kind("JSON", pa.string(), accepts=accepts)


def majority_tag(stats: ValueStats) -> str | None:
    counts = {t: c for t, c in stats.tags.items() if t != "NULL" and c > 0}
    if not counts:
        return None
    return max(counts, key=lambda t: (counts[t], -TAG_PRECEDENCE.index(t)))


def decide_number_type(shapes, options: ConversionOptions) -> pa.DataType:
    if options.numbers_as_float:
        return pa.float64()
    if all(shape.fits_int64 for shape in shapes):
        return pa.int64()
    best_scale, best_count = 0, -1
    for scale in range(MAX_DECIMAL_DIGITS + 1):
        count = sum(n for shape, n in shapes.items() if decimal_fits(shape, MAX_DECIMAL_DIGITS, scale))
        if count > best_count:
            best_scale, best_count = scale, count
    if best_count == 0:
        return pa.string()
    return pa.decimal128(MAX_DECIMAL_DIGITS, best_scale)


def decimal_fits(shape: NumberShape, precision: int, scale: int) -> bool:
    return shape.frac_digits <= scale and shape.int_digits <= precision - scale


def decide_kind(stats: ValueStats, options: ConversionOptions, level: int = 1) -> Kind:
    """The kind of the values at one position; ``level`` is 1 for a top-level attribute, one more
    per enclosing map or list."""
    tag = majority_tag(stats)
    if tag is None or tag == "S":
        return string_kind()
    if tag == "N":
        return Kind("N", decide_number_type(stats.numbers, options))
    if tag == "B":
        return Kind("B", pa.binary())
    if tag == "BOOL":
        return Kind("BOOL", pa.bool_())
    if tag == "SS":
        return Kind("SS", list_of(pa.string(), "S"), element=string_kind())
    if tag == "NS":
        element = Kind("N", decide_number_type(stats.set_numbers, options))
        return Kind("NS", list_of(element.arrow_type, "N"), element=element)
    if tag == "BS":
        element = Kind("B", pa.binary())
        return Kind("BS", list_of(pa.binary(), "B"), element=element)
    if tag == "M":
        if len(stats.fields) > options.max_map_keys or level > MAX_TYPED_LEVELS:
            return json_kind(frozenset({"M"}))
        return struct_kind(new_fields(stats.fields, {}, options, level=level + 1))
    if tag == "L":
        if level > MAX_TYPED_LEVELS:
            return json_kind()
        element_stats = stats.elements or ValueStats()
        element_tags = {t for t, c in element_stats.tags.items() if t != "NULL" and c > 0}
        element = json_kind() if len(element_tags) > 1 else decide_kind(element_stats, options, level + 1)
        return Kind("L", list_of(element.arrow_type, element.label), element=element)
    raise AssertionError(tag)


def struct_kind(fields: tuple[FieldPlan, ...]) -> Kind:
    if not fields:
        # Parquet cannot store a struct without fields: an always-empty map keeps a JSON column.
        return json_kind(frozenset({"M"}))
    return Kind("M", pa.struct([f.arrow_field() for f in fields]), fields=fields)


def new_fields(
    stats: dict[str, ValueStats],
    taken: dict[str, str | None],
    options: ConversionOptions,
    reserved=(),
    level: int = 1,
) -> tuple[FieldPlan, ...]:
    names = assign_column_names(stats, taken, reserved)
    plans = [FieldPlan(names[attr], attr, decide_kind(s, options, level)) for attr, s in stats.items()]
    return tuple(sorted(plans, key=lambda p: p.name))


# ---------------------------------------------------------------------------------------------
# Kinds of existing columns


def _meta(field_: pa.Field, key: bytes) -> str | None:
    if field_.metadata and key in field_.metadata:
        return field_.metadata[key].decode()
    return None


def kind_from_arrow(
    arrow_type: pa.DataType, label: str | None, stats: ValueStats | None, options: ConversionOptions
) -> Kind:
    """The :class:`Kind` of an existing column: same Arrow type, DynamoDB type from metadata or
    from what the new values are."""
    stats = stats or ValueStats()
    t = arrow_type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        t = pa.string()
    if pa.types.is_string(t):
        if label in ("M_JSON",):
            return Kind("JSON", arrow_type, accepts=frozenset({"M"}))
        if label == "JSON":
            return Kind("JSON", arrow_type)
        if label == "N":
            return Kind("N", arrow_type)
        return Kind("S", arrow_type)
    if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_floating(t):
        return Kind("N", arrow_type)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return Kind("B", arrow_type)
    if pa.types.is_boolean(t):
        return Kind("BOOL", arrow_type)
    if pa.types.is_null(t):
        return Kind("S", arrow_type)
    if pa.types.is_struct(t):
        taken = {}
        sub_fields = []
        existing_names = [t.field(i) for i in range(t.num_fields)]
        taken = {f.name: _meta(f, ORIGINAL_NAME_KEY) for f in existing_names}
        names = assign_column_names(stats.fields, taken)
        original_of = {col: attr for attr, col in names.items()}
        for f in existing_names:
            original = _meta(f, ORIGINAL_NAME_KEY) or original_of.get(f.name, f.name)
            kind = kind_from_arrow(f.type, _meta(f, DYNAMODB_TYPE_KEY), stats.fields.get(original), options)
            sub_fields.append(FieldPlan(f.name, original, kind, existing=True))
        return Kind("M", arrow_type, fields=tuple(sub_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        value_type = t.value_type
        candidates = []
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            candidates.append("SS")
        elif pa.types.is_integer(value_type) or pa.types.is_decimal(value_type) or pa.types.is_floating(value_type):
            candidates.append("NS")
        elif pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type):
            candidates.append("BS")
        candidates.append("L")
        if label in ("SS", "NS", "BS"):
            tag = label
        elif label in ("L", "L_JSON"):
            tag = "L"
        else:
            tag = max(candidates, key=lambda c: (stats.tags.get(c, 0), c != "L"))
        element_label = _meta(t.value_field, DYNAMODB_TYPE_KEY)
        if tag == "L":
            if element_label is None:
                element_label = "JSON" if label == "L_JSON" else None
            if element_label is None and pa.types.is_string(value_type) and stats.elements:
                element_tags = {x for x, c in stats.elements.tags.items() if x != "NULL" and c}
                if len(element_tags) > 1 or (element_tags and element_tags != {"S"}):
                    element_label = "JSON"
            element = kind_from_arrow(value_type, element_label, stats.elements, options)
        else:
            element = kind_from_arrow(value_type, tag[0] if tag != "SS" else "S", None, options)
        return Kind(tag, arrow_type, element=element)
    raise ValueError(f"existing column type {arrow_type} cannot hold DynamoDB values")


# ---------------------------------------------------------------------------------------------
# The plan


def column_order_key(key_attributes: tuple[str, ...]):
    """Sort key of new columns: the hash key, the range key, then the others by name."""
    rank = {attr: i for i, attr in enumerate(key_attributes)}
    return lambda p: (rank.get(p.original, len(rank)), p.name)


def plan_schema(stats: ValueStats, existing_schema: pa.Schema | None, options: ConversionOptions) -> SchemaPlan:
    """Columns for every attribute in ``stats`` (the root: an item's fields): existing columns
    first in their order, then new ones (key attributes first, see :func:`column_order_key`),
    ``_rescued_data`` always last (a new column goes before it: SQL's ``SELECT *`` ends with it)."""
    # A column named like the partition key (left by a version that let an attribute take it) is
    # dropped here, so its attribute gets a renamed column and the table is repaired.
    existing_fields = [f for f in (existing_schema or []) if f.name not in RESERVED_COLUMNS]
    taken = {f.name: _meta(f, ORIGINAL_NAME_KEY) for f in existing_fields}
    names = assign_column_names(stats.fields, taken, reserved=RESERVED_COLUMNS)
    original_of = {col: attr for attr, col in names.items()}
    columns: list[FieldPlan] = []
    for f in existing_fields:
        original = _meta(f, ORIGINAL_NAME_KEY) or original_of.get(f.name, f.name)
        kind = kind_from_arrow(f.type, _meta(f, DYNAMODB_TYPE_KEY), stats.fields.get(original), options)
        columns.append(FieldPlan(f.name, original, kind, existing=True))
    existing_names = {f.name for f in existing_fields}
    new_attrs = {a: s for a, s in stats.fields.items() if names[a] not in existing_names}
    new_names = assign_column_names(new_attrs, {c.name: c.original for c in columns}, RESERVED_COLUMNS)
    new_plans = sorted(
        (FieldPlan(new_names[a], a, decide_kind(s, options)) for a, s in new_attrs.items()),
        key=column_order_key(options.key_attributes),
    )
    columns.extend(new_plans)

    fields: list[pa.Field] = []
    rescued_field = pa.field(
        RESCUED_COLUMN,
        pa.string(),
        metadata={ORIGINAL_NAME_KEY: RESCUED_COLUMN.encode(), DYNAMODB_TYPE_KEY: b"JSON"},
    )
    by_name = {c.name: c for c in columns}
    for f in existing_schema or []:
        if f.name not in RESERVED_COLUMNS:  # _rescued_data is placed last, after any new column
            plan = by_name[f.name]
            metadata = dict(f.metadata or {})
            metadata[ORIGINAL_NAME_KEY] = plan.original.encode()
            metadata.setdefault(DYNAMODB_TYPE_KEY, plan.kind.label.encode())
            fields.append(pa.field(f.name, f.type, nullable=True, metadata=metadata))
    fields.extend(p.arrow_field() for p in new_plans)
    fields.append(rescued_field)
    return SchemaPlan(
        columns=tuple(columns),
        schema=pa.schema(fields),
        by_attribute={c.original: c for c in columns},
    )
