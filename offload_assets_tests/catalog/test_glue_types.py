import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.catalog.glue_types import GlueTypeError, arrow_to_glue, arrow_to_presto, glue_to_arrow

CASES = [
    (pa.string(), "string"),
    (pa.int64(), "bigint"),
    (pa.bool_(), "boolean"),
    (pa.binary(), "binary"),
    (pa.float64(), "double"),
    (pa.decimal128(38, 9), "decimal(38,9)"),
    (pa.list_(pa.string()), "array<string>"),
    (pa.list_(pa.decimal128(38, 0)), "array<decimal(38,0)>"),
    (
        pa.struct([("pages", pa.int64()), ("publisher", pa.struct([("name", pa.string())]))]),
        "struct<pages:bigint,publisher:struct<name:string>>",
    ),
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


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_leaves = st.sampled_from(
    [
        pa.string(),
        pa.int64(),
        pa.int32(),
        pa.float64(),
        pa.bool_(),
        pa.binary(),
        pa.date32(),
        pa.decimal128(38, 4),
        pa.decimal128(20, 0),
    ]
)
_types = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(pa.list_, inner),
        st.lists(st.tuples(_names, inner), min_size=1, max_size=4, unique_by=lambda f: f[0]).map(pa.struct),
        st.builds(pa.map_, st.just(pa.string()), inner),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(_types)
def test_any_nested_type_round_trips_through_glue(t):
    assert glue_to_arrow(arrow_to_glue(t)) == t


@pytest.mark.parametrize(
    ("arrow", "presto"),
    [
        (pa.string(), "varchar"),
        (pa.int32(), "integer"),
        (pa.float32(), "real"),
        (pa.binary(), "varbinary"),
        (pa.decimal128(38, 2), "decimal(38,2)"),
        (
            pa.list_(pa.struct([("Has Space", pa.string()), ("n", pa.int64())])),
            'array(row("Has Space" varchar, n bigint))',
        ),
        (pa.map_(pa.string(), pa.list_(pa.bool_())), "map(varchar, array(boolean))"),
    ],
)
def test_presto_types_for_view_definitions(arrow, presto):
    assert arrow_to_presto(arrow) == presto


def test_the_glue_comment_of_rescued_data_says_what_it_holds():
    """Not "DynamoDB attribute _rescued_data": it is no attribute of the table."""
    import pyarrow as pa

    from offload_assets.catalog.glue_tables import _columns
    from offload_assets.conversion import ORIGINAL_NAME_KEY, RESCUED_COLUMN

    schema = pa.schema(
        [
            pa.field("user", pa.string(), metadata={ORIGINAL_NAME_KEY: b"User"}),
            pa.field(RESCUED_COLUMN, pa.string(), metadata={ORIGINAL_NAME_KEY: RESCUED_COLUMN.encode()}),
        ]
    )
    comments = {c["Name"]: c["Comment"] for c in _columns(schema)}
    assert comments["user"] == "DynamoDB attribute User"
    assert not comments[RESCUED_COLUMN].startswith("DynamoDB attribute") and "did not fit" in comments[RESCUED_COLUMN]
