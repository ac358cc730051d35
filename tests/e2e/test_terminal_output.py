"""Output for people never hands a terminal a control character; output for scripts keeps values
exact.

A hostile catalogue plants escape sequences (clear screen, a window title, the one-byte CSI) and
bidirectional overrides in an image's DisplayName and Description, a version's FailureReason and
an API error message; real `image-versions` processes sync it and print it. Their tables,
`status`, FAILED lines, error lines and log lines show each such character as a visible escape,
while `--format json`/`jsonl`/`csv` and `--json` give the planted values back exactly.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import EmulatorServer
from pipeline.emulator.validation import VALIDATION, ApiError
from pipeline.logs import JsonLogFormatter, TextLogFormatter
from pipeline.storage import DataDir
from pipeline.terminal import printable

# Everything a terminal may obey, written out here rather than taken from the code under test:
# C0 controls, DEL, C1 controls, and the bidirectional marks, embeddings, overrides, isolates.
HOSTILE = (
    "ok\x1b[2J\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil\u202c lri\u2066x\u2069"
    " marks\u200e\u200f\u061c del\x7f nul\x00 cr\r tab\tnewline\nforged"
)
DISPLAY_NAME = "shown " + HOSTILE.replace("\n", " ") + " end"  # the API's pattern: one line
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""A raw control character other than the newline that ends each line of output."""
SHOWN = ("\\x1b[2J", "\\x1b]0;pwned\\x07", "\\x9b31m", "\\u202eevil", "\\u2066x\\u2069")
"""How some of them read once escaped."""
AS_ERROR = "planted error"


