"""NOT collected by pytest (no test_ prefix): converter crashes found by fuzzing, for the converter's owner.

Run: python -m pytest -q offload_assets_tests/reliability/converter_fuzz_report.py
Move into test_export_line_fuzz.py (NESTING_DEPTHS) once the converter raises ExportLineError.
"""

import pyarrow.fs as pafs
import pytest

from offload_assets.conversion import ConversionOptions, ExportLineError, convert_export_to_parquet
from offload_assets_tests.reliability.test_export_line_fuzz import _item, _nested, _write_input


@pytest.mark.parametrize("depth", [31, 100])
@pytest.mark.parametrize("bad_lines", ["fail", "quarantine"])
def test_deeply_nested_map_is_a_line_error_not_an_arrow_crash(tmp_path, depth, bad_lines):
    # Today: pyarrow.lib.ArrowInvalid: Recursion level in ArrowSchema struct exceeded
    # (duckdb_engine.py, to_arrow_reader); depths >= ~1000 already give ExportLineError (orjson's limit).
    src = _write_input(tmp_path, [_item({"ok": {"S": "1"}}), _nested(depth)], gzipped=True, truncate_to=None)
    out = tmp_path / "out"
    out.mkdir()
    fs = pafs.LocalFileSystem()
    with pytest.raises(ExportLineError):
        convert_export_to_parquet([str(src)], fs, str(out), fs, table_name="Fuzz", options=ConversionOptions(bad_lines=bad_lines))
    assert not [p for p in out.rglob("*") if p.is_file()]
