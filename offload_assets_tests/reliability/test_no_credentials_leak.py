"""Credentials never appear in logs, metadata or any file the project writes."""

import dagster as dg

from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import partitions_for
from offload_assets.local.demo_data import seed_reviews
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file

ACCESS_KEY = "AKIAOFFLOADLEAKTEST1"
SECRET = "offload-secret-DO-NOT-LEAK-7f3a9c2e1b"


def test_credentials_stay_out_of_logs_metadata_and_files(aws, emulator, tmp_path, capfd):
    tables_file = write_tables_file(tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "leak-bucket"})
    spec = load_tables_file(tables_file).table("Reviews")
    seed_reviews(aws.client("dynamodb"), count=100)
    defs = build_definitions(
        tables_file,
        target="local",
        endpoint_url=emulator.endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = defs.resolve_job_def("reviews_offload_job").execute_in_process(
            partition_key=partitions_for(spec).get_last_partition_key(), instance=instance
        )
        assert result.success
        events = instance.all_logs(result.run_id)
        assert len(events) > 10
        for event in events:
            text = repr(event)
            assert SECRET not in text and ACCESS_KEY not in text

    written = [p for p in home.rglob("*") if p.is_file()]
    assert written, "the run left no files to check"
    for path in written:
        data = path.read_bytes()
        assert SECRET.encode() not in data and ACCESS_KEY.encode() not in data, path

    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="leak-bucket")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith("manifest-summary.json") for k in keys)
    for key in keys:
        body = s3.get_object(Bucket="leak-bucket", Key=key)["Body"].read()
        assert SECRET.encode() not in body and ACCESS_KEY.encode() not in body, key

    out, err = capfd.readouterr()
    assert SECRET not in out + err and ACCESS_KEY not in out + err
