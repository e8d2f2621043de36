"""Options, results and errors of the DynamoDB-export → Parquet conversion."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pyarrow as pa

#: pyarrow field-metadata key holding the DynamoDB attribute name a column came from.
ORIGINAL_NAME_KEY = b"original_name"
#: pyarrow field-metadata key holding the DynamoDB type a column holds (``S``, ``N``, ``SS``,
#: ``M``, ``L``, ``M_JSON``, ``L_JSON`` ...): lets a later partition keep the same rule.
DYNAMODB_TYPE_KEY = b"dynamodb_type"
#: Name of the column that holds, as JSON, every value that did not fit its column's type.
RESCUED_COLUMN = "_rescued_data"
#: The Glue partition key (``offload_assets.table_spec.PARTITION_COLUMN``): no attribute may take its name.
PARTITION_COLUMN = "ddb_export_timestamp"
#: Column names no attribute gets, in any case (the collision rules give it ``<name>_2``...).
RESERVED_COLUMNS = (RESCUED_COLUMN, PARTITION_COLUMN)


def json_text(value) -> str:
    """The one JSON text of a native value (a rescued attribute set, a JSON column's value):
    keys sorted, so both engines write the same bytes whatever order the line or DuckDB's read
    structure held them in."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


#: Sub-directory of the output directory that receives quarantined lines.
QUARANTINE_DIR = "_quarantine"


@dataclass(frozen=True)
class ConversionOptions:
    """How to convert one export. Every field has a default that suits Athena."""

    compression: str = "zstd"
    """Parquet compression codec: ``"zstd"`` (default) or ``"snappy"``."""
    compression_level: int | None = None
    """Codec level (``None``: the codec's default)."""
    target_file_bytes: int = 128 * 1024 * 1024
    """Start a new ``part-NNNNN.parquet`` once the current one reaches about this size."""
    row_group_rows: int = 1_000_000
    """Upper bound on rows per Parquet row group."""
    row_group_bytes: int = 64 * 1024 * 1024
    """Upper bound on the in-memory (Arrow) size of one row group; keeps memory bounded."""
    max_map_keys: int = 200
    """A map attribute with more distinct keys than this becomes a JSON string column."""
    numbers_as_float: bool = False
    """Store N as float64 (rounds beyond ~16 digits). Off: N is int64 or decimal128(38, s)."""
    bad_lines: str = "fail"
    """``"fail"``: raise :class:`ExportLineError`; ``"quarantine"``: write bad lines aside."""
    input_format: str = "auto"
    """``"auto"``, ``"native"`` (``{"Item": ...}``) or ``"data_pipeline"``; detected per file."""
    engine: str = "duckdb"
    """``"duckdb"`` (vectorised, default) or ``"python"`` (per item; reference implementation)."""
    threads: int | None = None
    """Threads DuckDB may use (``None``: every core)."""
    memory_limit: str = "600MB"
    """DuckDB's memory limit; it spills beyond this."""
    scratch_dir: str | None = None
    """Local directory for temporary copies of remote input (``None``: the system temp dir)."""
    key_attributes: tuple[str, ...] = ()
    """The table's hash key then range key: their columns come first (then the other
    attributes, ``_rescued_data`` last). Columns of an existing schema keep their order; new
    ones go after them, before ``_rescued_data``."""

    def __post_init__(self) -> None:
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            raise ValueError(f"unsupported compression {self.compression!r}")
        if self.bad_lines not in ("fail", "quarantine"):
            raise ValueError(f"bad_lines must be 'fail' or 'quarantine', not {self.bad_lines!r}")
        if self.input_format not in ("auto", "native", "data_pipeline"):
            raise ValueError(f"unsupported input_format {self.input_format!r}")
        if self.engine not in ("duckdb", "python"):
            raise ValueError(f"unsupported engine {self.engine!r}")
        if self.target_file_bytes <= 0 or self.row_group_rows <= 0 or self.row_group_bytes <= 0:
            raise ValueError("sizes must be positive")


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file written by the conversion."""

    path: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion wrote.

    ``schema`` is the written data schema (no partition column): the existing schema's columns in
    their order and types, then new columns, then ``_rescued_data`` (always last).
    ``renamed_columns`` maps every top-level attribute whose column name differs from the
    attribute name (lower-casing included) to its column name.
    """

    schema: pa.Schema
    rows: int
    files: tuple[WrittenFile, ...]
    rescued_counts: dict[str, int] = field(default_factory=dict)
    renamed_columns: dict[str, str] = field(default_factory=dict)
    quarantined_lines: int = 0
    quarantine_files: tuple[str, ...] = ()
    input_bytes: int = 0

    @property
    def output_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


class ExportLineError(ValueError):
    """A line of an export file is not a DynamoDB item (or the file cannot be decompressed)."""

    def __init__(self, table: str, file: str, line: int, reason: str):
        self.table = table
        self.file = file
        self.line = line
        self.reason = reason
        super().__init__(f"table {table!r}: {file}, line {line}: {reason}")

    def __reduce__(self):  # keep it picklable (multiprocessing, Dagster)
        return (ExportLineError, (self.table, self.file, self.line, self.reason))


@dataclass(frozen=True)
class ExpectedDataFile:
    """What an export's ``manifest-files.json`` says of one data file; ``None``: not checked."""

    md5_checksum: str | None = None
    """Base64 MD5 of the file's bytes as stored (``md5Checksum``)."""
    item_count: int | None = None
    """Items (non-blank lines) in the file (``itemCount``)."""


class DataFileMismatch(ValueError):
    """A data file is not what its export's manifest says (its MD5 or its item count)."""

    def __init__(self, table: str, file: str, what: str, expected, actual):
        self.table = table
        self.file = file
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"table {table!r}: {file}: {what} is {actual!r} but the export's manifest says {expected!r}"
            " (the file changed after the export, or is not the export's); nothing was published"
        )

    def __reduce__(self):
        return (DataFileMismatch, (self.table, self.file, self.what, self.expected, self.actual))
