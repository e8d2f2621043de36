"""Input DynamoDB could not have written, and input at its limits (issue #8).

* maps and lists nested to DynamoDB's limit convert exactly: typed down to
  ``MAX_TYPED_LEVELS``, DynamoDB JSON text below; deeper than 32 levels is a bad line;
* numbers beyond DynamoDB's range (9.99…E+125 .. 1E-130) or precision (38 digits) are bad lines;
  numbers at the limits convert exactly;
* a key twice in one JSON object (an attribute, a type tag, a map key) is a bad line.

Every case runs on both engines: the vectorised one and the per-item reference (which the Spark
job runs), in both ``bad_lines`` modes where it matters.
"""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.conversion import ConversionOptions, ExportLineError, convert_export_to_parquet, duckdb_engine
from offload_assets.conversion.export_lines import MAX_NESTING_LEVELS, NotAnItem, parse_line
from offload_assets.conversion.options import DYNAMODB_TYPE_KEY
from offload_assets.conversion.schema_plan import MAX_TYPED_LEVELS

from .dynamodb_values import boto3_view, native_line, read_back, write_lines

LOCAL = pafs.LocalFileSystem()
ENGINES = ["duckdb", "python"]
MODES = ["fail", "quarantine"]


def convert(tmp_path, lines, *, engine="duckdb", bad_lines="fail", existing_schema=None, out="out"):
    path = tmp_path / "data.json.gz"
    write_lines(path, lines)
    result = convert_export_to_parquet(
        [str(path)],
        LOCAL,
        str(tmp_path / out),
        LOCAL,
        table_name="Deep",
        existing_schema=existing_schema,
        options=ConversionOptions(engine=engine, bad_lines=bad_lines),
    )
    return result, tmp_path / out


def same_rows(out, items) -> bool:
    """The converted rows are exactly ``items`` (boto3's view; row order is not kept)."""
    key = lambda row: row["pk"]  # noqa: E731
    return sorted(read_back(out), key=key) == sorted((boto3_view(i) for i in items), key=key)


def quarantined(result) -> list[dict]:
    if not result.quarantine_files:
        return []
    (path,) = result.quarantine_files
    return [orjson.loads(x) for x in open(path, "rb")]


def assert_failed_cleanly(info, tmp_path, line: int, *words: str) -> None:
    err = info.value
    assert err.table == "Deep" and err.file.endswith("data.json.gz") and err.line == line
    for word in words:
        assert word in err.reason, err.reason
    out = tmp_path / "out"
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


# ------------------------------------------------------------------------------------------------
# Nesting


def nested(depth: int, shape: str = "map", leaf: dict | None = None) -> dict:
    """``depth`` maps and/or lists around ``leaf``: the top-level attribute's own map is level 1."""
    value = leaf or {"S": "leaf"}
    for level in range(depth, 0, -1):
        as_map = shape == "map" or (shape == "mixed" and level % 2)
        value = {"M": {"a": value, f"n{level}": {"N": str(level)}}} if as_map else {"L": [value]}
    return value


def deep_items(depth: int, shape: str) -> list[dict]:
    return [
        {"pk": {"S": "flat"}},
        {"pk": {"S": "deep"}, "deep": nested(depth, shape), "sets": nested(depth, shape, {"SS": ["x", "y"]})},
        {"pk": {"S": "other"}, "deep": nested(depth, shape, {"S": "other leaf"})},
    ]


def typed_levels(arrow_type: pa.DataType) -> int:
    """Maps/lists typed as struct/list along the ``a`` (or first element) path."""
    levels = 0
    while pa.types.is_struct(arrow_type) or pa.types.is_list(arrow_type):
        levels += 1
        arrow_type = arrow_type.field("a").type if pa.types.is_struct(arrow_type) else arrow_type.value_type
    return levels


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("shape", ["map", "list", "mixed"])
@pytest.mark.parametrize("depth", [20, MAX_TYPED_LEVELS, MAX_TYPED_LEVELS + 1, 31, MAX_NESTING_LEVELS])
def test_nesting_up_to_dynamodb_limit_converts_exactly(tmp_path, engine, shape, depth):
    items = deep_items(depth, shape)
    result, out = convert(tmp_path, [native_line(i) for i in items], engine=engine)
    assert result.rows == 3 and result.rescued_counts == {}
    assert same_rows(out, items)
    # typed as deep as it can be, then one DynamoDB-JSON string
    deep_type = result.schema.field("deep").type
    assert typed_levels(deep_type) == min(depth, MAX_TYPED_LEVELS)
    if depth > MAX_TYPED_LEVELS:
        t, f = deep_type, None
        for _ in range(MAX_TYPED_LEVELS):
            f = t.field("a") if pa.types.is_struct(t) else t.value_field
            t = f.type
        assert t == pa.string() and f.metadata[DYNAMODB_TYPE_KEY] in (b"M_JSON", b"JSON")


