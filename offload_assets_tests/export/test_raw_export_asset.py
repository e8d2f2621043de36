"""The raw export asset (Dagster skin): scan facts in its metadata, refusals fail without retries."""

import dagster as dg

from offload_assets.defs.definitions import build_definitions
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.local.demo_data import create_reviews_table, generate_reviews, put_items
from offload_assets.table_spec import load_tables_file
from offload_assets_tests.conftest import write_tables_file
from offload_assets_tests.export.conftest import BUCKET


def _materialize_export(tables_file, emulator):
    defs = build_definitions(tables_file, target="local", endpoint_url=emulator.endpoint_url)
    spec = load_tables_file(tables_file).table("Reviews")
    partition = partitions_for(spec).get_last_partition_key()
    job = defs.resolve_job_def(f"{spec.name}_offload_job")
    result = job.execute_in_process(
        partition_key=partition,
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[asset_keys(spec)["export"]],
        raise_on_error=False,
    )
    return spec, result


def test_scan_export_asset_reports_rows_budget_and_capacity(aws, emulator, tmp_path):
    ddb = aws.client("dynamodb")
    create_reviews_table(ddb, "Reviews")
    items = generate_reviews(250, seed=8)
    put_items(ddb, "Reviews", items)
    tables_file = write_tables_file(
        tmp_path / "tables.yaml",
        {"dynamodb_table": "Reviews", "s3_bucket": BUCKET, "scan_segments": 2, "read_capacity_fraction": 0.1},
    )

    spec, result = _materialize_export(tables_file, emulator)

    assert result.success
    [materialization] = result.asset_materializations_for_node(asset_keys(spec)["export"].to_python_identifier())
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["dagster/row_count"] == len(items) and meta["export_method"] == "scan"
    assert meta["scan_segments"] == 2 and meta["items_scanned"] == len(items) and meta["resumed"] is False
    assert meta["read_capacity_budget"] == 100.0  # 10% of the demo table's 1000 provisioned RCU
    assert meta["capacity_source"] == "estimated"  # the emulator's ConsumedCapacity is fake
    assert 0 < meta["read_capacity_per_second"] <= 100.0 * 1.05
    assert meta["read_capacity_consumed"] > 0


def test_native_export_asset_without_pitr_fails_with_the_fix_and_no_retry(aws, emulator, tmp_path):
    create_reviews_table(aws.client("dynamodb"), "Reviews")
    tables_file = write_tables_file(
        tmp_path / "tables.yaml", {"dynamodb_table": "Reviews", "s3_bucket": BUCKET, "export_method": "native"}
    )

    spec, result = _materialize_export(tables_file, emulator)

    assert not result.success
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    assert (
        data.user_failure_data is not None
        and "update-continuous-backups --table-name Reviews" in data.user_failure_data.description
    )
    assert result.asset_materializations_for_node(asset_keys(spec)["export"].to_python_identifier()) == []
