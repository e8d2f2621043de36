import pyarrow as pa
import pytest

from offload_assets.glue_types import GlueTypeError, arrow_to_glue, glue_to_arrow

CASES = [
    (pa.string(), "string"),
    (pa.int64(), "bigint"),
    (pa.bool_(), "boolean"),
    (pa.binary(), "binary"),
    (pa.float64(), "double"),
    (pa.decimal128(38, 9), "decimal(38,9)"),
    (pa.list_(pa.string()), "array<string>"),
    (pa.list_(pa.decimal128(38, 0)), "array<decimal(38,0)>"),
    (pa.struct([("pages", pa.int64()), ("publisher", pa.struct([("name", pa.string())]))]), "struct<pages:bigint,publisher:struct<name:string>>"),
    (pa.list_(pa.struct([("a", pa.list_(pa.binary()))])), "array<struct<a:array<binary>>>"),
    (pa.map_(pa.string(), pa.int64()), "map<string,bigint>"),
]


@pytest.mark.parametrize(("arrow", "glue"), CASES)
def test_round_trip(arrow, glue):
    assert arrow_to_glue(arrow) == glue
    assert glue_to_arrow(glue) == arrow


def test_quoted_struct_field_names_round_trip():
    t = pa.struct([("has space", pa.string()), ("ok", pa.int64())])
    assert arrow_to_glue(t) == "struct<`has space`:string,ok:bigint>"
    assert glue_to_arrow(arrow_to_glue(t)) == t


@pytest.mark.parametrize("bad", ["strin", "array<string", "struct<a:string", "decimal(38)", "string extra"])
def test_unparseable_types_are_reported(bad):
    with pytest.raises(GlueTypeError, match="cannot parse Glue type"):
        glue_to_arrow(bad)
