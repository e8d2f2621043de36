"""``offload-assets convert``: one DynamoDB export (local or s3://) to Parquet, with the export's
manifests checked when it has them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from offload_assets.aws.connection import resolve_connection
from offload_assets.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_command,
    make_console,
    print_error,
)
from offload_assets.conversion.options import ORIGINAL_NAME_KEY


def _filesystem_and_path(location: str, connection_cache: dict[str, Any]) -> tuple[Any, str]:
    """A pyarrow filesystem and the path on it for a local path or an ``s3://bucket/key`` URI."""
    from pyarrow import fs as pafs

    if location.startswith("s3://"):
        if "fs" not in connection_cache:
            connection_cache["fs"] = resolve_connection().arrow_filesystem()
        path = location[len("s3://") :].rstrip("/")
        if not path:
            raise UsageError(f"{location}: expected s3://bucket/prefix")
        return connection_cache["fs"], path
    if "://" in location:
        raise UsageError(f"{location}: expected a local path or an s3:// URI")
    return pafs.LocalFileSystem(), str(Path(location).resolve())


_DATA_SUFFIXES = (".json.gz", ".json", ".jsonl", ".jsonl.gz", ".gz")


def find_export_data_files(filesystem: Any, base: str, shown: str) -> list[str]:
    """The DynamoDB-JSON data files of the one export at or below ``base``.

    ``base`` may be a data file, an export's ``data/`` directory, an export directory
    (``AWSDynamoDB/<id>/``), a partition prefix holding one export, or any directory of
    ``.json``/``.json.gz`` files. Incomplete exports (no ``manifest-summary.json``) are skipped
    when a complete one exists; two complete exports are ambiguous and refused.
    """
    from pyarrow import fs as pafs

    info = filesystem.get_file_info(base)
    if info.type == pafs.FileType.File:
        return [base]
    if info.type == pafs.FileType.NotFound:
        raise UsageError(f"{shown}: no such file or directory")
    files = [
        i.path
        for i in filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
        if i.type == pafs.FileType.File
    ]
    complete = sorted({f.rsplit("/", 1)[0] for f in files if f.endswith("/manifest-summary.json")})
    if len(complete) > 1:
        listed = "\n  ".join(complete)
        raise UsageError(f"{shown} holds {len(complete)} complete exports; point --input at one of them:\n  {listed}")
    if complete:
        files = [f for f in files if f.startswith(complete[0] + "/data/")]
    elif any("/data/" in f[len(base) :] for f in files):
        files = [f for f in files if "/data/" in f[len(base) :]]
    data = sorted(
        f for f in files if f.endswith(_DATA_SUFFIXES) and not f.rsplit("/", 1)[-1].startswith(("manifest-", "_"))
    )
    if not data:
        raise UsageError(f"{shown}: no export data files (*.json.gz, *.json) found")
    return data


def manifest_listed_files(filesystem: Any, files: list[str]) -> tuple[list[str], dict[str, Any]]:
    """When ``files`` are an export's ``data/*`` and the export has ``manifest-files.json``: the
    files it lists (never what else lies in ``data/``) and, per file, its MD5 and item count."""
    from offload_assets.conversion import ExpectedDataFile
    from offload_assets.export.layout import MANIFEST_FILES

    if not files or "/data/" not in files[0]:
        return files, {}
    export_dir = files[0].rsplit("/data/", 1)[0]
    manifest = f"{export_dir}/{MANIFEST_FILES}"
    if filesystem.get_file_info(manifest).type.name != "File":
        return files, {}
    with filesystem.open_input_stream(manifest) as f:
        entries = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    listed, expected = [], {}
    for entry in entries:
        key = entry["dataFileS3Key"]
        path = f"{export_dir}/data/{key.rsplit('/data/', 1)[-1]}"
        listed.append(path)
        count = entry.get("itemCount")
        expected[path] = ExpectedDataFile(entry.get("md5Checksum"), int(count) if count is not None else None)
    return listed, expected


