"""Arrow types <-> the Hive type strings of the Glue Data Catalog (what Athena reads)."""

from __future__ import annotations

import re

import pyarrow as pa

_SIMPLE_TO_ARROW = {
    "string": pa.string(),
    "varchar": pa.string(),
    "char": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
_SAFE_FIELD = re.compile(r"^[a-z0-9_]+$")


class GlueTypeError(ValueError):
    pass


def arrow_to_glue(t: pa.DataType) -> str:
    """The Glue/Hive type string for an Arrow type."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "int"
    if pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int8(t):
        return "tinyint"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_float32(t):
        return "float"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{arrow_to_glue(t.value_type)}>"
    if pa.types.is_struct(t):
        parts = []
        for f in t:
            name = f.name if _SAFE_FIELD.match(f.name) else f"`{f.name}`"
            parts.append(f"{name}:{arrow_to_glue(f.type)}")
        return f"struct<{','.join(parts)}>"
    if pa.types.is_map(t):
        return f"map<{arrow_to_glue(t.key_type)},{arrow_to_glue(t.item_type)}>"
    if pa.types.is_null(t):
        return "string"
    raise GlueTypeError(f"no Glue type for Arrow type {t}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def error(self, what: str) -> GlueTypeError:
        return GlueTypeError(f"cannot parse Glue type {self.text!r} at {self.pos}: {what}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        self.skip_ws()
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}")
        self.pos += 1

    def skip_ws(self) -> None:
        while self.peek().isspace():
            self.pos += 1

    def name(self) -> str:
        self.skip_ws()
        if self.peek() == "`":
            end = self.text.index("`", self.pos + 1)
            out = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return out
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ":<>,() ":
            self.pos += 1
        if start == self.pos:
            raise self.error("expected a name")
        return self.text[start : self.pos]

    def type(self) -> pa.DataType:
        word = self.name().lower()
        if word == "array":
            self.expect("<")
            inner = self.type()
            self.expect(">")
            return pa.list_(inner)
        if word == "map":
            self.expect("<")
            k = self.type()
            self.expect(",")
            v = self.type()
            self.expect(">")
            return pa.map_(k, v)
        if word == "struct":
            self.expect("<")
            fields = []
            self.skip_ws()
            while self.peek() != ">":
                fname = self.name()
                self.expect(":")
                fields.append(pa.field(fname, self.type()))
                self.skip_ws()
                if self.peek() == ",":
                    self.pos += 1
            self.expect(">")
            return pa.struct(fields)
        if word == "decimal":
            self.skip_ws()
            if self.peek() != "(":
                return pa.decimal128(10, 0)
            self.expect("(")
            p = int(self.name())
            self.expect(",")
            s = int(self.name())
            self.expect(")")
            return pa.decimal128(p, s)
        if word in ("varchar", "char"):
            self.skip_ws()
            if self.peek() == "(":
                self.expect("(")
                self.name()
                self.expect(")")
            return pa.string()
        if word in _SIMPLE_TO_ARROW:
            return _SIMPLE_TO_ARROW[word]
        raise self.error(f"unknown type {word!r}")


def glue_to_arrow(type_string: str) -> pa.DataType:
    """Parse a Glue/Hive type string (``struct<a:string,b:array<bigint>>``) into an Arrow type."""
    parser = _Parser(type_string.strip())
    out = parser.type()
    parser.skip_ws()
    if parser.pos != len(parser.text):
        raise parser.error("trailing characters")
    return out


_PRESTO_SAFE_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")


def arrow_to_presto(t: pa.DataType) -> str:
    """The Presto/Trino type name Athena stores in a view definition (``row(pages bigint)``, ``array(varchar)``)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array({arrow_to_presto(t.value_type)})"
    if pa.types.is_struct(t):
        parts = []
        for f in t:
            name = f.name if _PRESTO_SAFE_FIELD.match(f.name) else '"' + f.name.replace('"', '""') + '"'
            parts.append(f"{name} {arrow_to_presto(f.type)}")
        return f"row({', '.join(parts)})"
    if pa.types.is_map(t):
        return f"map({arrow_to_presto(t.key_type)}, {arrow_to_presto(t.item_type)})"
    hive = arrow_to_glue(t)
    return {
        "string": "varchar",
        "int": "integer",
        "float": "real",
        "binary": "varbinary",
    }.get(hive, hive)
