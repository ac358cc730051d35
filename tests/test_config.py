"""The sources file, and how flags and Dagster partitions pick targets from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import (
    AccessSettings,
    Overrides,
    ProjectConfig,
    build_targets,
    load_config,
)
from pipeline.errors import ConfigError
from tests.support import run_cli

SOURCES = """
[schedules]
sync_cron = "*/30 * * * *"

[sources.prod]
profile = "prod-readonly"
regions = ["us-east-1", "eu-west-1"]

[sources.lab]
endpoint_url = "http://127.0.0.1:8765"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "image-versions.toml"
    path.write_text(text)
    return path


def test_sources_file_gives_sources_partitions_and_schedules(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, SOURCES)))
    assert [s.name for s in config.sources] == ["prod", "lab"]
    assert config.partition_keys() == ["prod/us-east-1", "prod/eu-west-1", "lab"]
    assert config.sync_cron == "*/30 * * * *" and config.reconcile_cron == "30 2 * * *"


def test_the_file_is_found_through_the_environment_or_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SOURCES)
    assert load_config(environ={"IMAGE_VERSIONS_CONFIG": str(path)}).path == path
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).path == Path("image-versions.toml")
    monkeypatch.chdir(tmp_path / "..")
    assert load_config(environ={}) == ProjectConfig()


def test_targets_follow_partitions_sources_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    config = load_config(str(write(tmp_path, SOURCES)))
    access = AccessSettings(max_rps=5, concurrency=4)

    def pairs(targets: list) -> list[tuple[str, str]]:
        return [(t.source, t.region) for t in targets]

    assert pairs(build_targets(config, access, partition_keys=["prod/eu-west-1", "lab"])) == [
        ("prod", "eu-west-1"),
        ("lab", "ap-south-1"),
    ]
    assert pairs(build_targets(config, access)) == [
        ("prod", "us-east-1"),
        ("prod", "eu-west-1"),
        ("lab", "ap-south-1"),
    ]
    only = build_targets(config, access, Overrides(sources=("prod",), regions=("us-west-2",)))
    assert pairs(only) == [("prod", "us-west-2")]
    assert only[0].client.profile == "prod-readonly" and only[0].client.max_rps == 5
    lab = build_targets(config, access, Overrides(sources=("lab",)))[0]
    assert lab.client.endpoint_url == "http://127.0.0.1:8765" and lab.client.pool_size == 4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[sources.a\n", "not valid TOML"),
        ("[sources]\n", "no sources"),
        ("[other]\nx = 1\n", "unknown section"),
        ("[sources.a]\nregion = 'us-east-1'\n", "takes only"),
        ("[sources.a]\nregions = 'us-east-1'\n", "must be a list"),
        ("[sources.'a b']\n", "source name"),
        ("[sources.a]\n[schedules]\ncron = '* * * * *'\n", "[schedules] takes only"),
    ],
)
def test_a_malformed_sources_file_is_a_config_error(
    tmp_path: Path, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_config(str(write(tmp_path, text)))


def test_bad_choices_are_config_errors(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, SOURCES)))
    with pytest.raises(ConfigError, match="unknown source 'nope'"):
        build_targets(config, AccessSettings(), Overrides(sources=("nope",)))
    with pytest.raises(ConfigError, match="partition"):
        build_targets(config, AccessSettings(), partition_keys=["prod/ap-south-1"])
    with pytest.raises(ConfigError, match="concurrency"):
        AccessSettings(concurrency=65)
    with pytest.raises(ConfigError, match="retry mode"):
        AccessSettings(retry_mode="yolo")


def test_cli_reports_config_file_problems_in_one_line(tmp_path: Path) -> None:
    for args, fragment in (
        (["--config", str(tmp_path / "missing.toml")], "does not exist"),
        (["--config", str(write(tmp_path, SOURCES)), "--source", "nope"], "unknown source"),
    ):
        result = run_cli("sync", "--data-dir", str(tmp_path / "data"), *args)
        assert result.code == 2 and fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


ROLES = """
[sources.analytics]
role_arn = "arn:aws:iam::111122223333:role/team/SageMakerReadOnly"
external_id = "shared-secret"
source_profile = "hub"
regions = ["us-east-1"]

[sources.org]
profile = "management"
role_session_name = "nightly"
regions = ["us-east-1", "eu-west-1"]
organization = { member_role = "SageMakerReadOnly", exclude = ["444455556666"] }
"""


def test_role_and_organization_sources_become_role_chains_and_one_partition_per_region(
    tmp_path: Path,
) -> None:
    config = load_config(str(write(tmp_path, ROLES)))
    assert config.partition_keys() == ["analytics/us-east-1", "org/us-east-1", "org/eu-west-1"]
    analytics, org, _ = build_targets(config, AccessSettings())
    assert analytics.client.profile == "hub" and analytics.client.organization is None
    (role,) = analytics.client.roles
    assert role.role_arn.endswith(":role/team/SageMakerReadOnly")
    assert (role.external_id, role.session_name) == ("shared-secret", "image-versions")
    assert org.client.profile == "management" and org.client.roles == ()
    assert org.client.organization is not None
    assert org.client.organization.exclude == ("444455556666",)
    member = org.client.organization.member("111122223333", "aws")
    assert member.role_arn == "arn:aws:iam::111122223333:role/SageMakerReadOnly"
    assert member.session_name == "nightly"
    (only,) = build_targets(config, AccessSettings(), partition_keys=["org/eu-west-1"])
    assert (only.source, only.region, only.client.organization) == (
        "org",
        "eu-west-1",
        org.client.organization,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("role_arn = 'arn:aws:iam::1234:role/x'", "role_arn must be an IAM role ARN"),
        ("role_arn = 'arn:aws:iam::123456789012:user/x'", "role_arn must be an IAM role ARN"),
        ("external_id = 'abc'", "external_id needs role_arn"),
        ("source_profile = 'hub'", "source_profile needs role_arn"),
        ("role_session_name = 'nightly'", "role_session_name needs role_arn or organization"),
        (
            "role_arn = 'arn:aws:iam::123456789012:role/x'\nprofile = 'p'",
            "with role_arn, name the profile that assumes it with source_profile",
        ),
        (
            "role_arn = 'arn:aws:iam::123456789012:role/x'\nrole_session_name = 'a b'",
            "role_session_name must be",
        ),
        (
            "role_arn = 'arn:aws:iam::123456789012:role/x'\nduration_seconds = '1h'",
            "duration_seconds must be a positive integer",
        ),
        ("organization = { accounts = [] }", "organization needs member_role"),
        ("organization = { member_role = 'r', account = [] }", "organization takes only"),
        (
            "organization = { member_role = 'r', accounts = [1] }",
            "organization accounts must be a list of 12-digit",
        ),
        ("organization = { member_role = 'a role' }", "member_role must be"),
    ],
)
def test_malformed_role_settings_are_config_errors(
    tmp_path: Path, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=r"\[sources\.a\] " + fragment):
        load_config(str(write(tmp_path, f"[sources.a]\n{text}\n")))


def test_cli_rejects_a_malformed_role_arn_with_status_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[sources.a]\nrole_arn = 'arn:aws:iam::role/x'\n")
    result = run_cli("sync", "--config", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.code == 2 and "role_arn must be an IAM role ARN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
