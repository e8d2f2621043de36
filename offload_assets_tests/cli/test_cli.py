"""The ``offload-assets`` command: help that teaches, exit codes scripts rely on, and real results.

Commands run in-process through ``main(argv)`` against the test emulator (``OFFLOAD_ASSETS_HOME``
points at its state directory), so they reach the same AWS endpoints a user's shell would.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from offload_assets.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    current_partition_key,
)
from offload_assets.cli.main import main
from offload_assets.export.layout import read_export_manifest
from offload_assets.local.demo_data import seed_reviews
from offload_assets.snapshot.build import build_snapshot
from offload_assets.snapshot.publish import publish_snapshot
from offload_assets.snapshot.verdict import blocking_checks_verifier
from offload_assets.table_spec import CHECKOUT_TABLES_FILE, TABLES_FILE_ENV_VAR, default_tables_file, load_tables_file
from offload_assets_tests.conftest import TEST_BUCKET, write_tables_file

SEEDED = 40  # generated reviews; the blog's two come on top


@pytest.fixture()
def cli_env(aws, emulator, monkeypatch):
    """The CLI talks to the (emptied) test emulator."""
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "local")
    return aws


@pytest.fixture()
def tables_file(tmp_path: Path) -> Path:
    return write_tables_file(
        tmp_path / "tables.yaml", {"dynamodb_table": "Reviews"}, defaults={"s3_bucket": TEST_BUCKET}
    )


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse: --help and usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [[], ["demo"], ["query"], ["export"], ["export", "run"], ["export", "status"], ["convert"], ["local"], ["dev"]],
    ids=lambda a: " ".join(a) or "offload-assets",
)
def test_every_help_has_examples_and_exit_codes(capsys, argv):
    code, out, _ = run_cli(capsys, *argv, "--help")
    assert code == EXIT_OK
    assert "examples:" in out or "a first session:" in out
    assert "exit codes:" in out and "3    local status" in out
    assert "offload-assets" in out.split("exit codes:")[0].split("usage:", 1)[1]


def test_top_level_help_lists_every_command(capsys):
    _, out, _ = run_cli(capsys, "--help")
    for command in ("demo", "query", "export", "convert", "local", "dev"):
        assert f"\n    {command} " in out


def test_usage_errors_exit_2_and_say_what_is_wrong(capsys, tmp_path, tables_file):
    assert run_cli(capsys, "no-such-command")[0] == EXIT_USAGE
    assert run_cli(capsys, "query", "SELECT 1", "--format", "xml")[0] == EXIT_USAGE
    assert run_cli(capsys, "convert", "--input", "x")[0] == EXIT_USAGE  # --output missing

    code, out, err = run_cli(capsys, "export", "run", "Books", "--tables", str(tables_file))
    assert (code, out) == (EXIT_USAGE, "")
    assert f"no table 'Books' in {tables_file} (configured: Reviews)" in err

    bad = write_tables_file(
        tmp_path / "bad.yaml", {"dynamodb_table": "Reviews", "export_hour": 25}, defaults={"s3_bucket": TEST_BUCKET}
    )
    code, _, err = run_cli(capsys, "export", "status", "--tables", str(bad))
    assert code == EXIT_USAGE and str(bad) in err and "'Reviews'" in err and "export_hour" in err

    code, _, err = run_cli(capsys, "export", "run", "Reviews", "--partition", "yesterday", "--tables", str(tables_file))
    assert code == EXIT_USAGE and "expected a date" in err

    code, _, err = run_cli(capsys, "convert", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out"))
    assert code == EXIT_USAGE and "missing: no such file or directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "convert", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "out"))
    assert code == EXIT_USAGE and "no export data files" in err
    assert not (tmp_path / "out").exists()


def test_demo_refuses_aws_target(capsys, monkeypatch):
    monkeypatch.setenv("OFFLOAD_ASSETS_TARGET", "aws")
    code, _, err = run_cli(capsys, "demo")
    assert code == EXIT_USAGE and "only runs on the local emulator" in err


def test_local_status_is_3_when_not_running_and_0_when_running(capsys, monkeypatch, tmp_path, emulator):
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(tmp_path / "nothing-here"))
    code, out, _ = run_cli(capsys, "local", "status")
    assert code == EXIT_NOT_RUNNING and out.startswith("not running")
    monkeypatch.setenv("OFFLOAD_ASSETS_HOME", str(emulator.state_dir))
    code, out, _ = run_cli(capsys, "local", "status")
    assert code == EXIT_OK and f"running at {emulator.endpoint_url}" in out


def test_query_formats_and_failure(capsys, cli_env):
    sql = "SELECT 7 AS n, 'Jane Austen' AS author UNION ALL SELECT 1234, NULL ORDER BY n"
    code, out, err = run_cli(capsys, "query", sql, "--format", "csv")
    assert code == EXIT_OK and out.splitlines() == ["n,author", "7,Jane Austen", "1234,"]
    code, out, _ = run_cli(capsys, "query", sql, "--format", "json")
    assert json.loads(out) == [{"n": 7, "author": "Jane Austen"}, {"n": 1234, "author": None}]

    code, out, err = run_cli(capsys, "query", sql)
    assert code == EXIT_OK and "2 row(s)" in err and "row(s)" not in out  # the footer is a note, not data
    lines = [line.rstrip() for line in out.splitlines() if line.strip()]
    header, _, first, second = lines
    # Numbers are right-aligned under their header, text left-aligned: the columns line up.
    assert first.index("7") + 1 == second.index("1234") + 4 == header.index("n") + 1
    assert first.index("Jane Austen") == second.index("NULL") == header.index("author")

    code, out, err = run_cli(capsys, "query", 'SELECT * FROM "dynamodb-exports"."nope"')
    assert (code, out) == (EXIT_FAILED, "")
    assert err.startswith("query failed:") and "nope" in err


def test_current_partition_key_is_dagsters_last_partition():
    from offload_assets.defs.table_assets import partitions_for
    from offload_assets.table_spec import parse_tables

    tables = parse_tables(
        {
            "defaults": {"s3_bucket": TEST_BUCKET},
            "tables": [
                {"dynamodb_table": "Utc"},
                {"dynamodb_table": "Paris", "timezone": "Europe/Paris", "export_hour": 3},
                {"dynamodb_table": "LosAngeles", "timezone": "America/Los_Angeles", "export_hour": 23},
            ],
        },
        Path("t.yaml"),
    )
    for spec in tables.tables:
        assert current_partition_key(spec) == partitions_for(spec).get_last_partition_key(), spec.dynamodb_table
    paris = tables.table("Paris")
    # 02:30 in Paris is before the 03:00 export: still yesterday's partition.
    assert current_partition_key(paris, dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)) == "2026-11-26"
    assert current_partition_key(paris, dt.datetime(2026, 11, 27, 2, 30, tzinfo=dt.UTC)) == "2026-11-27"


def test_project_tables_file_is_the_one_dagster_loads(monkeypatch):
    from offload_assets.definitions import TABLES_FILE

    monkeypatch.delenv(TABLES_FILE_ENV_VAR, raising=False)
    assert default_tables_file() == TABLES_FILE == CHECKOUT_TABLES_FILE
    assert load_tables_file(TABLES_FILE).table("Reviews").catalog_database == "dynamodb-exports"


def test_tables_file_from_the_environment(capsys, monkeypatch, tmp_path):
    """A deployment installed from a wheel names its own tables file; the CLI and Dagster use it."""
    own = write_tables_file(tmp_path / "deploy.yaml", {"dynamodb_table": "Orders", "s3_bucket": "shop-offload"})
    monkeypatch.setenv(TABLES_FILE_ENV_VAR, str(own))
    assert default_tables_file() == own
    code, out, _ = run_cli(capsys, "iam-policy")  # no --tables: the environment's file
    assert code == EXIT_OK
    assert "table/Orders" in out and "table/Reviews" not in out


def test_export_run_status_convert_and_publish(capsys, cli_env, tables_file, tmp_path):
    aws = cli_env
    seed_reviews(aws.client("dynamodb"), count=SEEDED)
    spec = load_tables_file(tables_file).table("Reviews")
    partition = current_partition_key(spec)

    code, out, _ = run_cli(capsys, "export", "status", "--tables", str(tables_file), "--format", "json")
    assert code == EXIT_OK
    (before,) = json.loads(out)
    assert before["partitions"] == [] and before["catalog_registered"] is False

    # export run: the raw export is in S3 with every item, the summary says so.
    code, out, err = run_cli(capsys, "export", "run", "Reviews", "--tables", str(tables_file), "--format", "json")
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert summary["items"] == SEEDED + 2 and summary["partition"] == partition and summary["method"] == "scan"
    manifest = read_export_manifest(
        aws.client("s3"),
        bucket=TEST_BUCKET,
        export_prefix=spec.export_prefix(partition),
        export_id=summary["export_id"],
    )
    assert manifest is not None and manifest.item_count == SEEDED + 2
    assert f"export Reviews: {SEEDED + 2:,} items" in err  # the progress summary (stderr is not a terminal here)

    code, out, _ = run_cli(capsys, "export", "status", "Reviews", "--tables", str(tables_file), "--format", "json")
    (status,) = json.loads(out)
    (p,) = status["partitions"]
    assert p["partition"] == partition and p["snapshots"] == [] and p["catalog_location"] is None
    assert p["exports"] == [
        {"id": summary["export_id"], "complete": True, "items": SEEDED + 2, "export_time": manifest.export_time}
    ]

    # convert: from the S3 partition prefix to a local directory.
    out_dir = tmp_path / "parquet"
    code, out, err = run_cli(
        capsys,
        "convert",
        "--input",
        f"s3://{TEST_BUCKET}/{spec.export_prefix(partition)}/",
        "--output",
        str(out_dir),
        "--format",
        "json",
    )
    assert code == EXIT_OK, err
    converted = json.loads(out)
    assert converted["rows"] == SEEDED + 2 == pq.read_table(out_dir).num_rows
    assert [f["path"] for f in converted["files"]] == [str(p) for p in sorted(out_dir.glob("part-*.parquet"))]
    columns = {c["name"]: c for c in converted["columns"]}
    assert columns["author"]["type"] == "string" and columns["author"]["attribute"] == "Author"
    assert columns["rating"]["type"] == "bigint" and columns["rating"]["dynamodb_type"] == "N"

    code, out, _ = run_cli(
        capsys, "convert", "--input", f"s3://{TEST_BUCKET}/{spec.export_prefix(partition)}/", "--output", str(out_dir)
    )
    assert code == EXIT_OK
    assert f"{SEEDED + 2:,} rows" in out and "author" in out and "output files:" in out and "part-00000.parquet" in out

    # convert to S3: the Parquet files are written with server-side encryption, like the assets write them.
    s3 = aws.client("s3")
    code, out, err = run_cli(
        capsys,
        "convert",
        "--input",
        f"s3://{TEST_BUCKET}/{spec.export_prefix(partition)}/",
        "--output",
        f"s3://{TEST_BUCKET}/adhoc/parquet/",
        "--format",
        "json",
    )
    assert code == EXIT_OK, err
    written = [o["Key"] for o in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="adhoc/parquet/")["Contents"]]
    assert written and all(k.endswith(".parquet") for k in written)
    assert (
        sum(pq.read_table(aws.arrow_filesystem().open_input_file(f"{TEST_BUCKET}/{k}")).num_rows for k in written)
        == SEEDED + 2
    )
    assert {s3.head_object(Bucket=TEST_BUCKET, Key=k).get("ServerSideEncryption") for k in written} == {"AES256"}
    code, _, err = run_cli(
        capsys,
        "convert",
        "--input",
        f"s3://{TEST_BUCKET}/{spec.export_prefix(partition)}/",
        "--output",
        str(out_dir),
        "--sse-kms-key-id",
        "alias/x",
    )
    assert code == EXIT_USAGE and "apply to an s3:// --output only" in err

    # After the Parquet snapshot is built and published, status shows it and the catalog partition.
    snap = build_snapshot(
        aws.client("s3"), aws.arrow_filesystem(), aws.client("glue"), spec, partition, run_id="clitest"
    )
    verify = blocking_checks_verifier(aws.client("s3"), aws.arrow_filesystem(), aws.client("dynamodb"), spec)
    publish_snapshot(aws.client("glue"), aws.client("s3"), spec, partition, verify=verify)
    code, out, _ = run_cli(capsys, "export", "status", "--tables", str(tables_file), "--format", "json")
    (p,) = json.loads(out)[0]["partitions"]
    assert p["snapshots"] == [
        {"run_dir": snap.run_dir, "complete": True, "rows": SEEDED + 2, "export_id": summary["export_id"]}
    ]
    assert p["published_snapshot"] == snap.run_dir
    code, out, _ = run_cli(capsys, "export", "status", "--tables", str(tables_file))
    assert code == EXIT_OK and '"dynamodb-exports"."reviews" (registered)' in out
    row = next(line for line in out.splitlines() if line.strip().startswith(partition))
    assert row.split() == [
        partition,
        summary["export_id"],
        f"{SEEDED + 2:,}",
        snap.run_dir.rsplit("/", 1)[-1],
        f"{SEEDED + 2:,}",
        "yes",
    ]


def test_export_run_of_a_past_partition_fails_with_the_reason(capsys, cli_env, tables_file):
    seed_reviews(cli_env.client("dynamodb"), count=5)
    code, out, err = run_cli(
        capsys, "export", "run", "Reviews", "--partition", "2026-01-01", "--tables", str(tables_file)
    )
    assert (code, out) == (EXIT_FAILED, "")
    assert "partition 2026-01-01 is not the current day" in err and "export_method: native" in err


def _write_export_file(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_convert_local_export_bad_lines_fail_or_quarantine(capsys, tmp_path):
    data = _write_export_file(
        tmp_path / "export" / "AWSDynamoDB" / "01-abc" / "data" / "one.json.gz",
        [
            '{"Item":{"id":{"S":"a"},"n":{"N":"1"}}}',
            '{"Item":{"id":{"S":"b"},"n":{"N":"2"}}}',
            "this is not json",
        ],
    )
    (data.parent.parent / "manifest-summary.json").write_text("{}")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "convert", "--input", str(tmp_path / "export"), "--output", str(out_dir))
    assert (code, out) == (EXIT_FAILED, "")
    assert f"{data}, line 3" in err and "--bad-lines quarantine" in err
    assert not list(out_dir.glob("part-*.parquet"))

    code, out, err = run_cli(
        capsys,
        "convert",
        "--input",
        str(tmp_path / "export"),
        "--output",
        str(out_dir),
        "--bad-lines",
        "quarantine",
        "--format",
        "json",
    )
    assert code == EXIT_OK, err
    doc = json.loads(out)
    assert doc["rows"] == 2 == pq.read_table(out_dir).num_rows and doc["quarantined_lines"] == 1
    assert Path(doc["quarantine_files"][0]).read_text().count("\n") >= 1


def test_convert_refuses_an_input_holding_two_exports(capsys, tmp_path):
    for export_id in ("01-aaa", "02-bbb"):
        f = _write_export_file(
            tmp_path / "p" / "AWSDynamoDB" / export_id / "data" / "x.json.gz", ['{"Item":{"id":{"S":"a"}}}']
        )
        (f.parent.parent / "manifest-summary.json").write_text("{}")
    code, _, err = run_cli(capsys, "convert", "--input", str(tmp_path / "p"), "--output", str(tmp_path / "out"))
    assert code == EXIT_USAGE and "holds 2 complete exports" in err and "01-aaa" in err and "02-bbb" in err


def test_native_export_without_pitr_is_refused_and_status_says_why(capsys, cli_env, tmp_path):
    seed_reviews(cli_env.client("dynamodb"), count=5)
    native = write_tables_file(
        tmp_path / "native.yaml",
        {"dynamodb_table": "Reviews", "export_method": "native"},
        defaults={"s3_bucket": TEST_BUCKET},
    )
    code, out, err = run_cli(capsys, "export", "run", "Reviews", "--tables", str(native))
    assert (code, out) == (EXIT_FAILED, "")
    assert "point-in-time recovery DISABLED" in err and "update-continuous-backups" in err
    code, out, _ = run_cli(capsys, "export", "status", "--tables", str(native))
    assert code == EXIT_OK and "note: point-in-time recovery is DISABLED on Reviews" in out


def test_the_demos_next_steps_name_a_command_that_runs_without_path(monkeypatch):
    """After ``scripts/demo`` the venv's bin is not on PATH: the demo says ``.venv/bin/offload-assets``."""
    import os
    import sys

    from offload_assets.cli.demo import _command

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    command = _command()
    assert command == os.path.relpath(Path(sys.executable).parent / "offload-assets")
    assert os.access(command, os.X_OK)
