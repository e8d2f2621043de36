"""One loopback-only local Spark session (local[2], no UI) shared by the Spark tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark():
    from offload_assets.spark.spark_conversion import local_spark_session

    session = local_spark_session("offload-assets-tests", cores=2)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