def cmd_convert(args: argparse.Namespace) -> int:
    from offload_assets.cli.progress import WorkSpinner, format_bytes
    from offload_assets.conversion import (
        ConversionOptions,
        DataFileMismatch,
        ExportLineError,
        convert_export_to_parquet,
    )

    cache: dict[str, Any] = {}
    in_fs, in_path = _filesystem_and_path(args.input, cache)
    out_fs, out_path = _filesystem_and_path(args.output, cache)
    if args.output.startswith("s3://"):  # pyarrow's S3 writer cannot send SSE headers: upload through boto3 with them
        from types import SimpleNamespace

        from offload_assets.aws.s3_writes import encrypted_output_filesystem, s3_put_kwargs

        settings = SimpleNamespace(sse_kms_key_id=args.sse_kms_key_id, expected_bucket_owner=args.expected_bucket_owner)
        out_fs = encrypted_output_filesystem(resolve_connection().client("s3"), out_fs, s3_put_kwargs(settings))
    elif args.sse_kms_key_id or args.expected_bucket_owner:
        raise UsageError("--sse-kms-key-id and --expected-bucket-owner apply to an s3:// --output only")
    files = find_export_data_files(in_fs, in_path, args.input)
    files, expected = manifest_listed_files(in_fs, files)
    if args.no_verify_manifest:
        expected = {}
    if out_fs.get_file_info(out_path).type.name == "File":
        raise UsageError(f"{args.output}: is a file; --output must be a directory")
    table_name = args.table_name or Path(in_path.rstrip("/")).name
    keys = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    options = ConversionOptions(compression=args.compression, bad_lines=args.bad_lines, key_attributes=keys)
    input_bytes = sum(i.size or 0 for i in in_fs.get_file_info(files))
    with WorkSpinner(
        f"converting {len(files)} file(s), {format_bytes(input_bytes)}, to Parquet", console=make_console(stderr=True)
    ) as spinner:
        try:
            result = convert_export_to_parquet(
                files, in_fs, out_path, out_fs, table_name=table_name, options=options, expected_files=expected
            )
        except DataFileMismatch as err:
            print_error(f"conversion failed: {err}\n(--no-verify-manifest converts without checking the manifest)")
            return EXIT_FAILED
        except ExportLineError as err:
            print_error(
                f"conversion failed: {err}\n(--bad-lines quarantine sets bad lines aside and converts the rest)"
            )
            return EXIT_FAILED
    elapsed = spinner.elapsed_seconds
    out_uri = args.output.rstrip("/") if args.output.startswith("s3://") else out_path
    doc = {
        "rows": result.rows,
        "columns": [
            {
                "name": f.name,
                "type": _athena_type(f.type),
                "arrow_type": str(f.type),
                "attribute": (f.metadata or {}).get(ORIGINAL_NAME_KEY, b"").decode() or None,
                "dynamodb_type": (f.metadata or {}).get(b"dynamodb_type", b"").decode() or None,
            }
            for f in result.schema
        ],
        "rescued_counts": result.rescued_counts,
        "renamed_columns": result.renamed_columns,
        "quarantined_lines": result.quarantined_lines,
        "files": [
            {"path": _shown_path(f.path, args.output, out_path), "rows": f.rows, "bytes": f.bytes} for f in result.files
        ],
        "quarantine_files": [_shown_path(p, args.output, out_path) for p in result.quarantine_files],
        "input_files": len(files),
        "input_bytes": result.input_bytes or input_bytes,
        "output_bytes": result.output_bytes,
        "duration_seconds": round(elapsed, 3),
        "output": out_uri,
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    _print_conversion(doc)
    return EXIT_OK


def _athena_type(arrow_type: Any) -> str:
    from offload_assets.catalog.glue_types import arrow_to_glue

    try:
        return arrow_to_glue(arrow_type)
    except Exception:  # a type Glue cannot hold: show Arrow's name rather than fail after the work is done
        return str(arrow_type)


def _shown_path(path: str, output: str, out_path: str) -> str:
    return f"s3://{path.lstrip('/')}" if output.startswith("s3://") else path


def _print_conversion(doc: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from offload_assets.cli.progress import format_bytes

    console = make_console()
    rate = doc["input_bytes"] / doc["duration_seconds"] if doc["duration_seconds"] else 0
    console.print(
        f"[bold]{doc['rows']:,} rows[/bold], {len(doc['columns'])} columns, {len(doc['files'])} file(s), "
        f"{format_bytes(doc['output_bytes'])} from {doc['input_files']} input file(s), {format_bytes(doc['input_bytes'])} "
        f"in {doc['duration_seconds']:,.1f} s ({format_bytes(rate)}/s)"
    )
    columns = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for col in ("column", "type", "from attribute", "rescued values"):
        columns.add_column(col, justify="right" if col == "rescued values" else "left", overflow="fold")
    for c in doc["columns"]:
        attr = c["attribute"] or ""
        if c["dynamodb_type"]:
            attr = f"{attr} ({c['dynamodb_type']})"
        rescued = doc["rescued_counts"].get(c["name"], 0)
        columns.add_row(c["name"], c["type"], attr, f"{rescued:,}" if rescued else "")
    console.print(columns)
    total_rescued = sum(doc["rescued_counts"].values())
    if total_rescued:
        console.print(
            f"rescued: {total_rescued:,} value(s) that did not fit their column's type are kept as JSON in _rescued_data"
        )
    if doc["quarantined_lines"]:
        console.print(
            f"[yellow]quarantined: {doc['quarantined_lines']:,} bad line(s)[/yellow] in "
            + ", ".join(doc["quarantine_files"])
        )
    console.print("output files:")
    for f in doc["files"]:
        console.print(f"  {f['path']}  ({f['rows']:,} rows, {format_bytes(f['bytes'])})")


def add_convert_parser(sub) -> None:
    convert = add_command(
        sub,
        "convert",
        help="convert a DynamoDB export (DynamoDB JSON) to Parquet files",
        description="Convert one DynamoDB export to Parquet with the project's converter: type descriptors stripped,\n"
        "one schema decided from every value, values that do not fit kept in _rescued_data.\n"
        "--input: an export directory (AWSDynamoDB/<id>/), its data/ directory, a partition prefix holding\n"
        "one export, a single .json.gz file, or any directory of .json/.json.gz files; local or s3://.\n"
        "--output: a directory (local or s3://) that receives part-NNNNN.parquet; earlier part files in it\n"
        "are replaced.",
        examples="  offload-assets convert --input ./my-export/ --output ./parquet/\n"
        "  offload-assets convert --input s3://offload-assets-local/dynamodb-offload/exports/reviews/ddb_export_timestamp=2026-11-27/ \\\n"
        "                         --output ./reviews-parquet/\n"
        "  offload-assets convert --input data.json.gz --output out/ --bad-lines quarantine --format json",
    )
    convert.add_argument("--input", required=True, metavar="PATH|S3_URI", help="the export to convert")
    convert.add_argument("--output", required=True, metavar="DIR|S3_URI", help="directory for the Parquet files")
    convert.add_argument(
        "--table-name", default=None, help="name used in error messages (default: the input's last path part)"
    )
    convert.add_argument(
        "--compression", choices=["zstd", "snappy"], default="zstd", help="Parquet compression (default zstd)"
    )
    convert.add_argument(
        "--sse-kms-key-id",
        default=None,
        metavar="KEY",
        help="s3:// output: encrypt with this KMS key (SSE-KMS); default SSE-S3 (AES256), as the assets write",
    )
    convert.add_argument(
        "--expected-bucket-owner",
        default=None,
        metavar="ACCOUNT_ID",
        help="s3:// output: refuse to write unless the bucket belongs to this account",
    )
    convert.add_argument(
        "--bad-lines",
        choices=["fail", "quarantine"],
        default="fail",
        help="a line that is not a DynamoDB item: fail (default) or set it aside in _quarantine/",
    )
    convert.add_argument(
        "--keys",
        default="",
        metavar="HASH[,RANGE]",
        help="the table's key attributes: their columns come first (hash key, then range key)",
    )
    convert.add_argument(
        "--no-verify-manifest",
        action="store_true",
        help="an export's manifest-files.json is read for its file list but MD5s and item counts are not checked",
    )
    convert.add_argument("--format", choices=["table", "json"], default="table", help="how to print the result")
    convert.set_defaults(func=cmd_convert)
