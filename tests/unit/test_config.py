"""The sources file, and how flags and Dagster partitions pick targets from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dagster._utils.schedules import is_valid_cron_string

from pipeline.config import (
    AccessSettings,
    Overrides,
    ProjectConfig,
    build_targets,
    load_config,
)
from pipeline.cron import cron_problem
from pipeline.errors import ConfigError
from pipeline.redact import redact
from tests.support import GOOD_SOURCE, sources_file

SOURCES = """
[schedules]
sync_cron = "*/30 * * * *"

[sources.prod]
profile = "prod-readonly"
regions = ["us-east-1", "eu-west-1"]

[sources.lab]
endpoint_url = "http://127.0.0.1:8765"
"""


def test_sources_file_gives_sources_partitions_and_schedules(tmp_path: Path) -> None:
    config = load_config(str(sources_file(tmp_path, SOURCES)))
    assert [s.name for s in config.sources] == ["prod", "lab"]
    assert config.partition_keys() == ["prod/us-east-1", "prod/eu-west-1", "lab"]
    assert config.sync_cron == "*/30 * * * *" and config.reconcile_cron == "30 2 * * *"


def test_the_file_is_found_through_the_environment_or_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sources_file(tmp_path, SOURCES)
    assert load_config(environ={"IMAGE_VERSIONS_CONFIG": str(path)}).path == path
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).path == Path("image-versions.toml")
    monkeypatch.chdir(tmp_path / "..")
    assert load_config(environ={}) == ProjectConfig()


def test_targets_follow_partitions_sources_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    config = load_config(str(sources_file(tmp_path, SOURCES)))
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
        load_config(str(sources_file(tmp_path, text)))


def test_bad_choices_are_config_errors(tmp_path: Path) -> None:
    config = load_config(str(sources_file(tmp_path, SOURCES)))
    with pytest.raises(ConfigError, match="unknown source 'nope'"):
        build_targets(config, AccessSettings(), Overrides(sources=("nope",)))
    with pytest.raises(ConfigError, match="partition"):
        build_targets(config, AccessSettings(), partition_keys=["prod/ap-south-1"])
    with pytest.raises(ConfigError, match="concurrency"):
        AccessSettings(concurrency=65)
    with pytest.raises(ConfigError, match="retry_mode"):
        AccessSettings(retry_mode="yolo")


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
    config = load_config(str(sources_file(tmp_path, ROLES)))
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
        load_config(str(sources_file(tmp_path, f"[sources.a]\n{text}\n")))


# ------------------------------------------------------------------ crons, regions, endpoints

CRON_SAMPLES = [
    # standard crons, names in any case, the macros
    "* * * * *",
    "0 * * * *",
    " 0  0\t* * * ",
    "*/5 * * * *",
    "1/5 * * * *",
    "0-59/61 * * * *",
    "007 * * * *",
    "59 23 31 12 7",
    "0 0 1 1 0",
    "0 9 * * MON-FRI",
    "0 0 * jan-mar *",
    "0 0 * * mon,Fri",
    "0 0 * * sun/2",
    "0 0 * * 1-5,sat",
    "0 0 1-31/2 * *",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@HOURLY",
    # croniter's corners: reversed ranges wrap, N-N is the whole cycle
    "5-1 * * * *",
    "* * * * sat-mon",
    "* * * dec-jan *",
    "0 0 * * 0-7",
    "0 0 31 2-2 *",
    "0 0 30 2-2/5 *",
    "0 0 30-30 2 *",
    "0 0 31/1 2 *",
    # February 29th exists; 30th and 31st only with other days or months
    "0 0 29 2 *",
    "0 0 30,31 2 *",
    "0 0 30 2,3 *",
    "0 0 29-31 2 *",
    "0 0 */30 2 *",
    # February 30th and 31st, however spelt
    "0 0 30 2 *",
    "0 0 31 feb *",
    "0 0 30 Feb 1",
    "0 0 31 2/12 *",
    "0 0 30-2/3 2 *",
    # out of range
    "60 * * * *",
    "0 24 * * *",
    "0 0 0 * *",
    "0 0 32 * *",
    "0 0 * 0 *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "0 0 1-32 * *",
    # malformed
    "*/0 * * * *",
    "1-5/0 * * * *",
    "* * * * * *",
    "0 0 1 1 * 2020",
    "* * * *",
    "",
    "  ",
    "@reboot",
    "@every 5m",
    "@daily ",
    "a * * * *",
    "0 0 * january *",
    "0 0 * * sunday",
    "0 0 jan * *",
    "1,,2 * * * *",
    ",1 * * * *",
    "-1 * * * *",
    "1- * * * *",
    "*/ * * * *",
    "1/2/3 * * * *",
    "*-5 * * * *",
    "+1 * * * *",
    "0x1 * * * *",
    "H * * * *",
    "0 0 * * 5L",
]

# Accepted by Dagster's croniter, refused on purpose: its extensions (L, #, ?, R), non-ASCII
# digits, and reversed ranges ending at a day or month 0.
STRICTER_THAN_DAGSTER = [
    "0 0 L * *",
    "0 0 * * 1#2",
    "0 0 ? * *",
    "R * * * *",
    "\uff11 * * * *",
    "0 0 5-0 * *",
    "0 0 0-0 * *",
    "0 0 * 6-0 *",
]


def test_cron_validation_agrees_with_dagster() -> None:
    dagster_accepts = {cron: is_valid_cron_string(cron) for cron in CRON_SAMPLES}
    assert sum(dagster_accepts.values()) >= 20
    assert list(dagster_accepts.values()).count(False) >= 20
    disagreements = {
        cron: cron_problem(cron)
        for cron, accepted in dagster_accepts.items()
        if accepted != (cron_problem(cron) is None)
    }
    assert disagreements == {}


def test_cron_validation_refuses_what_only_croniter_reads() -> None:
    assert [cron for cron in STRICTER_THAN_DAGSTER if not is_valid_cron_string(cron)] == []
    assert [cron for cron in STRICTER_THAN_DAGSTER if cron_problem(cron) is None] == []


def test_schedules_take_macros_and_names(tmp_path: Path) -> None:
    text = "[schedules]\nsync_cron = '15 8-18 * * MON-FRI'\nreconcile_cron = '@daily'\n"
    config = load_config(str(sources_file(tmp_path, text + "[sources.a]\n")))
    assert (config.sync_cron, config.reconcile_cron) == ("15 8-18 * * MON-FRI", "@daily")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("sync_cron = '61 * * * *'", "sync_cron '61 * * * *' is not a valid cron: minute 61 is"),
        ("reconcile_cron = '0 0 * * * *'", "reconcile_cron '0 0 * * * *' is not a valid cron"),
        ("sync_cron = '0 0 31 feb *'", "sync_cron '0 0 31 feb *' is not a valid cron: February"),
        ("sync_cron = '0 0 * * 1#2'", "sync_cron '0 0 * * 1#2' is not a valid cron"),
        ("sync_cron = 5", "sync_cron must be a string, not 5"),
    ],
)
def test_a_bad_cron_is_a_config_error_naming_key_and_value(
    tmp_path: Path, setting: str, message: str
) -> None:
    path = sources_file(tmp_path, f"[sources.a]\n[schedules]\n{setting}\n")
    with pytest.raises(ConfigError, match=r"\[schedules\] " + re.escape(message)):
        load_config(str(path))


@pytest.mark.parametrize("region", ["", "US-EAST-1", "us-east-1 ", "useast1", "us_east_1", "u-1"])
def test_a_malformed_region_is_a_config_error_from_the_file_or_the_flag(
    tmp_path: Path, region: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"[sources.a] region {region!r} is not")):
        load_config(str(sources_file(tmp_path, f"[sources.a]\nregions = [{region!r}]\n")))
    config = load_config(str(sources_file(tmp_path, SOURCES)))
    with pytest.raises(ConfigError, match=re.escape(f"--region {region!r} is not")):
        build_targets(config, AccessSettings(), Overrides(regions=(region,)))


def test_a_well_formed_unknown_region_is_left_to_the_run(tmp_path: Path) -> None:
    config = load_config(str(sources_file(tmp_path, "[sources.a]\nregions = ['xx-nowhere-9']\n")))
    (target,) = build_targets(config, AccessSettings(), Overrides(regions=("yy-elsewhere-1",)))
    assert (config.sources[0].regions, target.region) == (("xx-nowhere-9",), "yy-elsewhere-1")


GOOD_ENDPOINTS = [
    "http://127.0.0.1:8765",
    "https://api.sagemaker.us-east-1.amazonaws.com",
    "http://[::1]:8080/base/",
    "http://user:secret@localhost:65535",
]


@pytest.mark.parametrize("url", GOOD_ENDPOINTS)
def test_a_good_endpoint_url_is_taken_from_the_file_or_the_flag(tmp_path: Path, url: str) -> None:
    config = load_config(
        str(sources_file(tmp_path, f"[sources.a]\nendpoint_url = {json.dumps(url)}\n"))
    )
    assert config.sources[0].endpoint_url == url
    overrides = Overrides(regions=("us-east-1",), endpoint_url=url)
    assert build_targets(config, AccessSettings(), overrides)[0].client.endpoint_url == url


def endpoint_url_error(tmp_path: Path, url: str, via: str) -> str:
    """The message of the ConfigError that `url` raises from the sources file or the flag."""
    source = sources_file(
        tmp_path,
        f"[sources.a]\nendpoint_url = {json.dumps(url)}\n" if via == "file" else GOOD_SOURCE,
    )
    with pytest.raises(ConfigError) as raised:
        config = load_config(str(source))
        build_targets(config, AccessSettings(), Overrides(endpoint_url=url))
    return str(raised.value)


@pytest.mark.parametrize(
    ("via", "where"), [("file", "[sources.a] endpoint_url"), ("flag", "--endpoint-url")]
)
@pytest.mark.parametrize(
    ("url", "shown", "problem"),
    [
        ("http://[::1", "'http://[::1'", "cannot be parsed"),
        ("http://localhost:99999", "'http://localhost:99999'", "has a port outside 1-65535"),
        ("http://localhost:0", "'http://localhost:0'", "has a port outside 1-65535"),
        ("not a url", "'not a url'", "contains whitespace"),
        ("http://", "'http://'", "has no host"),
        ("ftp://x", "'ftp://x'", "does not start with http:// or https://"),
        ("localhost:8080", "'localhost:8080'", "does not start with http:// or https://"),
        ("http://h\tost", "'http://h\\tost'", "contains whitespace"),
        ("http://host/?a=1", "'http://host/?a=1'", "has a query or fragment"),
        ("http://host#top", "'http://host#top'", "has a query or fragment"),
        ("http://[::1]x", "'http://[::1]x'", "has no valid host[:port]"),
        ("http://user:secret@host:99999", "'http://***@host:99999'", "has a port outside"),
        ("http://user:se/cr#et@host", "'http://***@host'", "has a query or fragment"),
        ("http://user:secret@[::1", "'http://***@[::1'", "cannot be parsed"),
    ],
)
def test_a_malformed_endpoint_url_is_a_config_error_without_its_password(
    tmp_path: Path, url: str, shown: str, problem: str, via: str, where: str
) -> None:
    message = endpoint_url_error(tmp_path, url, via)
    assert f"{where} must be an http(s) URL like https://HOST[:PORT][/PATH], but " in message
    assert f"{shown} {problem}" in message
    assert "secret" not in message and "se/cr" not in message


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://user:pass@host:1/p", "http://***@host:1/p"),
        ("https://token@host", "https://***@host"),
        ("http://u:p@ss/w#rd@host", "http://***@host"),
        ("user:pass@host", "***@host"),
        ("http://host:1/p", "http://host:1/p"),
    ],
)
def test_redact_hides_the_userinfo(url: str, redacted: str) -> None:
    assert redact(url) == redacted
    assert redact(f'failed: "{url}" refused') == f'failed: "{redacted}" refused'
