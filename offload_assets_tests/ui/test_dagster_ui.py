"""The Dagster UI in a real browser: lineage, a partition launched by clicking, the run, the metadata.

One story, as a user lives it: open the table's asset group, see DynamoDB -> raw export ->
Parquet -> Glue drawn as a chain, click *Materialize all*, pick the latest partition (today's),
launch, watch the run succeed, then open the Parquet asset and read its row count and columns.
Screenshots go to the test's temporary directory, or to ``OFFLOAD_ASSETS_SCREENSHOTS``:
``OFFLOAD_ASSETS_SCREENSHOTS=docs/screenshots`` refreshes the ones the README shows.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from offload_assets.aws.connection import AwsConnection, resolve_connection
from offload_assets.cli.common import prepare_dagster_home
from offload_assets.defs.table_assets import asset_keys, partitions_for
from offload_assets.local.demo_data import seed_reviews
from offload_assets.sql.query import run_query
from offload_assets.table_spec import TableSpec, load_tables_file
from offload_assets_tests.conftest import reset_emulator
from offload_assets_tests.ui.dagster_ui import DagsterDev, read_asset_graph, start_chromium, tail

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 500  # generated reviews besides the blog's two
RUN_TIMEOUT = 300.0  # three assets and their checks (in one process, ~6 s), plus the run queue, on a loaded machine


def screenshots_dir(default: Path) -> Path:
    """``OFFLOAD_ASSETS_SCREENSHOTS`` (e.g. ``docs/screenshots`` to refresh the README's), else ``default``: a test run leaves the checkout as it was."""
    path = Path(os.environ.get("OFFLOAD_ASSETS_SCREENSHOTS") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class UiProject:
    dev: DagsterDev
    connection: AwsConnection
    spec: TableSpec
    items: int
    partition: str


@pytest.fixture(scope="module")
def ui_project(emulator, tmp_path_factory) -> UiProject:
    """The repo's workspace served by ``dagster dev``, on the test emulator, with Reviews seeded."""
    reset_emulator(emulator)
    connection = resolve_connection(target="local", local_state_dir=emulator.state_dir)
    seeded = seed_reviews(connection.client("dynamodb"), count=ITEMS)
    spec = load_tables_file(ROOT / "tables.yaml").table("Reviews")
    tmp = tmp_path_factory.mktemp("dagster_ui")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(prepare_dagster_home(tmp / "dagster_home")),
        "OFFLOAD_ASSETS_HOME": str(emulator.state_dir),  # runs reach this test's emulator, not the user's
        "OFFLOAD_ASSETS_TARGET": "local",
    }
    dev = DagsterDev.start(workspace=ROOT / "workspace.yaml", env=env, log_path=tmp / "dagster-dev.log")
    try:
        yield UiProject(dev, connection, spec, len(seeded), partitions_for(spec).get_last_partition_key())
    finally:
        dev.stop()


def wait_until(what: str, check, timeout: float, interval: float = 0.5):
    """Poll ``check`` until it returns something truthy; the page re-renders, so lookups may go stale."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def latest_sensor_tick(ui: UiProject, sensor: str) -> dict | None:
    """The sensor's newest tick (status, skip reason), asked of the UI's own GraphQL endpoint."""
    import json
    import urllib.request

    query = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
        ... on Sensor { sensorState { ticks(limit: 1) { status skipReason } } } } }"""
    selector = {"repositoryLocationName": "offload_assets", "repositoryName": "__repository__", "sensorName": sensor}
    request = urllib.request.Request(
        f"{ui.dev.url}/graphql",
        data=json.dumps({"query": query, "variables": {"s": selector}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        ticks = json.load(response)["data"]["sensorOrError"]["sensorState"]["ticks"]
    return ticks[0] if ticks else None


def test_lineage_run_and_metadata_in_the_dagster_ui(ui_project: UiProject, tmp_path: Path):
    from selenium.webdriver.common.by import By

    ui, spec = ui_project, ui_project.spec
    shots = screenshots_dir(tmp_path / "screenshots")
    driver = start_chromium(tmp_path / "chromium-profile")
    step, timings, started = "start", {}, time.monotonic()

    def phase(name: str) -> None:  # seconds spent per phase, printed at the end (pytest -s shows them)
        nonlocal step, started
        timings[step] = round(time.monotonic() - started, 1)
        step, started = name, time.monotonic()

    try:

        def body() -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        def dismiss_welcome() -> None:  # the first visit asks to join the community
            for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
                button.click()

        def graph_loaded():
            nodes, edges = read_asset_graph(driver)
            return (
                (nodes, edges)
                if len(nodes) >= 4 and not any("Loading" in n.text for n in nodes) and len(edges) >= 3
                else None
            )

        # 1. The asset group's graph draws the table's lineage, four nodes with four different titles.
        phase("asset graph")
        keys = asset_keys(spec)
        group_url = f"{ui.dev.url}/locations/offload_assets/asset-groups/{spec.name}"
        driver.get(group_url)
        nodes, edges = wait_until("the asset graph of group 'reviews'", graph_loaded, timeout=120)
        dismiss_welcome()
        source = next((n for n in nodes if n.asset_path is None and n.label == keys["source"].path[-1]), None)
        assert source is not None and "dynamodb" in source.text, [n.name for n in nodes]
        chain = [keys["source"].path[-1], *(keys[k].to_user_string() for k in ("export", "parquet", "catalog"))]
        by_name = {n.name: n for n in nodes}
        assert set(by_name) >= set(chain)
        assert set(zip(chain, chain[1:])) <= edges, f"edges drawn: {sorted(edges)}"
        titles = [by_name[name].label for name in chain]
        assert titles == ["Reviews_table", "reviews_export", "reviews_snapshot", "reviews"], titles
        assert len(set(titles)) == 4

        # 1b. Before the table's first run no check shows as failed, also once the freshness sensor ticked.
        phase("no failed check before the first run")
        tick = wait_until(
            "the freshness sensor's first tick",
            lambda: latest_sensor_tick(ui, f"{spec.name}_freshness_sensor"),
            timeout=180,
            interval=2.0,
        )
        assert tick["status"] == "SKIPPED" and "no partition" in (tick["skipReason"] or ""), tick
        driver.get(group_url)
        nodes, _ = wait_until("the asset graph again", graph_loaded, timeout=60)
        checks_rows = {
            n.name: re.search(r"Asset checks\n(.*)", n.text).group(1) for n in nodes if "Asset checks" in n.text
        }
        assert all("Failed" not in row for row in checks_rows.values()), checks_rows
        # none evaluated yet: "–", or "0 / N Passed" for a partitioned asset's checks
        assert all(re.fullmatch(r"[–-]|0 / \d+ Passed", row) for row in checks_rows.values()), checks_rows
        driver.save_screenshot(str(shots / "asset-graph-before-first-run.png"))

        # 2. Materialize all -> Latest partition (today's) -> Launch 1 run.
        phase("launch dialog")
        driver.find_element(By.XPATH, "//button[contains(normalize-space(), 'Materialize all')]").click()
        dialog = wait_until(
            "the launch dialog", lambda: driver.find_element(By.CSS_SELECTOR, "[role=dialog]"), timeout=30
        )
        wait_until(
            "the partition selector",
            lambda: dialog.find_element(By.XPATH, ".//button[normalize-space()='Latest']"),
            timeout=30,
        ).click()
        wait_until(
            f"partition {ui.partition} to be selected",
            lambda: any(i.get_attribute("value") == ui.partition for i in dialog.find_elements(By.TAG_NAME, "input")),
            timeout=20,
        )
        launch = wait_until(
            "the 'Launch 1 run' button",
            lambda: dialog.find_element(By.XPATH, ".//button[normalize-space()='Launch 1 run']"),
            timeout=20,
        )
        driver.save_screenshot(str(shots / "materialize-dialog.png"))
        launch.click()
        phase("run launched")
        toast = wait_until(
            "the 'Launched run' notice",
            lambda: driver.find_element(By.XPATH, "//a[normalize-space()='View'][contains(@href, '/runs/')]"),
            timeout=60,
            interval=0.2,
        )
        run_url = toast.get_attribute("href")

        # 3. The run page follows the run to success.
        phase("run")
        driver.get(run_url)

        def run_status():
            for status in ("Success", "Failure", "Canceled"):
                if driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{status}']"):
                    return status
            return None

        status = wait_until(f"run {run_url} to finish", run_status, timeout=RUN_TIMEOUT, interval=1.0)
        time.sleep(1.0)  # the last events render just after the status changes
        driver.save_screenshot(str(shots / "run-success.png"))
        assert status == "Success", f"run {run_url} ended with {status}:\n{body()[-3000:]}"
        assert f"partition: {ui.partition}" in body()

        # 4. The Parquet asset shows its row count and column schema.
        phase("parquet asset")
        driver.get(f"{ui.dev.url}/assets/{keys['parquet'].to_user_string()}")

        def row_count():
            m = re.search(r"^Row count\n([\d,]+)$", body(), re.MULTILINE)
            return int(m.group(1).replace(",", "")) if m else None

        rows = wait_until("the Parquet asset's row count", row_count, timeout=60)
        columns_table = "//table[thead//td[normalize-space()='Column name']]/tbody/tr"
        wait_until("the column schema", lambda: driver.find_elements(By.XPATH, columns_table), timeout=30)
        driver.save_screenshot(str(shots / "parquet-asset.png"))
        shown = [
            tuple((td.get_attribute("textContent") or "").strip() for td in tr.find_elements(By.TAG_NAME, "td")[:2])
            for tr in driver.find_elements(By.XPATH, columns_table)
        ]
        assert rows == ui.items, f"UI row count {rows}, table has {ui.items} items"
        glue = ui.connection.client("glue").get_table(DatabaseName=spec.catalog_database, Name=spec.catalog_table)[
            "Table"
        ]
        catalog_columns = [(c["Name"], c["Type"]) for c in glue["StorageDescriptor"]["Columns"]]
        assert shown == catalog_columns, f"UI columns {shown}\nGlue columns {catalog_columns}"
        assert ("author", "string") in shown and ("rating", "bigint") in shown
        text = body()
        assert f"Upstream assets\n{' / '.join(keys['export'].path)}" in text, text
        assert f"Downstream assets\n{' / '.join(keys['catalog'].path)}" in text, text

        # 5. The graph after the run, for the README; and SQL sees what the UI reported.
        phase("graph after run")
        driver.get(group_url)
        wait_until("the graph after the run", lambda: graph_loaded() and "Materializing" not in body(), timeout=60)
        time.sleep(1.0)
        driver.save_screenshot(str(shots / "asset-graph.png"))
        answer = run_query(
            f"""SELECT count(*) FROM "{spec.catalog_database}"."{spec.catalog_table}" WHERE ddb_export_timestamp = '{ui.partition}'""",
            connection=ui.connection,
        ).scalar()
        assert answer == ui.items
        phase("done")
        print(f"dagster UI test phases (s): {timings}")
    except BaseException as err:
        failure = tmp_path / f"failure-{step.replace(' ', '-')}.png"
        driver.save_screenshot(str(failure))
        raise AssertionError(
            f"{err}\n(step: {step}; phases so far (s): {timings}; screenshot {failure}; dagster dev log tail:)\n{tail(ui.dev.log_path)}"
        ) from err
    finally:
        driver.quit()
