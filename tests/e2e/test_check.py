"""`image-versions check`: each target's identity (moto's STS) and the permissions of its sync's
calls (the emulator), the data dir's writability and locks, and the Dagster code location's load."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.emulator import (
    ACCESS_DENIED,
    DEFAULT_ACCOUNT_ID,
    ApiError,
    EmulatorServer,
    seed_catalogue,
)
from pipeline.model import target_key
from pipeline.storage import DataDir
from tests.support import (
    OTHER_REGION,
    REGION,
    CliResult,
    foreign_packages,
    moto_server,
    run_cli,
    run_sync,
    sources_file,
)

pytestmark = pytest.mark.dagster  # check imports the code location, in a child process

MOTO_USER = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:user/moto"
"""Who moto's STS says boto3's default test keys are."""


@pytest.fixture(scope="module")
def sts_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def sts(sts_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_url)
    return sts_url


@pytest.fixture
def seeded(server: EmulatorServer) -> EmulatorServer:
    seed_catalogue(server.emulator, seed=5, images=3, region=REGION)
    return server


def refused_url() -> str:
    """A loopback URL where nothing listens: a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def check(
    sources: Path,
    data: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> CliResult:
    args = ("check", "--config", str(sources), "--data-dir", str(data), *extra)
    return run_cli(*args, env=env, cwd=cwd)


def test_check_gives_one_line_per_target_and_fails_on_any(
    sts: str, seeded: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seeded.emulator.faults.denied_regions = frozenset({OTHER_REGION})
    dead = refused_url()
    sources = sources_file(
        tmp_path,
        f'[sources.emu]\nendpoint_url = "{seeded.url}"\nregions = ["{REGION}", "{OTHER_REGION}"]\n'
        f'[sources.dead]\nendpoint_url = "{dead}"\nregions = ["{REGION}"]\n',
    )
    run_sync(data_dir, seeded)  # the data dir exists, with a target's and an account's locks

    # From a directory with its own `assets` and `pipeline`: the Dagster load is this one's.
    text = check(sources, data_dir.root, cwd=foreign_packages(tmp_path / "repo"))
    assert text.code == 1 and not text.stderr, text.stderr
    identity = f"account {DEFAULT_ACCOUNT_ID} as {MOTO_USER}"
    assert text.stdout.splitlines() == [
        f"ok    emu/{REGION}: {identity}; ListImages, ListImageVersions allowed",
        f"FAIL  emu/{OTHER_REGION}: {identity}; ListImages: AccessDeniedException: "
        "User is not authorized to perform: sagemaker:ListImages",
        f"FAIL  dead/{REGION}: {identity}; ListImages: cannot reach SageMaker endpoint {dead} "
        "([Errno 111] Connection refused); check --region and --endpoint-url",
        f"ok    data dir {data_dir.root}: writable, 3 locks free",
        text.stdout.splitlines()[-1],
    ]
    assert text.stdout.splitlines()[-1].startswith("ok    dagster assets.definitions: loads (")

    as_json = check(sources, data_dir.root, "--json")
    assert as_json.code == 1 and not as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [(t["source"], t["region"], t["ok"], t["list_images"]) for t in report["targets"]] == [
        ("emu", REGION, True, True),
        ("emu", OTHER_REGION, False, False),
        ("dead", REGION, False, False),
    ]
    assert {(t["account_id"], t["arn"]) for t in report["targets"]} == {
        (DEFAULT_ACCOUNT_ID, MOTO_USER)
    }
    assert report["data_dir"] == {
        "subject": f"data dir {data_dir.root}",
        "ok": True,
        "detail": "writable, 3 locks free",
        "location": str(data_dir.root),
        "exists": True,
        "busy_locks": [],
    }
    assert report["dagster"]["ok"] is True and report["dagster"]["seconds"] > 0


def test_check_passes_with_an_assumed_role_and_creates_no_data_dir(
    sts: str, seeded: EmulatorServer, tmp_path: Path
) -> None:
    role = "arn:aws:iam::111122223333:role/Reader"
    sources = sources_file(
        tmp_path,
        f'[sources.reader]\nendpoint_url = "{seeded.url}"\nregions = ["{REGION}"]\n'
        f'role_arn = "{role}"\n',
    )
    data = tmp_path / "data"

    result = check(sources, data, "--json")

    assert result.code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    [target] = report["targets"]
    assert target["account_id"] == "111122223333"
    assert target["arn"] == "arn:aws:sts::111122223333:assumed-role/Reader/image-versions"
    assert report["data_dir"]["detail"] == "empty or absent: the first sync creates it"
    assert report["ok"] is True and not data.exists()


def test_check_tries_every_call_a_source_opts_into_on_its_first_image(
    sts: str, seeded: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    sources = sources_file(
        tmp_path,
        f'[sources.tagged]\nendpoint_url = "{seeded.url}"\nregions = ["{REGION}"]\ntags = true\n'
        f'[sources.empty]\nendpoint_url = "{seeded.url}"\nregions = ["{OTHER_REGION}"]\n',
    )
    identity = f"account {DEFAULT_ACCOUNT_ID} as {MOTO_USER}"
    every = "ListImageVersions, ListAliases, DescribeImageVersion, DescribeImage, ListTags"

    allowed = check(sources, data_dir.root).stdout.splitlines()[:2]
    assert allowed == [
        f"ok    tagged/{REGION}: {identity}; ListImages, {every} allowed",
        f"ok    empty/{OTHER_REGION}: {identity}; ListImages allowed; no image to try the calls "
        "on an image with",
    ]

    def refuse(operation: str, params: dict[str, Any]) -> None:
        if operation == "ListTags":
            raise ApiError(ACCESS_DENIED, "not authorized to perform: sagemaker:ListTags")

    seeded.emulator.before_request = refuse
    refused = check(sources, data_dir.root)
    assert refused.code == 1
    assert refused.stdout.splitlines()[0] == (
        f"FAIL  tagged/{REGION}: {identity}; ListImages, {every.removesuffix(', ListTags')} "
        "allowed; ListTags: AccessDeniedException: not authorized to perform: sagemaker:ListTags"
    )


def test_check_fails_on_a_held_lock_an_unreachable_sts_and_a_broken_code_location(
    seeded: EmulatorServer, data_dir: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sts = refused_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
    sources = sources_file(
        tmp_path, f'[sources.emu]\nendpoint_url = "{seeded.url}"\nregions = ["{REGION}"]\n'
    )
    run_sync(data_dir, seeded)
    broken = {"IMAGE_VERSIONS_PARTITIONS_PER_RUN": "none"}

    with data_dir.target_lock(target_key("default", REGION)):
        result = check(sources, data_dir.root, env=broken)

    assert result.code == 1 and not result.stderr
    target, data, dagster = result.stdout.splitlines()
    assert target == (
        f"FAIL  emu/{REGION}: ListImages, ListImageVersions allowed; identity: cannot reach STS "
        f"endpoint {sts} "
        "([Errno 111] Connection refused); check the network, or AWS_ENDPOINT_URL_STS"
    )
    assert data == (
        f"FAIL  data dir {data_dir.root}: writable; held by another process: "
        f"target default.{REGION}"
    )
    assert dagster == (
        "FAIL  dagster assets.definitions: pipeline.errors.ConfigError: "
        "IMAGE_VERSIONS_PARTITIONS_PER_RUN must be a whole number of partitions (1 or more), "
        "or unset for one run per backfill, not 'none'"
    )


def test_check_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    sources = sources_file(tmp_path, f'[sources.emu]\nregions = ["{REGION}"]\n')

    for args in (["--source", "nosuch"], ["--region", "not a region"], ["--call-timeout", "0"]):
        result = check(sources, tmp_path / "data", *args)
        assert result.code == 2 and not result.stdout, args
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
