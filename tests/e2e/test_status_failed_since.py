"""`image-versions status --failed-since WHEN`: the versions that entered CREATE_FAILED or
DELETE_FAILED in the syncs recorded after WHEN, as a user runs it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.emulator import EmulatorServer
from pipeline.storage import DataDir
from tests.e2e.test_cli import assert_usage_error, sync_args
from tests.support import run_cli


def failed_since(data_dir: DataDir, when: str, *extra: str) -> list[tuple[str, int, str, str]]:
    result = run_cli("status", "--data-dir", str(data_dir.root), "--failed-since", when, "--json")
    assert result.code == 0, result.stderr
    return [
        (r["image_name"], r["version"], r["status"], r["failure_reason"])
        for r in json.loads(result.stdout)
    ]


def test_failed_since_names_the_versions_each_sync_saw_fail(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    emulator.create_image("train")
    emulator.create_image_version("train")
    emulator.create_image_version("train", status="CREATE_FAILED", failure_reason="no\x1b[2Jspace")
    assert run_cli(*sync_args(server, data_dir)).code == 0
    between = datetime.now(UTC).isoformat()

    emulator.clock.advance(60)
    emulator.update_image_version("train", 1, status="DELETE_FAILED", failure_reason="in use")
    assert run_cli(*sync_args(server, data_dir)).code == 0

    assert failed_since(data_dir, "1h") == [
        ("train", 2, "CREATE_FAILED", "no\x1b[2Jspace"),
        ("train", 1, "DELETE_FAILED", "in use"),
    ]
    assert failed_since(data_dir, between) == [("train", 1, "DELETE_FAILED", "in use")]
    assert failed_since(data_dir, "2999-01-01") == []

    table = run_cli("status", "--data-dir", str(data_dir.root), "--failed-since", "7d")
    assert table.code == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:6] == [
        "account_id",
        "region",
        "image_name",
        "version",
        "status",
        "failure_reason",
    ]
    assert "no\\x1b[2Jspace" in table.stdout and "\x1b" not in table.stdout  # shown escaped
    assert sum("FAILED" in row for row in rows) == 2


@pytest.mark.parametrize("when", ["yesterday", "24", "-1d", "2026-02-30"])
def test_a_bad_failed_since_is_a_usage_error(data_dir: DataDir, when: str) -> None:
    result = run_cli("status", "--data-dir", str(data_dir.root), f"--failed-since={when}")
    assert_usage_error(result, "argument --failed-since: expected a duration such as 24h")
