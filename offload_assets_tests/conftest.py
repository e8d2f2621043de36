"""Shared fixtures: one local AWS emulator per test session, on a free loopback port.

The emulator is the project's own (``ensure_local_emulator``) with its state in a temporary
directory, so tests exercise the same start-up and persistence code users run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest

from offload_assets.aws.connection import AwsConnection, resolve_connection
from offload_assets.local.emulator import (
    STATE_DIR_ENV_VAR,
    LocalEmulator,
    ensure_local_emulator,
    stop_local_emulator,
)

TEST_BUCKET = "offload-assets-test"


_SESSION_HOME: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """The local state directory (``$OFFLOAD_ASSETS_HOME``: first-seen days, emulator state) of
    the whole session is a temporary one, set before collection (test modules that import
    ``offload_assets.definitions`` build its definitions then), so no test writes into the
    checkout's (or the user's) ``.offload_assets/``. Tests that need another one set their own."""
    global _SESSION_HOME
    _SESSION_HOME = tempfile.mkdtemp(prefix="offload_home_")
    os.environ[STATE_DIR_ENV_VAR] = _SESSION_HOME


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def emulator_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offload_state")


@pytest.fixture(scope="session")
def emulator(emulator_state_dir: Path) -> LocalEmulator:
    emu = ensure_local_emulator(emulator_state_dir)
    yield emu
    stop_local_emulator(emulator_state_dir)


def reset_emulator(emu: LocalEmulator) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"{emu.endpoint_url}/moto-api/reset", method="POST", data=b"")
    with opener.open(req, timeout=60) as resp:
        assert json.loads(resp.read() or b"{}") is not None


@pytest.fixture()
def aws(emulator: LocalEmulator) -> AwsConnection:
    """A connection to an emptied emulator (every test starts from no tables, buckets or databases)."""
    reset_emulator(emulator)
    return resolve_connection(target="local", endpoint_url=emulator.endpoint_url)


def seed_reviews_table(aws: AwsConnection, table: str, count: int, *, seed: int, bucket: str = TEST_BUCKET):
    """A generated Reviews-like DynamoDB table of ``count`` items and the test bucket; (dynamodb, s3, items)."""
    from offload_assets.aws.s3_objects import ensure_bucket
    from offload_assets.local.demo_data import create_reviews_table, generate_reviews, put_items

    ddb, s3 = aws.client("dynamodb"), aws.client("s3")
    create_reviews_table(ddb, table)
    items = generate_reviews(count, seed=seed)
    put_items(ddb, table, items)
    ensure_bucket(s3, bucket)
    return ddb, s3, items


def write_tables_file(path: Path, *entries: dict, defaults: dict | None = None) -> Path:
    import yaml

    doc: dict = {"tables": list(entries)}
    if defaults:
        doc["defaults"] = defaults
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session", autouse=True)
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dagster instance directory for every Dagster process the tests start, telemetry off."""
    import os

    from offload_assets.cli.common import prepare_dagster_home

    home = prepare_dagster_home(tmp_path_factory.mktemp("dagster_home"))
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = previous


# --------------------------------------------------------------------------- tiers as markers
# Each test gets exactly one tier, from where it lives and what it uses, so `-m core` runs the
# pure core (no emulator, no Dagster run, no JVM, no property search) in seconds. Registered in
# pyproject.toml; the README's "Tests" table lists them.
_FOLDER_TIERS = {"ui": "ui", "e2e": "e2e"}
_EMULATOR_FIXTURES = {"emulator", "aws"}
_DAGSTER_FIXTURES = {"project"}
_SPARK_FIXTURES = {"spark"}
#: tests that start (and stop, or kill) emulators of their own, without the shared fixture
_OWN_EMULATOR = "ensure_local_emulator("


def _tier(item: pytest.Item) -> str:
    parts = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts
    if parts[0] in _FOLDER_TIERS:
        return _FOLDER_TIERS[parts[0]]
    fixtures = set(getattr(item, "fixturenames", ()))
    source = Path(str(item.fspath)).read_text()
    if parts[0] == "defs" or fixtures & _DAGSTER_FIXTURES or "dg.materialize" in source or "import dagster" in source:
        return "dagster"
    if fixtures & _EMULATOR_FIXTURES or _OWN_EMULATOR in source:
        return "emulator"
    if fixtures & _SPARK_FIXTURES:
        return "spark"
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        return "property"
    return "core"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:  # noqa: ARG001
    for item in items:
        item.add_marker(getattr(pytest.mark, _tier(item)))