@pytest.mark.parametrize("bad_lines", MODES)
@pytest.mark.parametrize("depth", [20, 31, MAX_NESTING_LEVELS])
def test_deep_values_are_queryable_in_duckdb(tmp_path, depth, bad_lines):
    items = deep_items(depth, "map")
    result, out = convert(tmp_path, [native_line(i) for i in items], bad_lines=bad_lines)
    assert result.quarantined_lines == 0
    con = duckdb.connect()
    con.register("t", ds.dataset(str(out)))
    typed = min(depth, MAX_TYPED_LEVELS)
    # the leaf number of every level: typed levels by struct path, deeper ones from the JSON text
    for level in (1, typed, depth):
        if level <= MAX_TYPED_LEVELS:
            sql = f"SELECT deep{'.a' * (level - 1)}.n{level} FROM t WHERE pk = 'deep'"
        else:
            json_path = "$" + ".M.a" * (level - MAX_TYPED_LEVELS - 1) + f".M.n{level}.N"
            sql = f"SELECT json_extract_string(deep{'.a' * MAX_TYPED_LEVELS}, '{json_path}') FROM t WHERE pk = 'deep'"
        assert con.sql(sql).fetchall() == [(level,) if level <= MAX_TYPED_LEVELS else (str(level),)]
    if depth <= MAX_TYPED_LEVELS:
        leaf = con.sql(f"SELECT deep{'.a' * depth} FROM t WHERE pk = 'deep'").fetchall()
    else:
        leaf = con.sql(
            f"SELECT json_extract_string(deep{'.a' * MAX_TYPED_LEVELS}, "
            f"'$' || repeat('.M.a', {depth - MAX_TYPED_LEVELS}) || '.S') FROM t WHERE pk = 'deep'"
        ).fetchall()
    assert leaf == [("leaf",)]


@pytest.mark.parametrize("engine", ENGINES)
def test_deep_partition_keeps_the_schema_of_the_previous_one(tmp_path, engine):
    items = deep_items(MAX_NESTING_LEVELS, "mixed")
    first, _ = convert(tmp_path, [native_line(i) for i in items], engine=engine, out="p1")
    second, out = convert(
        tmp_path, [native_line(i) for i in reversed(items)], engine=engine, existing_schema=first.schema, out="p2"
    )
    assert second.schema == first.schema and second.rescued_counts == {}
    assert same_rows(out, items)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bad_lines", MODES)
@pytest.mark.parametrize("depth", [MAX_NESTING_LEVELS + 1, 100, 5000])
@pytest.mark.parametrize("shape", ["map", "mixed"])
def test_nesting_deeper_than_dynamodb_allows_is_a_bad_line(tmp_path, engine, bad_lines, depth, shape):
    good = [{"pk": {"S": str(i)}, "deep": nested(3, shape)} for i in range(4)]
    lines = [native_line(i) for i in good]
    too_deep = '{"S":"leaf"}'
    for _ in range(depth):
        too_deep = '{"M":{"a":' + too_deep + "}}" if shape == "map" else '{"L":[{"M":{"a":' + too_deep + "}}]}"
    lines.insert(2, b'{"Item":{"pk":{"S":"deep"},"deep":' + too_deep.encode() + b"}}")
    if bad_lines == "fail":
        with pytest.raises(ExportLineError) as info:
            convert(tmp_path, lines, engine=engine)
        assert_failed_cleanly(info, tmp_path, 3)
        if depth <= 1000:  # JSON parsers refuse deeper lines themselves ("not JSON")
            assert "'deep'" in info.value.reason and str(MAX_NESTING_LEVELS) in info.value.reason
        return
    result, out = convert(tmp_path, lines, engine=engine, bad_lines="quarantine")
    assert result.rows == 4 and same_rows(out, good)
    assert [r["line"] for r in quarantined(result)] == [3]


