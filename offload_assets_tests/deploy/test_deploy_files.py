"""deploy/ and docs/running-on-ecs.md agree with what they configure: the image runs the code location the
workspace names, and the documented EcsRunLauncher block is valid configuration for dagster-aws's launcher."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster_aws.ecs import EcsRunLauncher

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_workspace_and_dockerfile_point_at_the_code_location():
    """What the image runs is what the test above runs: the same module, the gRPC server the workspace names."""
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    assert entry["grpc_server"]["location_name"] == "offload_assets"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '-m", "offload_assets.definitions"' in dockerfile and "OFFLOAD_ASSETS_TABLES=" in dockerfile
    assert "COPY deploy/dagster.yaml /opt/dagster/dagster_home/dagster.yaml" in dockerfile
    assert "[postgres]" in dockerfile  # dagster-postgres, the storage deploy/dagster.yaml names


def test_the_documented_ecs_run_launcher_config_is_valid(monkeypatch):
    text = (ROOT / "docs" / "running-on-ecs.md").read_text()
    block = re.search(r"```yaml\n(run_launcher:.*?)```", text, re.S).group(1)
    launcher = yaml.safe_load(block)["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    for name in re.findall(r"\{env: (\w+)\}", block):
        monkeypatch.setenv(name, f"value-of-{name}")
    processed = process_config(resolve_to_config_type(EcsRunLauncher.config_type()), launcher["config"])
    assert processed.success, processed.errors
    assert processed.value["task_definition"]["task_role_arn"] == "value-of-OFFLOAD_ASSETS_DAGSTER_ROLE_ARN"
