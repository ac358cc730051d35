"""`query`, `status --json` and `sync --json` print strict JSON with UTC times, through the
command: the rules tests/unit/test_render.py holds the renderer to."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline.cli import main
from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from tests.support import run_cli
from tests.unit.test_render import EVERY_TYPE_SQL, ISO_UTC_MS, TYPES, strict_json


def test_query_prints_every_type_as_json_through_the_command(data_dir: DataDir) -> None:
    data_dir.prepare()
    result = run_cli("query", EVERY_TYPE_SQL, "--data-dir", str(data_dir.root), "--format", "json")
    assert result.code == 0, result.stderr
    assert strict_json(result.stdout) == [{column: value for column, _, value, _ in TYPES}]


@pytest.fixture
def signal_handlers_kept() -> Iterator[None]:
    """`main` hands SIGINT and SIGTERM to the sync it runs; the test process gets them back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sync_and_status_json_are_strict_with_utc_times(
    server: EmulatorServer,
    data_dir: DataDir,
    capsys: pytest.CaptureFixture[str],
    signal_handlers_kept: None,
) -> None:
    seed_catalogue(server.emulator, seed=41, images=3)
    root = str(data_dir.root)
    assert main(["sync", "--data-dir", root, "--endpoint-url", server.url, "--json"]) == 0
    summary = strict_json(capsys.readouterr().out)
    latest: dict[str, datetime] = {}
    for version in server.emulator.live_versions():
        name, stamp = version["ImageName"], version["LastModifiedTime"]
        latest[name] = max(stamp, latest.get(name, stamp))
    watermarks = {
        name: stamp.astimezone(UTC).isoformat(timespec="milliseconds")
        for name, stamp in latest.items()
    }
    assert summary["watermark_min"] == min(watermarks.values())
    assert summary["watermark_max"] == max(watermarks.values())
    assert summary["ok"] is True and isinstance(summary["seconds"], float)

    assert main(["status", "--data-dir", root, "--images", "--json"]) == 0
    rows = strict_json(capsys.readouterr().out)
    expected = {name: watermarks.get(name) for name in server.emulator.image_names()}
    assert {row["image_name"]: row["watermark"] for row in rows} == expected
    assert None in expected.values()  # an image without versions has no watermark yet
    for row in rows:
        assert ISO_UTC_MS.fullmatch(row["last_synced_at"]), row
        assert type(row["version_count"]) is int and row["is_deleted"] is False
