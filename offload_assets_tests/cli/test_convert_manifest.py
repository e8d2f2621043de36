"""``convert --input <export dir>`` reads the export's manifests (issues #14 point 2, #15 point 2)."""

from __future__ import annotations

import gzip
import json

import orjson

from offload_assets.export.layout import md5_base64

from .test_cli import run_cli

EXPORT = "AWSDynamoDB/01700000000000-abcdef12"


def write_export(root):
    export = root / EXPORT
    (export / "data").mkdir(parents=True)
    entries = []
    for i in range(3):
        lines = [{"Item": {"Book": {"S": f"b{j}"}, "User": {"S": f"u{i}"}, "Age": {"N": "1"}}} for j in range(10)]
        body = gzip.compress(b"".join(orjson.dumps(x) + b"\n" for x in lines))
        (export / "data" / f"f{i}.json.gz").write_bytes(body)
        key = f"{EXPORT}/data/f{i}.json.gz"
        entries.append({"itemCount": 10, "md5Checksum": md5_base64(body), "etag": None, "dataFileS3Key": key})
    # a file in data/ the manifest does not list (e.g. left by a second writer): never read
    (export / "data" / "stray.json.gz").write_bytes(gzip.compress(b'{"Item":{"User":{"S":"x"}}}\n'))
    (export / "manifest-files.json").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (export / "manifest-summary.json").write_text(json.dumps({"itemCount": 30, "outputFormat": "DYNAMODB_JSON"}))
    return export


def test_convert_reads_only_the_manifest_files_with_keys_first(tmp_path, capsys):
    export = write_export(tmp_path)
    code, out, _ = run_cli(
        capsys,
        "convert",
        "--input",
        str(export),
        "--output",
        str(tmp_path / "out"),
        "--keys",
        "User,Book",
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["rows"] == 30 and doc["input_files"] == 3
    assert [c["name"] for c in doc["columns"]] == ["user", "book", "age", "_rescued_data"]


def test_convert_fails_on_a_changed_file_naming_it_and_the_checksums(tmp_path, capsys):
    export = write_export(tmp_path)
    changed = export / "data" / "f1.json.gz"
    body = gzip.decompress(changed.read_bytes()).replace(b'"u1"', b'"u9"')
    changed.write_bytes(gzip.compress(body))
    code, _, err = run_cli(capsys, "convert", "--input", str(export), "--output", str(tmp_path / "out"))
    assert code != 0
    assert "f1.json.gz" in err and "md5Checksum" in err and md5_base64(changed.read_bytes()) in err
    assert not list((tmp_path / "out").rglob("*.parquet")) if (tmp_path / "out").exists() else True
    code, out, _ = run_cli(
        capsys,
        "convert",
        "--input",
        str(export),
        "--output",
        str(tmp_path / "out"),
        "--no-verify-manifest",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["rows"] == 30