def plant(server: EmulatorServer) -> None:
    """Two hostile images: one whose texts carry HOSTILE, one whose listing fails with it."""
    emulator = server.emulator
    emulator.create_image("hostile", display_name=DISPLAY_NAME, description=HOSTILE)
    emulator.create_image_version("hostile", status="CREATE_FAILED", failure_reason=HOSTILE)
    emulator.create_image("refused")
    emulator.create_image_version("refused")

    def refuse(operation: str, params: dict[str, Any]) -> None:
        if operation == "ListImageVersions" and params.get("ImageName") == "refused":
            raise ApiError(VALIDATION, f"{AS_ERROR}: {HOSTILE}")

    emulator.before_request = refuse


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m pipeline ARGS` as bytes, so that nothing is translated on the way."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )


def text(output: bytes) -> str:
    return output.decode("utf-8")


def assert_safe(output: bytes) -> str:
    """`output` holds no raw control character, and shows the planted ones escaped."""
    shown = text(output)
    assert not RAW.findall(shown), RAW.findall(shown)
    for escaped in SHOWN:
        assert escaped in shown, (escaped, shown)
    return shown


@pytest.fixture
def hostile_sync(server: EmulatorServer, data_dir: DataDir) -> subprocess.CompletedProcess[bytes]:
    """A real sync of the hostile catalogue: it fails the refused image and keeps the other."""
    plant(server)
    return cli("sync", "--data-dir", str(data_dir.root), "--endpoint-url", server.url)


def test_human_output_shows_planted_control_characters_as_escapes(
    hostile_sync: subprocess.CompletedProcess[bytes], data_dir: DataDir
) -> None:
    root = str(data_dir.root)
    assert hostile_sync.returncode == 1
    # The FAILED line: on stderr, one line, escaped; stdout holds the summary alone.
    assert text(hostile_sync.stdout).startswith("synced 2 images")
    assert len(text(hostile_sync.stdout).splitlines()) == 1
    [failed] = assert_safe(hostile_sync.stderr).splitlines()
    assert failed.startswith("FAILED default/us-east-1 image refused:") and AS_ERROR in failed

    status = cli("status", "--data-dir", root, "--images")
    assert status.returncode == 0
    assert AS_ERROR in assert_safe(status.stdout)

    for sql in (
        "SELECT display_name, description FROM images WHERE image_name = 'hostile'",
        "SELECT failure_reason FROM image_versions",
    ):
        table = cli("query", sql, "--data-dir", root)
        assert table.returncode == 0, table.stderr
        cell = assert_safe(table.stdout).splitlines()[2]
        assert "\\ttab" not in cell and "\\nforged" in cell and "\\rtab" not in cell
        assert "cr\\r tab\\tnewline\\nforged" in cell  # the cell stays on its line

    # A query error that carries the value: DuckDB's message reaches the one error line.
    error = cli("query", "SELECT error(description) FROM images", "--data-dir", root)
    assert error.returncode == 2 and not error.stdout
    [line] = assert_safe(error.stderr).splitlines()
    assert line.startswith("image-versions: error: query failed:")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_json_and_csv_give_the_planted_values_back_exactly(
    hostile_sync: subprocess.CompletedProcess[bytes], data_dir: DataDir, fmt: str
) -> None:
    sql = (
        "SELECT i.display_name, i.description, v.failure_reason "
        "FROM images i JOIN image_versions v USING (image_name)"
    )
    result = cli("query", sql, "--data-dir", str(data_dir.root), "--format", fmt)
    assert result.returncode == 0, result.stderr
    output = text(result.stdout)
    expected = {"display_name": DISPLAY_NAME, "description": HOSTILE, "failure_reason": HOSTILE}
    if fmt == "csv":
        header, row = csv.reader(io.StringIO(output, newline=""))
        assert dict(zip(header, row, strict=True)) == expected
        return
    records = json.loads(output) if fmt == "json" else [json.loads(output)]
    assert records == [expected]
    # JSON escapes them all, C1 and bidi included: the same value, inert bytes.
    assert not RAW.findall(output) and output.count("\n") == 1


def test_sync_and_status_json_keep_the_error_message(
    hostile_sync: subprocess.CompletedProcess[bytes], server: EmulatorServer, data_dir: DataDir
) -> None:
    root = str(data_dir.root)
    again = cli("sync", "--data-dir", root, "--endpoint-url", server.url, "--json")
    assert again.returncode == 1 and not again.stderr
    assert not RAW.findall(text(again.stdout))
    [failure] = json.loads(again.stdout)["failures"]
    # The sync keeps a message to one line (whitespace runs become one space), nothing else.
    kept = " ".join(f"{AS_ERROR}: {HOSTILE}".split())
    assert failure.endswith(f"ValidationException: {kept}")

    status = cli("status", "--data-dir", root, "--images", "--json")
    errors = {row["image_name"]: row["last_error"] for row in json.loads(status.stdout)}
    assert errors["refused"] == f"ValidationException: {kept}"


@pytest.mark.parametrize("logging_flags", [[], ["-v"], ["--log-format", "json"]])
def test_log_lines_escape_what_they_carry(
    server: EmulatorServer, tmp_path: Path, logging_flags: list[str]
) -> None:
    """A data dir whose name holds the controls, and a warehouse file the sync must rebuild: the
    warning names the path, with -v or without (a warning shows either way)."""
    server.emulator.create_image("plain")
    root = tmp_path / "data \x1b]0;pwned\x07 \x9b31m \u202eevil"
    first = cli("sync", "--data-dir", str(root), "--endpoint-url", server.url)
    assert first.returncode == 0, first.stderr
    (root / "warehouse.duckdb").write_bytes(b"not a database\x00" * 100)

    result = cli("sync", "--data-dir", str(root), "--endpoint-url", server.url, *logging_flags)

    assert result.returncode == 0, result.stderr
    logs = text(result.stderr)
    assert not RAW.findall(logs), RAW.findall(logs)
    warnings = [line for line in logs.splitlines() if "rebuilding the unreadable" in line]
    assert warnings, logs
    for warning in warnings:
        if "--log-format" in logging_flags:
            assert str(root) in json.loads(warning)["message"]
        else:
            assert "data \\x1b]0;pwned\\x07 \\x9b31m \\u202eevil" in warning


def test_a_text_log_record_stays_one_line_and_its_traceback_keeps_its_lines() -> None:
    record = logging.LogRecord(
        "pipeline.x", logging.WARNING, "x.py", 1, "image %s", (HOSTILE,), None
    )
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        record.exc_info = sys.exc_info()

    line, *traceback = TextLogFormatter("%(message)s").format(record).split("\n")

    assert line == "image " + printable(HOSTILE)
    assert traceback[0] == "Traceback (most recent call last):"
    assert not RAW.findall("\n".join(traceback).replace("\t", ""))
    assert json.loads(JsonLogFormatter().format(record))["message"] == f"image {HOSTILE}"
