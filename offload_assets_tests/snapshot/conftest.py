"""Snapshot tests use the catalog tests' snapshot writer and the Dagster project fixture."""

from offload_assets_tests.catalog.conftest import spec  # noqa: F401  (fixture)
from offload_assets_tests.defs.conftest import project  # noqa: F401  (fixture)
