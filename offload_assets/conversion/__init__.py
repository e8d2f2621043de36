"""DynamoDB export → Parquet conversion (pure: no Dagster, no AWS clients).

Public API: :func:`convert_export_to_parquet` with :class:`ConversionOptions`, returning a
:class:`ConversionResult`; :class:`ExportLineError` for bad input, :class:`DataFileMismatch` for a
data file that is not what its manifest (:class:`ExpectedDataFile`) says; readers for export lines
(:func:`iter_export_items`, :func:`iter_incremental_changes`, :func:`read_incremental_change`);
and :func:`type_mapping_markdown` (the README's type-mapping table).
"""

from .column_names import assign_column_names, safe_column_name
from .convert import convert_export_to_parquet
from .export_lines import (
    ExportItem,
    IncrementalChange,
    NotAnItem,
    detect_line_format,
    is_incremental_line,
    item_from_line,
    iter_export_items,
    iter_incremental_changes,
    read_incremental_change,
)
from .options import (
    DYNAMODB_TYPE_KEY,
    ORIGINAL_NAME_KEY,
    QUARANTINE_DIR,
    RESCUED_COLUMN,
    ConversionOptions,
    ConversionResult,
    DataFileMismatch,
    ExpectedDataFile,
    ExportLineError,
    WrittenFile,
)


def type_mapping_markdown() -> str:
    """The type-mapping table and rules, as Markdown (the README section; also in
    ``offload_assets/conversion/TYPE_MAPPING.md``)."""
    from .type_mapping import TYPE_MAPPING_MARKDOWN

    return TYPE_MAPPING_MARKDOWN


__all__ = [
    "DYNAMODB_TYPE_KEY",
    "ORIGINAL_NAME_KEY",
    "QUARANTINE_DIR",
    "RESCUED_COLUMN",
    "ConversionOptions",
    "ConversionResult",
    "DataFileMismatch",
    "ExpectedDataFile",
    "ExportItem",
    "ExportLineError",
    "IncrementalChange",
    "NotAnItem",
    "WrittenFile",
    "assign_column_names",
    "convert_export_to_parquet",
    "detect_line_format",
    "is_incremental_line",
    "item_from_line",
    "iter_export_items",
    "iter_incremental_changes",
    "read_incremental_change",
    "safe_column_name",
    "type_mapping_markdown",
]
