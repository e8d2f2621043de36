"""The local emulator stops mid-run: the error names the endpoint; after a restart a retry completes exactly."""

from __future__ import annotations

import botocore.exceptions
import pytest

from offload_assets.aws.connection import resolve_connection
from offload_assets.defs.table_assets import partitions_for
from offload_assets.export.partition_export import export_partition
from offload_assets.local.demo_data import seed_reviews
from offload_assets.local.emulator import ensure_local_emulator, stop_local_emulator
from offload_assets.snapshot.build import build_snapshot, list_run_dirs
from offload_assets.snapshot.publish import publish_snapshot
from offload_assets.snapshot.verdict import blocking_checks_verifier
from offload_assets.sql.query import run_query
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file


def test_emulator_stopping_mid_run_gives_a_clear_error_and_a_clean_retry(tmp_path):
    state = tmp_path / "state"  # an emulator of its own: the session's one keeps serving other tests
    emu = ensure_local_emulator(state)
    try:
        spec = load_tables_file(
            write_tables_file(tmp_path / "t.yaml", {"dynamodb_table": "Reviews", "s3_bucket": "outage-bucket"})
        ).tables[0]
        partition = partitions_for(spec).get_last_partition_key()
        aws = resolve_connection(target="local", endpoint_url=emu.endpoint_url, max_attempts=2)
        items = seed_reviews(aws.client("dynamodb"), count=300)
        export_partition(spec, partition, dynamodb=aws.client("dynamodb"), s3=aws.client("s3"))

        stop_local_emulator(state)  # between the export and the conversion (state is saved)
        with pytest.raises(botocore.exceptions.EndpointConnectionError) as err:
            build_snapshot(
                aws.client("s3"), aws.arrow_filesystem(), aws.client("glue"), spec, partition, run_id="outage"
            )
        assert emu.endpoint_url in str(err.value)  # the message names the endpoint that is down

        emu = ensure_local_emulator(state)  # restarted with the saved state: the export is still there
        aws = resolve_connection(target="local", endpoint_url=emu.endpoint_url)
        s3, glue = aws.client("s3"), aws.client("glue")
        build_snapshot(s3, aws.arrow_filesystem(), glue, spec, partition, run_id="retry")
        published = publish_snapshot(
            glue,
            s3,
            spec,
            partition,
            verify=blocking_checks_verifier(s3, aws.arrow_filesystem(), aws.client("dynamodb"), spec),
        )
        rows = run_query(
            f'SELECT "user", "book" FROM "dynamodb-exports"."reviews" WHERE ddb_export_timestamp = \'{partition}\'',
            connection=aws,
        ).rows
        assert sorted(rows) == sorted((i["User"], i["Book"]) for i in items)
        assert list_run_dirs(s3, bucket="outage-bucket", partition_prefix=spec.parquet_partition_prefix(partition)) == [
            published.snapshot.run_dir
        ]
    finally:
        stop_local_emulator(state)
