"""The `dg` command line at the repository root (configured by `[tool.dg]` in pyproject.toml):
`dg check defs` and `dg list defs` load the code location as Dagster's tools do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dagster

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TIMEOUT_S = 120


def test_dg_checks_and_lists_the_definitions(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),  # as activating the project's venv does
        "IMAGE_VERSIONS_DATA_DIR": str(tmp_path / "data"),
    }

    def start(*args: str) -> subprocess.Popen[str]:
        # An instance each: two processes creating one new sqlite instance at once race on
        # its schema ("table ... already exists"), which is Dagster's, not the definitions'.
        home = tmp_path / f"dagster_home_{args[0]}"
        home.mkdir()
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
        return subprocess.Popen(
            [str(VENV_BIN / "dg"), *args],
            cwd=ROOT,
            env={**env, "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    # Side by side: each spends its time importing Dagster and loading the location.
    check, listing = start("check", "defs"), start("list", "defs", "--json")
    checked, check_errors = check.communicate(timeout=TIMEOUT_S)
    listed, list_errors = listing.communicate(timeout=TIMEOUT_S)
    assert check.returncode == 0, check_errors
    assert "All definitions loaded successfully" in checked + check_errors
    assert listing.returncode == 0, list_errors
    defs = json.loads(listed)
    assert {a["asset_key"]: sorted(a["kinds"]) for a in defs["assets"]} == {
        "sagemaker_images": ["parquet", "python"],
        "image_versions": ["parquet", "python"],
        "image_versions_warehouse": ["duckdb", "python"],
    }
    assert {c["asset_key"] for c in defs["asset_checks"]} == {"image_versions"}
    assert [job["name"] for job in defs["jobs"]] == ["sync_image_versions"]
    assert {s["name"] for s in defs["schedules"]} == {
        "sync_image_versions_hourly",
        "reconcile_image_versions_daily",
    }
    assert {r["name"] for r in defs["resources"]} == {"sagemaker", "data", "warehouse", "alerts"}
    assert list(tmp_path.glob("data*")) == []  # listing the definitions writes nothing
