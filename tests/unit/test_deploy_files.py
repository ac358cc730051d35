"""deploy/: its instance runs the repository's queue, and names no credential; its image runs
the project's code location. (tests/e2e/test_deploy.py runs the deployment itself.)"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SHARED_SECTIONS = ("concurrency", "run_coordinator", "python_logs", "telemetry")


def instance(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_the_deployment_queues_runs_as_the_repository_instance_does() -> None:
    deployed, local = instance(DEPLOY / "dagster.yaml"), instance(ROOT / "dagster.yaml")
    for section in SHARED_SECTIONS:
        assert deployed[section] == local[section], section


def test_the_postgres_connection_comes_from_the_environment_only() -> None:
    database = instance(DEPLOY / "dagster.yaml")["storage"]["postgres"]["postgres_db"]
    settings = {key: value for key, value in database.items() if key != "scheme"}
    assert settings and all(set(value) == {"env"} for value in settings.values())


def test_the_image_serves_the_code_location_of_pyproject() -> None:
    dagster = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*?\])$", dockerfile.replace("\\\n", ""), re.M | re.S)
    command = json.loads(cmd)
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-m") + 1] == dagster["module_name"]
    assert command[command.index("--location-name") + 1] == dagster["code_location_name"]
    workspace = instance(DEPLOY / "workspace.yaml")
    (location,) = workspace["load_from"]
    assert location["grpc_server"]["location_name"] == dagster["code_location_name"]
    assert re.search(r"^USER (?!root)\w+$", dockerfile, re.M), "the image runs as root"
