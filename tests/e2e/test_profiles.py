"""AWS profiles that are not configured: one line naming the profile, its source and the files
looked in, never a traceback; the source fails alone, the CLI and Dagster alike."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import dagster as dg
import pytest

from pipeline.config import load_config
from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.storage import DataDir
from tests.support import REGION, SYNC_OP, definitions, live_rows, run_cli, run_job, truth

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AWS_CONFIG_FILE, holding one profile, `analytics`, which nothing below asks for."""
    path = tmp_path / "aws-config"
    path.write_text("[profile analytics]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    return path


def two_sources(tmp_path: Path, server: EmulatorServer) -> Path:
    """A good emulator source, and one whose profile `sandbox` is not configured."""
    seed_catalogue(server.emulator, seed=41, images=3, region=REGION)
    path = tmp_path / "image-versions.toml"
    path.write_text(
        f'[sources.good]\nendpoint_url = "{server.url}"\nregions = ["{REGION}"]\n\n'
        f'[sources.sandbox]\nprofile = "sandbox"\nendpoint_url = "{server.url}"\n'
        f'regions = ["{REGION}"]\n'
    )
    return path


def missing(profile: str, source: str, config: Path, origin: str = "") -> str:
    """The line that names a profile that is not configured."""
    return (
        f"AWS profile {profile!r}{origin} of source {source!r} is not configured: it is in "
        f"neither {config} nor {os.environ['AWS_SHARED_CREDENTIALS_FILE']}; correct the name "
        "or add the profile"
    )


def test_a_source_whose_profile_is_missing_fails_alone(
    server: EmulatorServer, tmp_path: Path, config: Path
) -> None:
    sources = two_sources(tmp_path, server)
    data = DataDir(tmp_path / "data")
    result = run_cli("sync", "--config", str(sources), "--data-dir", str(data.root), "--json")
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["failures"] == [f"sandbox/{REGION}: {missing('sandbox', 'sandbox', config)}"]
    assert set(live_rows(data)) == truth(server.emulator)
    status = run_cli("status", "--data-dir", str(data.root), "--images", "--json")
    assert {row["source"] for row in json.loads(status.stdout)} == {"good"}


@pytest.mark.parametrize("region", [REGION, ""], ids=["region-given", "region-from-profile"])
def test_aws_profile_naming_a_missing_profile_exits_2_in_one_line(
    server: EmulatorServer, tmp_path: Path, config: Path, region: str
) -> None:
    data = tmp_path / "data"
    env = {"AWS_PROFILE": "nosuch", "AWS_REGION": region}
    result = run_cli("sync", "--data-dir", str(data), "--endpoint-url", server.url, env=env)
    assert result.code == 2, (result.stdout, result.stderr)
    expected = missing("nosuch", "default", config, " (AWS_PROFILE)")
    assert result.stderr.splitlines() == [f"image-versions: error: {expected}"]
    assert not data.exists()


def readme_sources_example() -> str:
    """The sources file printed in README's "Sources file" section."""
    section = (ROOT / "README.md").read_text().split("## Sources file", 1)[1]
    found = re.search(r"```toml\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_readme_sources_example_fails_as_documented_without_its_profiles(
    tmp_path: Path, config: Path
) -> None:
    """README says: printed as is, on a machine without its profiles, no source can be
    reached: exit 2, one line naming a profile and its source."""
    sources = tmp_path / "image-versions.toml"
    sources.write_text(readme_sources_example())
    data = tmp_path / "data"
    result = run_cli("sync", "--config", str(sources), "--data-dir", str(data))
    assert result.code == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("image-versions: error: ")
    assert (
        missing("prod-readonly", "prod", config) in line
        or missing("sandbox", "sandbox", config) in line
    )
    assert not data.exists()


@pytest.mark.dagster
def test_dagster_fails_only_the_partition_whose_profile_is_missing(
    server: EmulatorServer, tmp_path: Path, config: Path
) -> None:
    sources = two_sources(tmp_path, server)
    built = definitions(sources, tmp_path / "data")
    keys = load_config(str(sources)).partition_keys()
    assert keys == [f"good/{REGION}", f"sandbox/{REGION}"]
    line = missing("sandbox", "sandbox", config)
    with dg.instance_for_test() as instance:
        result = run_job(built, instance, keys)
        assert not result.success
        failure = result.failure_data_for_node(SYNC_OP)
        assert failure is not None and failure.error is not None
        assert failure.error.cls_name == "Failure"
        assert "1 partition(s) failed and are not materialized" in failure.error.message
        assert failure.user_failure_data is not None
        listed = failure.user_failure_data.metadata["failures"].value
        assert listed == f"- sandbox/{REGION}: {line}"
        assert set(live_rows(DataDir(tmp_path / "data"))) == truth(server.emulator)

        alone = run_job(built, instance, keys[1:])
        failure = alone.failure_data_for_node(SYNC_OP)
        assert failure is not None and failure.error is not None
        assert failure.error.cls_name == "Failure"
        assert line in failure.error.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[profile second]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = hub\n",
            "cannot load the AWS credentials of source 'default': The source_profile \"hub\" "
            'referenced in the profile "second" does not exist.',
        ),
        ("[profile second\n", "cannot read the AWS profiles of source 'default': Unable to parse"),
    ],
    ids=["source-profile-missing", "config-unparseable"],
)
def test_a_profile_botocore_cannot_use_exits_2_in_one_line(
    server: EmulatorServer, tmp_path: Path, config: Path, text: str, line: str
) -> None:
    config.write_text(text)
    data = tmp_path / "data"
    args = ("sync", "--data-dir", str(data), "--endpoint-url", server.url, "--profile", "second")
    result = run_cli(*args)
    assert result.code == 2, (result.stdout, result.stderr)
    [error] = result.stderr.splitlines()
    assert error.startswith(f"image-versions: error: {line}")
    assert not data.exists()
