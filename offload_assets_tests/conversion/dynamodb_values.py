"""Test helpers: random DynamoDB items, their export lines, and reading converted Parquet back."""

from __future__ import annotations

import base64
import gzip
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import strategies as st

from offload_assets.conversion import DYNAMODB_TYPE_KEY, ORIGINAL_NAME_KEY, RESCUED_COLUMN

DESERIALIZER = TypeDeserializer()

# ------------------------------------------------------------------------------------------------
# Random values (native DynamoDB JSON, the form of export lines)

ATTRIBUTE_NAMES = st.sampled_from(
    [
        "id",
        "Id",
        "ID",
        "author",
        "Author",
        "price",
        "S",
        "N",
        "M",
        "L",
        "x-y",
        "x_y",
        "1st",
        "é",
        "_rescued_data",
        "tags",
        "n2",
    ]
)


@st.composite
def number_texts(draw) -> str:
    digits = draw(st.text("0123456789", min_size=1, max_size=38))
    if draw(st.booleans()):
        # plain notation, point anywhere
        point = draw(st.integers(0, len(digits)))
        text = digits[:point] + ("." + digits[point:] if point < len(digits) else "")
        text = text if not text.startswith(".") else "0" + text
    else:
        exponent = draw(st.integers(-130 + len(digits), 125 - len(digits)))
        text = str(Decimal(f"{digits}E{exponent}"))
    return draw(st.sampled_from(["", "-"])) + text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=8)),
    st.builds(lambda n: {"N": n}, number_texts()),
    st.builds(lambda n: {"N": n}, st.integers(-(2**63), 2**63 - 1).map(str)),
    st.builds(lambda b: {"B": b64(b)}, st.binary(max_size=8)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=4), min_size=1, max_size=3)),
    st.builds(lambda s: {"NS": sorted(s)}, st.sets(st.integers(-999, 999).map(str), min_size=1, max_size=3)),
    st.builds(lambda s: {"NS": list(s)}, st.lists(number_texts(), min_size=1, max_size=3, unique_by=Decimal)),
    st.builds(lambda s: {"BS": [b64(x) for x in s]}, st.sets(st.binary(max_size=4), min_size=1, max_size=3)),
)

values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.builds(lambda d: {"M": d}, st.dictionaries(ATTRIBUTE_NAMES, children, max_size=3)),
        st.builds(lambda xs: {"L": xs}, st.lists(children, max_size=3)),
    ),
    max_leaves=6,
)

items = st.dictionaries(ATTRIBUTE_NAMES, values, min_size=1, max_size=6)

# ------------------------------------------------------------------------------------------------
# Export lines

_TO_DATA_PIPELINE = {
    "S": "s",
    "N": "n",
    "B": "b",
    "SS": "sS",
    "NS": "nS",
    "BS": "bS",
    "M": "m",
    "L": "l",
    "BOOL": "bOOL",
    "NULL": "nULLValue",
}


def to_data_pipeline(value: dict) -> dict:
    ((tag, payload),) = value.items()
    if tag == "M":
        payload = {k: to_data_pipeline(v) for k, v in payload.items()}
    elif tag == "L":
        payload = [to_data_pipeline(v) for v in payload]
    return {_TO_DATA_PIPELINE[tag]: payload}


def native_line(item: dict) -> bytes:
    return orjson.dumps({"Item": item})


def data_pipeline_line(item: dict) -> bytes:
    return orjson.dumps({k: to_data_pipeline(v) for k, v in item.items()})


def write_lines(path, lines, *, gzipped: bool = True) -> None:
    data = b"".join(line + b"\n" for line in lines)
    if gzipped:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


# ------------------------------------------------------------------------------------------------
# The boto3 view of an item, and of a converted row


def wire_form(value: dict) -> dict:
    """JSON form → what botocore hands TypeDeserializer (base64 decoded to bytes)."""
    ((tag, payload),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(payload)}
    if tag == "BS":
        return {"BS": [base64.b64decode(x) for x in payload]}
    if tag == "M":
        return {"M": {k: wire_form(v) for k, v in payload.items()}}
    if tag == "L":
        return {"L": [wire_form(v) for v in payload]}
    return value


def python_value(value):
    """boto3's view, with sets as sorted lists and Binary as bytes (for comparison)."""
    return normalize(DESERIALIZER.deserialize(wire_form(value)))


def normalize(v):
    if isinstance(v, Binary):
        return bytes(v.value)
    if isinstance(v, (set, frozenset)):
        return sorted((normalize(x) for x in v), key=sort_key)
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    if isinstance(v, Decimal):
        return v.normalize() if v != 0 else Decimal(0)
    if isinstance(v, int) and not isinstance(v, bool):
        return Decimal(v)
    return v


def boto3_view(item: dict) -> dict:
    """The item as boto3's TypeDeserializer gives it; NULL attributes read as absent."""
    return {k: v for k, v in ((k, python_value(v)) for k, v in item.items()) if v is not None}


def cell_view(cell, field: pa.Field):
    """The boto3 view of a Parquet cell, using the column's field metadata."""
    if cell is None:
        return None
    label = field.metadata.get(DYNAMODB_TYPE_KEY, b"").decode() if field.metadata else ""
    t = field.type
    if label in ("JSON", "M_JSON"):
        return python_value(orjson.loads(cell))
    if pa.types.is_struct(t):
        out = {}
        for i in range(t.num_fields):
            f = t.field(i)
            v = cell_view(cell.get(f.name), f)
            if v is not None:
                out[f.metadata[ORIGINAL_NAME_KEY].decode()] = v
        return out
    if pa.types.is_list(t):
        element_field = t.value_field
        if not element_field.metadata:  # a Glue schema: guess from the list's label
            element_label = {"L_JSON": b"JSON", "NS": b"N"}.get(label, b"?")
            element_field = element_field.with_metadata({DYNAMODB_TYPE_KEY: element_label})
        xs = [cell_view(x, element_field) for x in cell]
        if label in ("SS", "NS", "BS"):
            return sorted(xs, key=sort_key)
        return xs
    if label == "N" and isinstance(cell, str):
        return normalize(Decimal(cell))
    return normalize(cell)


def read_back(path_or_table) -> list[dict]:
    """Rows of converted Parquet in boto3's view: typed columns and rescued values merged."""
    table = path_or_table if isinstance(path_or_table, pa.Table) else pq.read_table(path_or_table)
    rows = []
    fields = [f for f in table.schema if f.name != RESCUED_COLUMN]
    for row in table.to_pylist():
        out = {}
        for f in fields:
            v = cell_view(row[f.name], f)
            if v is not None:
                out[f.metadata[ORIGINAL_NAME_KEY].decode()] = v
        rescued = row.get(RESCUED_COLUMN)
        if rescued:
            for name, value in orjson.loads(rescued).items():
                assert name not in out, f"{name} both typed and rescued"
                v = python_value(value)
                if v is not None:
                    out[name] = v
        rows.append(out)
    return rows


def _json_default(o):
    if isinstance(o, Decimal):
        return "N:" + (str(o.normalize()) if o != 0 else "0")
    if isinstance(o, bytes):
        return "B:" + b64(o)
    raise TypeError(type(o))


def canonical_json(row: dict) -> str:
    """A comparable text of a boto3 view (keys sorted, exact decimals, bytes as base64)."""
    return orjson.dumps(row, default=_json_default, option=orjson.OPT_SORT_KEYS).decode()


def sort_key(value) -> str:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_SORT_KEYS).decode()
