"""The project as a deployment gets it: a wheel of the package alone, installed away from the
checkout, pointed at its own tables file, answering the blog's query."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from offload_assets.local.demo_data import generate_reviews

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_the_package_only_and_runs_the_demo_with_its_own_tables_file(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT), "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("offload_assets-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "offload_assets" in tops and "offload_assets_tests" not in tops
    assert "offload_assets/spark/glue_convert_job.py" in zipfile.ZipFile(wheel).namelist()

    site = tmp_path / "site"  # the wheel alone; its dependencies come from this environment
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "deployment"
    elsewhere.mkdir()
    tables = elsewhere / "my-tables.yaml"
    tables.write_text((ROOT / "tables.yaml").read_text())
    env = {
        **os.environ,
        "PYTHONPATH": str(site),  # ahead of the checkout's editable install
        "OFFLOAD_ASSETS_TABLES": str(tables),
        "OFFLOAD_ASSETS_HOME": str(elsewhere / "state"),
        "OFFLOAD_ASSETS_TARGET": "local",
    }
    env.pop("DAGSTER_HOME", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "offload_assets.cli", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    try:
        located = subprocess.run(
            [sys.executable, "-c", "import offload_assets, sys; print(offload_assets.__file__)"],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
        )
        assert located.stdout.strip().startswith(str(site)), located.stdout + located.stderr
        demo = cli("demo", "--items", "200")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        expected = sum(1 for r in generate_reviews(200) if r["Author"] == "J.K. Rowling")
        assert f"num_reviews = {expected}" in demo.stdout
    finally:
        cli("local", "stop")
