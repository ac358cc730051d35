"""The command line as a user meets it: exit statuses, one-line errors, output formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from tests.support import (
    GOOD_SOURCE,
    assert_converged,
    foreign_packages,
    run_cli,
    run_cli_reporting_imports,
    sources_file,
)


def sync_args(server: EmulatorServer, data_dir: DataDir, *extra: str) -> list[str]:
    return ["sync", "--data-dir", str(data_dir.root), "--endpoint-url", server.url, *extra]


def assert_usage_error(result, fragment: str) -> None:
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0]


def test_sync_then_status_query_and_compact(server: EmulatorServer, data_dir: DataDir) -> None:
    seed_catalogue(server.emulator, seed=11, images=6)
    first = run_cli(*sync_args(server, data_dir))
    assert first.code == 0, first.stderr
    assert "synced 6 images of 1 target" in first.stdout and "API calls" in first.stdout
    assert_converged(data_dir, server.emulator)

    status = run_cli("status", "--data-dir", str(data_dir.root), "--images", "--json")
    rows = json.loads(status.stdout)
    assert status.code == 0 and len(rows) == 6
    counts = {r["image_name"]: r["version_count"] for r in rows}
    expected = {name: 0 for name in server.emulator.image_names()}
    for version in server.emulator.live_versions():
        expected[version["ImageName"]] += 1
    assert counts == expected

    query = run_cli(
        "query",
        "SELECT count(*) AS n FROM image_versions",
        "--data-dir",
        str(data_dir.root),
        "--format",
        "json",
    )
    assert query.code == 0 and json.loads(query.stdout) == [{"n": sum(expected.values())}]
    as_csv = run_cli(
        "query", "SELECT 1 AS a, 'x' AS b", "--data-dir", str(data_dir.root), "--format", "csv"
    )
    assert as_csv.stdout == "a,b\n1,x\n"
    table = run_cli("query", "SELECT 1 AS a", "--data-dir", str(data_dir.root))
    assert table.stdout.splitlines()[0].strip() == "a" and "(1 row)" in table.stdout

    compact = run_cli("compact", "--data-dir", str(data_dir.root))
    assert compact.code == 0 and "files" in compact.stdout
    assert_converged(data_dir, server.emulator)


def test_a_failed_image_gives_exit_1_and_the_rest_is_committed(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=12, images=5)
    result = run_cli(*sync_args(server, data_dir, "--image", "not-there"))
    assert result.code == 1
    # The FAILED line goes to stderr, with errors and logs; stdout holds the summary alone.
    [summary] = result.stdout.splitlines()
    assert summary.startswith("synced ") and "not-there" not in summary
    [failed] = result.stderr.splitlines()
    assert failed.startswith("FAILED ") and "image not-there:" in failed


def test_sync_json_summary_and_json_logs_are_machine_readable(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=13, images=4)
    result = run_cli(*sync_args(server, data_dir, "--json", "--log-format", "json"))
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    live = len(server.emulator.live_versions())
    assert summary["ok"] is True and summary["failures"] == []
    assert summary["images"] == 4 and summary["versions_new"] == live
    assert summary["list_image_versions_calls"] >= 4 and summary["rows_written"] == live
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert logs and {"time", "level", "logger", "message"} <= logs[0].keys()
    assert all(entry["logger"].startswith("pipeline") for entry in logs)
    assert any("state committed" in entry["message"] for entry in logs)

    failed = run_cli(*sync_args(server, data_dir, "--json", "--image", "not-there"))
    figures = json.loads(failed.stdout)
    assert failed.code == 1 and figures["ok"] is False
    assert len(figures["failures"]) == 1 and "not-there" in figures["failures"][0]


@pytest.mark.parametrize("images", ["1", "2"])
def test_an_emulator_too_small_to_seed_is_refused_with_one_line(images: str) -> None:
    assert_usage_error(run_cli("emulator", "--images", images, "--port", "0"), "--images")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "many"], "--concurrency"),
        (["--max-rps", "-1"], "--max-rps"),
        (["--region", "mars-north-1"], "unknown region 'mars-north-1'"),
        (["--image", "bad name!"], "invalid image name"),
        (["--lookback-minutes", "x"], "--lookback-minutes"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_sync_flags_exit_2_with_one_line(
    server: EmulatorServer, data_dir: DataDir, args: list[str], fragment: str
) -> None:
    assert_usage_error(run_cli(*sync_args(server, data_dir, *args)), fragment)
    assert not data_dir.root.exists(), "nothing may be written on bad input"


def test_unreachable_endpoint_exits_2(data_dir: DataDir) -> None:
    result = run_cli(
        "sync", "--data-dir", str(data_dir.root), "--endpoint-url", "http://127.0.0.1:9"
    )
    assert_usage_error(result, "cannot reach SageMaker endpoint")


def test_missing_credentials_exit_2(
    server: EmulatorServer, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert_usage_error(run_cli(*sync_args(server, data_dir)), "no AWS credentials")


def test_missing_region_exits_2(
    server: EmulatorServer, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    assert_usage_error(run_cli(*sync_args(server, data_dir)), "no AWS region")


def test_a_data_dir_that_is_not_ours_is_refused(server: EmulatorServer, tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    result = run_cli(*sync_args(server, DataDir(foreign)))
    assert_usage_error(result, "not created by image-versions")
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]


def test_a_data_dir_that_is_a_file_or_unwritable_is_refused(
    server: EmulatorServer, tmp_path: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_usage_error(run_cli(*sync_args(server, DataDir(a_file))), "is a file")
    assert_usage_error(run_cli(*sync_args(server, DataDir(a_file / "sub"))), "cannot create")


def test_writers_are_refused_while_compaction_holds_the_whole_dataset(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    assert run_cli(*sync_args(server, data_dir)).code == 0
    with data_dir.exclusive():
        result = run_cli(*sync_args(server, data_dir))
        compact = run_cli("compact", "--data-dir", str(data_dir.root))
    assert_usage_error(result, "another image-versions process is writing")
    assert_usage_error(compact, "another image-versions process is writing")


def test_query_errors_and_missing_data_exit_2(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=14, images=3)
    assert run_cli(*sync_args(server, data_dir)).code == 0
    root = str(data_dir.root)
    assert_usage_error(run_cli("query", "SELEC nonsense", "--data-dir", root), "query failed")
    assert_usage_error(
        run_cli("query", "DROP VIEW image_versions", "--data-dir", root), "query failed"
    )
    missing = str(tmp_path / "nothing-here")
    assert_usage_error(
        run_cli("query", "SELECT 1", "--data-dir", missing), "not an image-versions data dir"
    )
    assert_usage_error(run_cli("status", "--data-dir", missing), "not an image-versions data dir")


def test_help_version_and_unknown_command() -> None:
    assert run_cli("--help").code == 0
    version = run_cli("--version")
    assert version.code == 0 and version.stdout.startswith("image-versions 0.")
    assert_usage_error(run_cli("frobnicate"), "invalid choice")


def test_help_imports_no_heavy_library() -> None:
    """`--help` answers at once: pyarrow, boto3, duckdb, pydantic and dagster load in commands."""
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "sync", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines()}
    assert "pipeline.cli" in imported
    assert not imported & {"pyarrow", "boto3", "botocore", "duckdb", "dagster", "pydantic"}


def test_pipeline_imports_without_dagster() -> None:
    code = (
        "import importlib, pkgutil, sys, pipeline\n"
        "for m in pkgutil.iter_modules(pipeline.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('pipeline.' + m.name)\n"
        "assert 'dagster' not in sys.modules, 'pipeline imported dagster'\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "clean", result.stderr


def test_no_command_imports_the_dagster_layer(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    """pipeline/ never imports Dagster or assets/, on any path: every command, run in a process
    of its own (the demo's Dagster run happens in a child: see the demo's test)."""
    seed_catalogue(server.emulator, seed=8, images=4)
    data = ["--data-dir", str(data_dir.root)]
    commands = [
        ["sync", *data, "--endpoint-url", server.url, "--region", "us-east-1"],
        ["status", *data],
        ["query", "SELECT count(*) FROM image_versions", *data],
        ["compact", *data],
        ["verify", *data],
        ["emulator", "--images", "2"],
        ["sync", "--help"],
    ]
    for index, command in enumerate(commands):
        result, layers = run_cli_reporting_imports(tmp_path / f"imports-{index}.json", *command)
        assert "Traceback" not in result.stderr, (command, result.stderr)
        assert layers == [], (command, layers)


@pytest.mark.dagster
def test_demo_runs_the_dagster_job_and_shows_what_changed(tmp_path: Path) -> None:
    # From a directory with its own `assets` and `pipeline`, as in a user's Dagster repository.
    result, layers = run_cli_reporting_imports(
        tmp_path / "imports.json",
        *("demo", "--data-dir", str(tmp_path / "demo")),
        cwd=foreign_packages(tmp_path / "repo"),
    )
    assert layers == []  # the Dagster run is the child's
    assert result.code == 0, result.stderr
    out = result.stdout
    steps = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(steps) == 5
    summaries = [line for line in out.splitlines() if line.startswith("synced ")]
    assert len(summaries) == 3
    assert " 0 changed, 0 deleted" in summaries[0] and "0 new" not in summaries[0]
    assert "0 deleted versions" not in summaries[1]  # the deleted image, by a plain sync
    # The second sync reads roles and tags: one DescribeImage per image, new to it.
    assert "roles and tags" not in summaries[0]
    images = summaries[1].split()[1]
    assert f"; roles and tags: {images} DescribeImage, " in summaries[1]
    assert "1 deleted versions" in summaries[2] and "throttled attempts; details: " in summaries[2]
    entered = [line for line in out.splitlines() if line.endswith("entered a failed status")]
    first, second, third = (int(line.split()[0]) for line in entered)  # by the failed-builds check
    assert first > 0 and (second, third) == (1, 0)  # the seeded failures, then the mutation's
    assert "DEBUG" not in out and "Traceback" not in result.stderr
    assert "(8 rows)" in out
    table = out.split("versions per team tag: ", 1)[1].splitlines()
    teams = {line.split()[0] for line in table if line.strip()}
    assert {"platform", "nlp", "(untagged)"} <= teams
    assert DataDir(tmp_path / "demo").is_ours()


# ------------------------------------------------------- settings the command refuses (exit 2)
# What pipeline.config refuses (tests/unit/test_config.py), as the command shows it: one line.


def test_cli_reports_config_file_problems_in_one_line(tmp_path: Path) -> None:
    for args, fragment in (
        (["--config", str(tmp_path / "missing.toml")], "does not exist"),
        (
            ["--config", str(sources_file(tmp_path, GOOD_SOURCE)), "--source", "nope"],
            "unknown source",
        ),
    ):
        result = run_cli("sync", "--data-dir", str(tmp_path / "data"), *args)
        assert result.code == 2 and fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_cli_rejects_a_malformed_role_arn_with_status_2(tmp_path: Path) -> None:
    path = sources_file(tmp_path, "[sources.a]\nrole_arn = 'arn:aws:iam::role/x'\n")
    result = run_cli("sync", "--config", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.code == 2 and "role_arn must be an IAM role ARN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


PASSWORD = "hunter2-secret"


@pytest.mark.parametrize(
    ("sources", "flags", "message"),
    [
        (
            GOOD_SOURCE + "[schedules]\nsync_cron = '0 0 30 2 *'\n",
            [],
            "[schedules] sync_cron '0 0 30 2 *' is not a valid cron",
        ),
        ("[sources.a]\nregions = ['']\n", [], "[sources.a] region '' is not an AWS region"),
        (GOOD_SOURCE, ["--region", "US-EAST-1"], "--region 'US-EAST-1' is not an AWS region"),
        (
            GOOD_SOURCE + f"endpoint_url = 'http://user:{PASSWORD}@localhost:99999'\n",
            [],
            "[sources.a] endpoint_url must be an http(s) URL",
        ),
        (
            GOOD_SOURCE,
            ["--endpoint-url", f"http://user:{PASSWORD}@[::1"],
            "--endpoint-url must be an http(s) URL",
        ),
    ],
)
def test_cli_rejects_bad_settings_with_status_2_in_one_line(
    tmp_path: Path, sources: str, flags: list[str], message: str
) -> None:
    path = sources_file(tmp_path, sources)
    result = run_cli("sync", "--config", str(path), "--data-dir", str(tmp_path / "data"), *flags)
    assert result.code == 2, result.stderr
    assert result.stderr.startswith("image-versions: error: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert message in result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr
