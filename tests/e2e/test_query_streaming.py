"""`query` prints its result as it reads it: memory stays flat however many rows there are, a
table shows the first rows and counts the rest, and a reader that stops early (`| head`) ends
the command quietly."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.storage import DataDir
from tests.support import run_cli

ROWS = 2_000_000
PEAK_LIMIT_MB = 300
"""The old `query` held every row as Python objects first: 850 MB and more for ROWS."""

_PEAK_REPORTED = (
    "import atexit, os, sys\n"
    "def report():\n"
    "    status = open('/proc/self/status').read().splitlines()\n"
    "    [peak] = [line.split()[1] for line in status if line.startswith('VmHWM:')]\n"
    "    open(os.environ['PEAK_REPORT'], 'w').write(peak)\n"
    "atexit.register(report)\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture
def ours(data_dir: DataDir) -> str:
    """A data dir with no data yet: `query` runs SQL that needs none."""
    data_dir.prepare()
    return str(data_dir.root)


def peak_rss_mb(report: Path, out: Path, *args: str) -> float:
    """The peak RSS (VmHWM, the process's own high-water mark) of the command in a process of
    its own, its stdout going to `out`."""
    with out.open("wb") as stdout:
        completed = subprocess.run(
            [sys.executable, "-c", _PEAK_REPORTED, *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=600,
            env={**os.environ, "PEAK_REPORT": str(report)},
            stdin=subprocess.DEVNULL,
        )
    assert completed.returncode == 0, completed.stderr
    return int(report.read_text()) / 1024


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_memory_stays_flat_however_many_rows(ours: str, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    sql = f"SELECT range AS n FROM range({ROWS})"

    peak = peak_rss_mb(tmp_path / "peak", out, "query", sql, "--data-dir", ours, "--format", fmt)

    assert peak < PEAK_LIMIT_MB
    with out.open() as printed:
        if fmt == "csv":
            assert printed.readline() == "n\n"
            assert sum(1 for _ in printed) == ROWS
        else:
            assert json.load(printed)[-1] == {"n": ROWS - 1}


def test_json_over_many_batches_is_one_array_and_jsonl_one_object_a_line(ours: str) -> None:
    sql = "SELECT range AS n, 'r' || range AS s FROM range(5000) ORDER BY n"
    expected = [{"n": n, "s": f"r{n}"} for n in range(5000)]

    as_json = run_cli("query", sql, "--data-dir", ours, "--format", "json")
    as_lines = run_cli("query", sql, "--data-dir", ours, "--format", "jsonl")

    assert as_json.code == 0 and as_json.stdout.count("\n") == 1
    assert json.loads(as_json.stdout) == expected
    assert as_lines.code == 0
    assert [json.loads(line) for line in as_lines.stdout.splitlines()] == expected
    empty = run_cli("query", "FROM range(0)", "--data-dir", ours, "--format", "json")
    assert empty.stdout == "[]\n"
    empty = run_cli("query", "FROM range(0)", "--data-dir", ours, "--format", "jsonl")
    assert empty.code == 0 and empty.stdout == ""


def test_a_table_shows_the_first_thousand_rows_and_counts_them_all(ours: str) -> None:
    result = run_cli("query", "SELECT range AS n FROM range(5000)", "--data-dir", ours)

    header, rule, *cells, count = result.stdout.splitlines()
    assert result.code == 0 and header.strip() == "n" and set(rule) == {"-"}
    assert [int(cell) for cell in cells] == list(range(1000))
    assert count == "(5,000 rows, the first 1,000 shown; --format csv or json prints them all)"


def test_csv_quotes_a_lone_carriage_return(ours: str) -> None:
    """Readers take a bare CR for a line break: a value holding one is quoted."""
    sql = "SELECT 'a' || chr(13) || 'b' AS v, 1 AS n UNION ALL SELECT 'c', 2 ORDER BY n"
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "query", sql, "--data-dir", ours, "--format", "csv"],
        capture_output=True,
        timeout=120,
    )
    rows = list(csv.reader(io.StringIO(completed.stdout.decode(), newline="")))
    assert rows == [["v", "n"], ["a\rb", "1"], ["c", "2"]]


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "table"])
def test_a_reader_that_stops_early_ends_the_query_quietly(ours: str, fmt: str) -> None:
    """`query ... | head -c 1000`: the reader takes the start and closes the pipe."""
    sql = f"SELECT range AS n FROM range({ROWS})"
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline", "query", sql, "--data-dir", ours, "--format", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        start = process.stdout.read(1000)
        process.stdout.close()
        stderr = process.stderr.read()
        code = process.wait(timeout=300)

    assert len(start) == 1000 and code == 0 and stderr == b""


def test_a_reader_gone_before_the_first_write_ends_the_query_quietly(ours: str) -> None:
    """`query ... | true`: nobody reads at all; the output is small enough to wait in the
    buffer until the flush at the end."""
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline", "query", "SELECT 1 AS n", "--data-dir", ours],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        stderr = process.stderr.read()
        code = process.wait(timeout=120)

    assert code == 0 and stderr == b""
