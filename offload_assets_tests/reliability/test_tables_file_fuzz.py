"""Hostile tables files: whatever the YAML holds, loading either succeeds or raises TablesFileError."""

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload_assets.table_spec import TablesFileError, load_tables_file, parse_tables

FIELDS = [
    "dynamodb_table",
    "catalog_database",
    "catalog_table",
    "s3_bucket",
    "s3_prefix",
    "export_method",
    "export_hour",
    "timezone",
    "read_capacity_fraction",
    "scan_segments",
    "partitions_start",
    "compression",
    "bogus",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.text(alphabet=string.ascii_lowercase + "-./_", max_size=70),
    st.sampled_from(
        ["../..", "a/../b", "/etc/passwd", "s3://x", "UTC", "Mars/Base", "scan", "native", "2026-01-01", "x" * 300]
    ),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
entries = st.dictionaries(st.sampled_from(FIELDS), values, max_size=8)
documents = st.one_of(
    values,
    st.fixed_dictionaries({"tables": st.lists(st.one_of(entries, values), max_size=4)}),
    st.fixed_dictionaries({"tables": st.lists(entries, max_size=3), "defaults": st.one_of(entries, values)}),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_document_loads_or_fails_with_the_documented_error(doc):
    try:
        tables = parse_tables(doc, "fuzz.yaml")
    except TablesFileError as err:
        assert str(err).startswith("fuzz.yaml: ")
        return
    for spec in tables.tables:  # what loads is safe to use as names and prefixes
        assert ".." not in spec.s3_prefix.split("/") and not spec.s3_prefix.startswith("/")
        assert spec.catalog_table == spec.catalog_table.lower() and '"' not in spec.catalog_database
        assert 0 <= spec.export_hour <= 23


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_loader(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "tables.yaml"
    path.write_bytes(raw)
    try:
        load_tables_file(path)
    except TablesFileError as err:
        assert str(path) in str(err)


def test_deeply_nested_yaml_is_rejected_cleanly(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("tables: " + "[" * 5000 + "]" * 5000)
    try:
        load_tables_file(path)
    except TablesFileError as err:
        assert "deep.yaml" in str(err)
    else:
        raise AssertionError("a 5000-deep list is not a valid tables file")


def test_yaml_tags_cannot_run_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.dump({"tables": []}) + "x: !!python/object/apply:os.system ['touch pwned']\n")
    try:
        load_tables_file(path)
    except TablesFileError as err:
        assert "evil.yaml" in str(err)
    assert not (tmp_path / "pwned").exists()