# ------------------------------------------------------------------------------------------------
# Numbers

BAD_NUMBERS = {
    "1e126": "beyond",
    "-1E+126": "beyond",
    "1" + "0" * 126: "beyond",
    "9.99E+125x": "number",
    "1e-131": "below",
    "-0." + "0" * 130 + "1": "below",
    "1" * 39: "38 significant digits",
    "1." + "2" * 38: "38 significant digits",
    "NaN": "number",
    "Infinity": "number",
    "-Infinity": "number",
    "1e": "number",
    "١٢": "number",  # digits, but not ASCII ones
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", list(BAD_NUMBERS))
@pytest.mark.parametrize("where", ["N", "NS", "nested N"])
def test_a_number_dynamodb_cannot_hold_is_a_bad_line_naming_the_attribute(tmp_path, engine, text, where):
    value = {"N": {"N": text}, "NS": {"NS": ["1", text]}, "nested N": {"M": {"x": {"N": text}}}}[where]
    lines = [native_line({"pk": {"S": str(i)}, "amount": {"N": "1"}}) for i in range(3)]
    lines.insert(1, native_line({"pk": {"S": "bad"}, "amount": value}))
    with pytest.raises(ExportLineError) as info:
        convert(tmp_path, lines, engine=engine)
    assert_failed_cleanly(info, tmp_path, 2, "'amount", BAD_NUMBERS[text])


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_numbers_are_quarantined_and_the_rest_converts(tmp_path, engine):
    lines = [native_line({"pk": {"S": "ok"}, "n": {"N": "5"}})]
    lines += [native_line({"pk": {"S": "bad"}, "n": {"N": t}}) for t in ("1e126", "1" * 39, "NaN")]
    result, out = convert(tmp_path, lines, engine=engine, bad_lines="quarantine")
    assert result.rows == 1 and pq.read_table(out).column("n").to_pylist() == [5]
    records = quarantined(result)
    assert [r["line"] for r in records] == [2, 3, 4] and all("'n'" in r["reason"] for r in records)


EDGE_NUMBERS = [
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1" + "0" * 125,
    "1E-130",
    "-1E-130",
    "0." + "0" * 129 + "1",
    "12345678901234567890123456789012345678",
    "-0.12345678901234567890123456789012345678",
    "1.5000000000000000000000000000000000000000000",
    "1E+125",
    "0",
    "-0",
    "+5",
    "007",
    "0.0000",
    "1e0",
]


@pytest.mark.parametrize("engine", ENGINES)
def test_numbers_at_dynamodb_limits_convert_exactly(tmp_path, engine):
    items = [{"pk": {"S": str(i)}, f"n{i}": {"N": text}} for i, text in enumerate(EDGE_NUMBERS)]
    edge_set = [EDGE_NUMBERS[0], "-1E-130", "12345678901234567890123456789012345678", "0"]
    items.append({"pk": {"S": "set"}, "ns": {"NS": edge_set}})
    result, out = convert(tmp_path, [native_line(i) for i in items], engine=engine)
    assert result.rows == len(items)
    rows = {r["pk"]: r for r in pq.read_table(out).to_pylist()}

    def cell(pk: str, column: str, tag: str):
        value = rows[pk][column]
        if value is None:  # did not fit the column's type: rescued, exact
            value = orjson.loads(rows[pk]["_rescued_data"])[column][tag]
        return value

    for i, text in enumerate(EDGE_NUMBERS):
        assert Decimal(str(cell(str(i), f"n{i}", "N"))) == Decimal(text), text
    assert [Decimal(str(x)) for x in cell("set", "ns", "NS")] == [Decimal(t) for t in edge_set]


# ------------------------------------------------------------------------------------------------
# Payloads of the wrong JSON type (DuckDB's reader would take {"S": 1} as "1")

WRONG_TYPES = {
    "S number": ({"S": 12}, "S must be a string"),
    "S float": ({"S": 1.50}, "S must be a string"),
    "S true": ({"S": True}, "S must be a string"),
    "S list": ({"S": ["a"]}, "S must be a string"),
    "N number": ({"N": 2}, "N must be a number"),
    "BOOL string": ({"BOOL": "true"}, "BOOL must be"),
    "BOOL number": ({"BOOL": 1}, "BOOL must be"),
    "NULL number": ({"NULL": 1}, "NULL must be"),
    "SS numbers": ({"SS": [1]}, "SS must be"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_a_payload_of_the_wrong_json_type_is_a_bad_line_on_both_engines(tmp_path, engine, case):
    value, reason = WRONG_TYPES[case]
    (tag,) = value
    good = {"S": "x", "N": "1", "BOOL": True, "NULL": True, "SS": ["a"]}[tag]
    # plain text, or text with escapes that do not balance the wrong payload's length (a known
    # gap of the vectorised path's length check, see arrow_coverage)
    text = {"S": 'a "quoted" \\ \n word'} if case.startswith("S") else {"S": "plain text"}
    lines = [native_line({"pk": {"S": str(i)}, "v": {tag: good}, "t": text}) for i in range(5)]
    lines.insert(3, native_line({"pk": {"S": "bad"}, "v": value, "t": text}))
    with pytest.raises(ExportLineError) as info:
        convert(tmp_path, lines, engine=engine)
    assert_failed_cleanly(info, tmp_path, 4, "'v'", reason)


# ------------------------------------------------------------------------------------------------
# Duplicate keys

DUPLICATES = {
    "attribute": (b'{"Item":{"pk":{"S":"d"},"title":{"S":"a"},"title":{"S":"b"}}}', "'title'"),
    "key attribute": (b'{"Item":{"pk":{"S":"a"},"pk":{"S":"b"}}}', "'pk'"),
    "type tag": (b'{"Item":{"pk":{"S":"d"},"title":{"S":"a","S":"b"}}}', "'S'"),
    "map key": (b'{"Item":{"pk":{"S":"d"},"title":{"M":{"k":{"N":"1"},"k":{"N":"2"}}}}}', "'k'"),
    "Item": (b'{"Item":{"pk":{"S":"d"}},"Item":{"pk":{"S":"e"}}}', "'Item'"),
    "with colons in strings": (b'{"Item":{"pk":{"S":"12:30"},"t:x":{"S":"a:b::"},"t:x":{"S":"c"}}}', "'t:x'"),
    "spaced": (b'{ "Item" : { "pk" : { "S" : "d" } , "title" : { "S" : "a" } , "title" : { "N" : "1" } } }', "'title'"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(DUPLICATES))
def test_a_duplicate_json_key_is_a_bad_line_naming_the_key(tmp_path, engine, case):
    line, key = DUPLICATES[case]
    lines = [native_line({"pk": {"S": str(i)}, "title": {"S": "t"}}) for i in range(4)]
    lines.insert(2, line)
    with pytest.raises(ExportLineError) as info:
        convert(tmp_path, lines, engine=engine)
    assert_failed_cleanly(info, tmp_path, 3, "duplicate key", key)


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_keys_past_the_sample_are_quarantined(tmp_path, engine, monkeypatch):
    monkeypatch.setattr(duckdb_engine, "SAMPLE_LINES", 2)
    good = [{"pk": {"S": str(i)}, "title": {"S": f"t{i}:x"}} for i in range(6)]
    lines = [native_line(i) for i in good]
    lines.insert(4, DUPLICATES["attribute"][0])
    lines.insert(6, DUPLICATES["type tag"][0])
    result, out = convert(tmp_path, lines, engine=engine, bad_lines="quarantine")
    assert result.rows == 6 and same_rows(out, good)
    records = quarantined(result)
    assert [r["line"] for r in records] == [5, 7] and all("duplicate key" in r["reason"] for r in records)


@pytest.mark.parametrize("engine", ENGINES)
def test_colons_and_escaped_colons_in_strings_are_not_duplicates(tmp_path, engine):
    lines = [
        b'{"Item":{"pk":{"S":"a\\u003ab"},"url":{"S":"http://x:80/y"},"m":{"M":{"k:1":{"S":":"}}}}}',
        b'{"Item":{"pk":{"S":"\\":\\""},"url":{"S":"\\u003A"},"m":{"M":{"k:1":{"L":[{"S":"::"}]}}}}}',
    ]
    result, out = convert(tmp_path, lines, engine=engine)
    assert result.rows == 2 and result.quarantined_lines == 0
    assert same_rows(out, [orjson.loads(x)["Item"] for x in lines])


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_keys_in_data_pipeline_lines_are_bad_lines(tmp_path, engine):
    lines = [b'{"pk":{"s":"1"}}', b'{"pk":{"s":"2"},"x":{"n":"1"},"x":{"n":"2"}}']
    with pytest.raises(ExportLineError) as info:
        convert(tmp_path, lines, engine=engine)
    assert_failed_cleanly(info, tmp_path, 2, "duplicate key 'x'")


# parse_line against an oracle: objects as lists of pairs, so a key can repeat
KEYS = st.sampled_from(["a", "b", ":", "a:b", "é:", "\u2028"])
STRINGS = st.text(alphabet=st.sampled_from(["x", ":", '"', "\\", "é", "\u003a"]), max_size=5)
TREES = st.recursive(
    st.one_of(STRINGS, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(st.tuples(KEYS, children), max_size=3).map(lambda pairs: ("object", pairs)),
    ),
    max_leaves=12,
)


def _dump(tree, escape_colons: bool, spaced: bool) -> str:
    sep, colon = (", ", " : ") if spaced else (",", ":")
    if isinstance(tree, tuple):
        return (
            "{"
            + sep.join(_dump(k, escape_colons, spaced) + colon + _dump(v, escape_colons, spaced) for k, v in tree[1])
            + "}"
        )
    if isinstance(tree, list):
        return "[" + sep.join(_dump(x, escape_colons, spaced) for x in tree) + "]"
    text = json.dumps(tree, ensure_ascii=False)
    return text.replace(":", "\\u003a") if escape_colons and isinstance(tree, str) else text


def _has_duplicate(tree) -> bool:
    if isinstance(tree, tuple):
        keys = [k for k, _ in tree[1]]
        return len(set(keys)) != len(keys) or any(_has_duplicate(v) for _, v in tree[1])
    if isinstance(tree, list):
        return any(_has_duplicate(x) for x in tree)
    return False


@given(TREES.map(lambda t: ("object", [("Item", t)])), st.booleans(), st.booleans(), st.booleans())
@settings(max_examples=300)
def test_parse_line_finds_exactly_the_duplicate_keys(tree, escape_colons, spaced, as_bytes):
    text = _dump(tree, escape_colons, spaced)
    line = text.encode() if as_bytes else text
    if _has_duplicate(tree):
        with pytest.raises(NotAnItem, match="duplicate key"):
            parse_line(line)
    else:
        assert parse_line(line) == json.loads(text)


# ------------------------------------------------------------------------------------------------
# The Spark job's tasks (pass 1: statistics per file, pass 2: convert per file) on the same input


def test_spark_tasks_give_the_in_process_result_on_deep_nesting_and_edge_numbers(tmp_path):
    from offload_assets.conversion.schema_plan import plan_schema
    from offload_assets.spark.spark_conversion import convert_file, file_stats, merge_stats

    items = deep_items(MAX_NESTING_LEVELS, "mixed") + deep_items(MAX_TYPED_LEVELS + 1, "map")[1:]
    items += [{"pk": {"S": f"n{i}"}, "n": {"N": text}} for i, text in enumerate(EDGE_NUMBERS)]
    for i, item in enumerate(items):
        item["pk"] = {"S": f"{i}-{item['pk']['S']}"}
    result, out = convert(tmp_path, [native_line(i) for i in items])
    path = str(tmp_path / "data.json.gz")
    stats, rows = merge_stats([file_stats(path, LOCAL, "Deep", ConversionOptions())])
    plan = plan_schema(stats, None, ConversionOptions())
    written, rescued = convert_file(
        path, LOCAL, str(tmp_path / "spark" / "part-00000.parquet"), LOCAL, plan, "Deep", ConversionOptions()
    )
    assert rows == written.rows == result.rows == len(items)
    assert plan.schema == result.schema and rescued == result.rescued_counts
    spark_rows = pq.read_table(written.path).sort_by("pk")
    assert spark_rows.equals(pq.read_table(out).select(spark_rows.column_names).sort_by("pk"))
    assert spark_rows.num_rows == len(items) and spark_rows.column("n").null_count < len(items)
