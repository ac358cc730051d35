"""Many accounts: assumed roles and organization sources against moto's STS and Organizations.

moto's server (a subprocess on loopback) plays STS and Organizations, reached through
AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL_ORGANIZATIONS; SageMaker is one emulator server that
serves each account its own catalogue, telling accounts apart by asking moto's STS whose
access key signed the request.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from pipeline import shares
from pipeline.config import AccessSettings, build_targets, load_config
from pipeline.defaults import PROCESS_PER_CORE_TARGETS
from pipeline.emulator import DEFAULT_ACCOUNT_ID, Clock, Emulator, EmulatorServer, seed_catalogue
from pipeline.extract import list_organizations, sync
from pipeline.run import SourceTarget, SyncOptions
from pipeline.schema import to_ms
from pipeline.shares import default_processes
from pipeline.source import AccountListings, ApiStats
from pipeline.storage import DataDir
from tests.hostile import HostileProxy, Misbehaviour, aimed_at
from tests.support import (
    OTHER_REGION,
    REGION,
    START,
    SYNC_OP,
    definitions,
    foreign_packages,
    run_cli,
    run_job,
)

MEMBER_ROLE = "SageMakerReadOnly"


@dataclass(frozen=True)
class Organization:
    """moto's organization: the management account (boto3's default keys) and its members."""

    url: str
    hosted: tuple[str, str]
    """Two ACTIVE member accounts the emulator serves."""
    unhosted: str
    """An ACTIVE member account the emulator has no catalogue for: SageMaker denies it."""
    suspended: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port, for as long as the block runs."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_CALL_RESET_API": "false"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def organization(moto_url: str) -> Organization:
    """An organization with four member accounts, one of them closed (SUSPENDED)."""
    client = boto3.client(
        "organizations",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_organization(FeatureSet="ALL")
    ids = [
        client.create_account(AccountName=f"member{n}", Email=f"member{n}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        for n in range(4)
    ]
    client.close_account(AccountId=ids[3])
    return Organization(moto_url, (ids[0], ids[1]), ids[2], ids[3])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, organization: Organization) -> Organization:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", organization.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", organization.url)
    return organization


@pytest.fixture
def accounts(aws: Organization) -> Iterator[EmulatorServer]:
    """One emulator server: the management account (default) and the two hosted members."""
    emulators = [
        Emulator(account_id=account, clock=Clock(start=START))
        for account in (DEFAULT_ACCOUNT_ID, *aws.hosted)
    ]
    for seed, emulator in enumerate(emulators, start=40):
        seed_catalogue(emulator, seed=seed, images=3, region=REGION)
    with EmulatorServer(
        emulators[0], other_accounts=emulators[1:], sts_endpoint_url=aws.url
    ) as server:
        yield server


def role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role/{MEMBER_ROLE}"


def truth(emulator: Emulator, regions: tuple[str, ...] = (REGION,)) -> set[tuple[Any, ...]]:
    return {
        (
            emulator.account_id,
            region,
            v["ImageName"],
            v["Version"],
            v["ImageArn"],
            v["ImageVersionArn"],
            v["ImageVersionStatus"],
            to_ms(v["LastModifiedTime"]),
        )
        for region in regions
        for v in emulator.live_versions(region)
    }


def stored(data: Path) -> set[tuple[Any, ...]]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "SELECT account_id, region, image_name, version, image_arn, image_version_arn, "
            "status, epoch_ms(last_modified_time) FROM image_versions"
        ).fetchall()
    assert len(rows) == len(set(rows))
    return set(rows)


def write_sources(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "image-versions.toml"
    path.write_text(text)
    return path


def organization_sources(tmp_path: Path, accounts: EmulatorServer) -> Path:
    """A sources file of one organization source, `org`, over the accounts' emulator."""
    return write_sources(
        tmp_path,
        f'[sources.org]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n'
        f'organization = {{ member_role = "{MEMBER_ROLE}" }}\n',
    )


def both_regions(
    tmp_path: Path, accounts: EmulatorServer, source: str, organization: str
) -> list[SourceTarget]:
    """The targets of an organization source in both regions, `organization` the rest of its
    organization table (after its member role)."""
    sources = write_sources(
        tmp_path,
        f'[sources.{source}]\nendpoint_url = "{accounts.url}"\n'
        f'regions = ["{REGION}", "{OTHER_REGION}"]\n'
        f'organization = {{ member_role = "{MEMBER_ROLE}", {organization} }}\n',
    )
    return build_targets(load_config(str(sources)), AccessSettings())


def test_check_names_each_member_accounts_identity_and_fails_on_a_denied_one(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    sources = organization_sources(tmp_path, accounts)
    data = tmp_path / "data"
    result = run_cli("check", "--config", str(sources), "--data-dir", str(data), "--json")

    assert result.code == 1, result.stderr
    report = json.loads(result.stdout)
    checked = {target["source"]: target for target in report["targets"]}
    for account in (DEFAULT_ACCOUNT_ID, *aws.hosted, aws.unhosted):
        target = checked[f"org/{account}"]
        assert target["account_id"] == account
        assert target["arn"] == f"arn:aws:sts::{account}:assumed-role/{MEMBER_ROLE}/image-versions"
        allowed = account != aws.unhosted
        assert (target["ok"], target["list_images"]) == (allowed, allowed)
    assert "AccessDeniedException" in checked[f"org/{aws.unhosted}"]["detail"]
    assert f"org/{aws.suspended}" not in checked
    assert report["data_dir"]["ok"] and not data.exists()


def test_role_sources_sync_each_account_under_its_own_account_id(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    first, second = aws.hosted
    # The second account is reached through boto3's own profile-based role assumption.
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(
        f"[profile hub]\naws_access_key_id = hubkey\naws_secret_access_key = hubsecret\n\n"
        f"[profile second]\nrole_arn = {role_arn(second)}\nsource_profile = hub\n"
    )
    sources = write_sources(
        tmp_path,
        f'[sources.management]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n\n'
        f'[sources.first]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n'
        f'role_arn = "{role_arn(first)}"\nexternal_id = "shared-secret"\n'
        f'source_profile = "hub"\nrole_session_name = "nightly-sync"\n\n'
        f'[sources.second]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n'
        f'profile = "second"\n',
    )
    data = tmp_path / "data"
    result = run_cli(
        "sync",
        "--config",
        str(sources),
        "--data-dir",
        str(data),
        env={"AWS_CONFIG_FILE": str(aws_config)},
    )
    assert result.code == 0, result.stderr
    emulators = accounts.accounts
    assert stored(data) == set().union(*(truth(e) for e in emulators.values()))
    assert {row[0] for row in stored(data)} == {DEFAULT_ACCOUNT_ID, first, second}
    resolved = accounts.caller_accounts.keys() if accounts.caller_accounts else {}
    assert set(resolved.values()) == {DEFAULT_ACCOUNT_ID, first, second}


def test_an_organization_source_syncs_every_active_member_and_isolates_a_denied_one(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    sources = organization_sources(tmp_path, accounts)
    data = tmp_path / "data"
    result = run_cli("sync", "--config", str(sources), "--data-dir", str(data))
    # The unhosted account's SageMaker refuses the member role; everyone else commits.
    assert result.code == 1, result.stderr
    assert f"org/{aws.unhosted}/{REGION}" in result.stdout + result.stderr
    assert "AccessDenied" in result.stdout + result.stderr
    assert aws.suspended not in result.stdout + result.stderr
    assert stored(data) == set().union(*(truth(e) for e in accounts.accounts.values()))
    status = run_cli("status", "--data-dir", str(data), "--images", "--json")
    assert {(row["account_id"]) for row in json.loads(status.stdout)} == {
        DEFAULT_ACCOUNT_ID,
        *aws.hosted,
    }

    # Excluding the denied account makes the next sync clean and changes nothing stored.
    before = stored(data)
    write_sources(
        tmp_path,
        sources.read_text().replace("}", f', exclude = ["{aws.unhosted}"] }}'),
    )
    again = run_cli("sync", "--config", str(sources), "--data-dir", str(data))
    assert again.code == 0, again.stderr
    assert stored(data) == before


@pytest.mark.dagster
def test_an_organization_partition_is_materialized_with_its_members_figures_summed(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    """One partition covers every member account of the source in its region: failed while
    one member is denied, then materialized with the sum of the members' `sync_runs` rows."""
    import dagster as dg

    text = (
        f'[sources.org]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n'
        f'organization = {{ member_role = "{MEMBER_ROLE}" }}\n'
    )
    sources = write_sources(tmp_path, text)
    data = tmp_path / "data"
    key = f"org/{REGION}"
    with dg.instance_for_test() as instance:
        denied = run_job(definitions(sources, data), instance, [key])
        assert not denied.success
        assert denied.asset_materializations_for_node(SYNC_OP) == []

        write_sources(tmp_path, text.replace("}", f', exclude = ["{aws.unhosted}"] }}'))
        result = run_job(definitions(sources, data), instance, [key])
        assert result.success
        [versions] = [
            m
            for m in result.asset_materializations_for_node(SYNC_OP)
            if m.asset_key == dg.AssetKey("image_versions")
        ]
    assert versions.partition == key
    figures = ("images", "versions_new", "api_calls", "throttled_retries", "seconds")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute(  # each member's latest row: the second run's
            f"SELECT count(*), {', '.join(f'sum({name})' for name in figures)} FROM "
            "(FROM sync_runs QUALIFY row_number() OVER (PARTITION BY source "
            "ORDER BY started_at DESC) = 1) WHERE source LIKE 'org/%' AND ok"
        ).fetchone()
    assert rows is not None
    members = len(accounts.accounts)
    assert rows[0] == versions.metadata["targets"].value == members
    assert {name: versions.metadata[name].value for name in figures} == pytest.approx(
        dict(zip(figures, rows[1:], strict=True)), abs=0.001
    )
    assert versions.metadata["live_versions"].value == len(stored(data))


def test_an_allow_listed_account_that_is_not_active_fails_alone(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    first = aws.hosted[0]
    sources = write_sources(
        tmp_path,
        f'[sources.org]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n'
        f'[sources.org.organization]\nmember_role = "{MEMBER_ROLE}"\n'
        f'accounts = ["{first}", "{aws.suspended}"]\n',
    )
    data = tmp_path / "data"
    result = run_cli("sync", "--config", str(sources), "--data-dir", str(data))
    assert result.code == 1
    assert f"account {aws.suspended}: account is SUSPENDED" in result.stdout + result.stderr
    assert stored(data) == truth(accounts.accounts[first])


def test_assumed_role_credentials_are_refreshed_mid_sync(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    first = aws.hosted[0]
    emulator = accounts.accounts[first]
    sources = write_sources(
        tmp_path,
        f'[sources.first]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\n'
        f'role_arn = "{role_arn(first)}"\nduration_seconds = 6\n',
    )
    paused = []

    def pause_once(operation: str, _: dict[str, Any]) -> None:
        # moto issues whatever DurationSeconds it is asked for; 6-second credentials are due
        # for renewal 2 seconds before they expire, so this pause outlasts the first ones.
        if operation == "ListImageVersions" and not paused:
            paused.append(operation)
            time.sleep(4.5)

    emulator.before_request = pause_once
    targets = build_targets(load_config(str(sources)), AccessSettings(concurrency=1))
    report = sync(DataDir(tmp_path / "data"), targets, SyncOptions(concurrency=1))
    assert report.ok, report.failures
    assert paused
    assert stored(tmp_path / "data") == truth(emulator)
    resolved = accounts.caller_accounts.keys() if accounts.caller_accounts else {}
    # Each AssumeRole gives a new access key: the sync signed with at least two.
    assert len([key for key, account in resolved.items() if account == first]) >= 2


def test_an_organization_is_listed_once_for_all_its_regions(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    for seed, emulator in enumerate(accounts.accounts.values(), start=60):
        seed_catalogue(emulator, seed=seed, images=3, region=OTHER_REGION)
    targets = both_regions(tmp_path, accounts, "org", f'exclude = ["{aws.unhosted}"]')
    report = sync(DataDir(tmp_path / "data"), targets, SyncOptions())
    assert report.ok, report.failures
    assert report.stats.calls["ListAccounts"] == 1
    # Every ACTIVE account (the management account too) in both regions.
    both = (REGION, OTHER_REGION)
    expected = set().union(*(truth(e, both) for e in accounts.accounts.values()))
    assert stored(tmp_path / "data") == expected


@dataclass(frozen=True)
class GuardedAws:
    """moto with IAM access control on, and one IAM user allowed to assume one role only."""

    url: str
    allowed_role: str
    denied_role: str
    env: dict[str, str]
    """The user's keys and moto's endpoints, for a sync in a subprocess."""


@pytest.fixture(scope="module")
def guarded_aws() -> Iterator[GuardedAws]:
    """A moto server of its own that checks signatures and IAM policies.

    moto authorizes nothing until its INITIAL_NO_AUTH_ACTION_COUNT is reached (infinite by
    default); the user, its policy and the roles are made first, then `/moto-api/reset-auth`
    sets the count to 0, which turns access control on for every later request.
    """
    with moto_server() as url:
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        user = iam.create_user(UserName="syncer")["User"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": "sts:AssumeRole"}
            ],
        }
        allowed, denied = (
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
            for name in ("SageMakerReadOnly", "Elsewhere")
        )
        # Nothing else: not denied's AssumeRole, not organizations:ListAccounts.
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": allowed["Arn"]}
            ],
        }
        iam.put_user_policy(
            UserName="syncer", PolicyName="assume-one-role", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="syncer")["AccessKey"]
        enable = urllib.request.Request(
            f"{url}/moto-api/reset-auth",
            data=b"0",
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(enable, timeout=10) as response:
            assert response.status == 200
        env = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_ENDPOINT_URL_STS": url,
            "AWS_ENDPOINT_URL_ORGANIZATIONS": url,
        }
        yield GuardedAws(url, allowed["Arn"], denied["Arn"], env)


@pytest.fixture
def one_account() -> Iterator[EmulatorServer]:
    """An emulator serving moto's account to every caller (moto's access control refuses the
    unsigned GetCallerIdentity by which an emulator tells accounts apart)."""
    emulator = Emulator(account_id=DEFAULT_ACCOUNT_ID, clock=Clock(start=START))
    seed_catalogue(emulator, seed=50, images=3, region=REGION)
    with EmulatorServer(emulator) as server:
        yield server


def sync_json(sources: Path, data: Path, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """`sync --json` in a subprocess: its exit status and its summary."""
    result = run_cli("sync", "--config", str(sources), "--data-dir", str(data), "--json", env=env)
    assert result.stdout.strip(), result.stderr
    return result.code, json.loads(result.stdout.splitlines()[-1])


def test_a_refused_assume_role_fails_its_source_alone(
    tmp_path: Path, guarded_aws: GuardedAws, one_account: EmulatorServer
) -> None:
    sources = write_sources(
        tmp_path,
        f'[sources.allowed]\nendpoint_url = "{one_account.url}"\nregions = ["{REGION}"]\n'
        f'role_arn = "{guarded_aws.allowed_role}"\n\n'
        f'[sources.denied]\nendpoint_url = "{one_account.url}"\nregions = ["{REGION}"]\n'
        f'role_arn = "{guarded_aws.denied_role}"\n',
    )
    data = tmp_path / "data"
    code, summary = sync_json(sources, data, guarded_aws.env)
    assert code == 1
    [failure] = summary["failures"]
    assert failure.startswith(f"denied/{REGION}: cannot assume role {guarded_aws.denied_role}: ")
    assert "AccessDenied" in failure and "not authorized to perform: sts:AssumeRole" in failure
    assert stored(data) == truth(one_account.emulator)
    status = run_cli("status", "--data-dir", str(data), "--images", "--json")
    assert {row["source"] for row in json.loads(status.stdout)} == {"allowed"}


def test_an_organization_whose_accounts_cannot_be_listed_fails_alone(
    tmp_path: Path, guarded_aws: GuardedAws, one_account: EmulatorServer
) -> None:
    sources = write_sources(
        tmp_path,
        f'[sources.org]\nendpoint_url = "{one_account.url}"\n'
        f'regions = ["{REGION}", "{OTHER_REGION}"]\n'
        f'organization = {{ member_role = "{MEMBER_ROLE}" }}\n\n'
        f'[sources.allowed]\nendpoint_url = "{one_account.url}"\nregions = ["{REGION}"]\n'
        f'role_arn = "{guarded_aws.allowed_role}"\n',
    )
    data = tmp_path / "data"
    code, summary = sync_json(sources, data, guarded_aws.env)
    assert code == 1
    # One listing, refused; each region of the source reports it.
    assert [failure.split(": ")[0] for failure in summary["failures"]] == [
        f"org/{REGION}",
        f"org/{OTHER_REGION}",
    ]
    for failure in summary["failures"]:
        assert "cannot list the organization's accounts" in failure
        assert "not authorized to perform: organizations:ListAccounts" in failure
    assert stored(data) == truth(one_account.emulator)


def test_a_hung_organizations_endpoint_is_waited_out_once(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = organization_sources(tmp_path, accounts)
    with HostileProxy(aws.url, aimed_at("ListAccounts", Misbehaviour("silent"))) as hung:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", hung.url)
        result = run_cli(
            "sync", "--call-timeout", "3", "--config", str(sources),
            "--data-dir", str(tmp_path / "data"),
        )  # fmt: skip
        asked = [operation for operation, _ in hung.requests]
    assert result.code == 2, result.stderr  # no target could be reached
    assert "cannot list the organization's accounts" in result.stderr
    # Listed once, by the command, for its count of the targets and for the sync alike.
    assert asked == ["ListAccounts"]


def test_a_data_dir_not_ours_is_refused_before_the_organization_is_listed(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = organization_sources(tmp_path, accounts)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not a dataset")
    with HostileProxy(aws.url, aimed_at("ListAccounts", Misbehaviour("silent"))) as hung:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", hung.url)
        result = run_cli(
            "sync", "--call-timeout", "3", "--config", str(sources),
            "--data-dir", str(foreign),
        )  # fmt: skip
        asked = [operation for operation, _ in hung.requests]
    assert result.code == 2, result.stderr
    assert "was not created by image-versions" in result.stderr
    assert asked == []  # refused at once, not after the listing's deadline
    assert sorted(path.name for path in foreign.iterdir()) == ["holiday.jpg"]


def test_an_organization_sources_tags_reach_every_member_account(
    tmp_path: Path, accounts: EmulatorServer, aws: Organization
) -> None:
    sources = write_sources(
        tmp_path,
        f'[sources.org]\nendpoint_url = "{accounts.url}"\nregions = ["{REGION}"]\ntags = true\n'
        f'organization = {{ member_role = "{MEMBER_ROLE}", exclude = ["{aws.unhosted}"] }}\n',
    )
    data = tmp_path / "data"
    result = run_cli("sync", "--config", str(sources), "--data-dir", str(data))
    assert result.code == 0, result.stderr
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        images = connection.execute(
            "SELECT account_id, count(*) FILTER (role_arn IS NULL OR tags IS NULL) FROM images "
            "GROUP BY ALL"
        ).fetchall()
        described = connection.execute(
            "SELECT account_id, count(*) FILTER (tags IS NULL) FROM image_version_details "
            "GROUP BY ALL"
        ).fetchall()
    # Every member's images have a role and tags, every version its details with tags.
    assert sorted(images) == sorted((account, 0) for account in accounts.accounts)
    assert sorted(described) == sorted((account, 0) for account in accounts.accounts)


def test_a_first_sync_of_a_large_organization_counts_its_accounts_for_its_processes(
    tmp_path: Path,
    accounts: EmulatorServer,
    aws: Organization,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cores = len(os.sched_getaffinity(0))
    sources = organization_sources(tmp_path, accounts)
    targets = build_targets(load_config(str(sources)), AccessSettings())
    data_dir = DataDir(tmp_path / "data")
    active = 4  # the management account, the two hosted members and the unhosted one

    def processes(threshold: int) -> tuple[int, AccountListings]:
        monkeypatch.setattr(shares, "PROCESS_PER_CORE_TARGETS", threshold)
        listing = ApiStats()
        listed = list_organizations(targets, listing, threading.Event())
        assert listing.calls["ListAccounts"] == 1  # once a source, whatever its regions
        return default_processes(data_dir, targets, listed), listed

    # Never synced: its listed accounts are the sync's targets.
    assert processes(active)[0] == cores
    chosen, listed = processes(active + 1)
    assert chosen == 1
    # The sync is handed the listing: it makes no call of its own.
    report = sync(data_dir, targets, SyncOptions(), accounts=listed)
    assert len(report.per_target) == active
    assert report.stats.calls["ListAccounts"] == 0
    # Synced: what the data dir knows decides.
    assert processes(active - 1)[0] == cores
    assert processes(active + 1)[0] == 1
    # An allow-list counts the ACTIVE accounts of its organization alone.
    allowed = f'accounts = ["{aws.hosted[0]}", "{aws.hosted[1]}", "{"9" * 12}"]'
    targets = both_regions(tmp_path, accounts, "few", allowed)
    assert processes(4)[0] == cores  # two accounts in two regions
    assert processes(5)[0] == 1


@pytest.mark.parametrize("asked", [None, 2])
def test_the_first_sync_of_a_large_organization_runs_a_process_per_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: int | None
) -> None:
    processes = asked or len(os.sched_getaffinity(0))
    chosen = ("--processes", str(asked)) if asked else ()
    with moto_server() as url:
        client = boto3.client("organizations", endpoint_url=url, region_name=REGION)
        client.create_organization(FeatureSet="ALL")
        members = [
            client.create_account(AccountName=f"m{n}", Email=f"m{n}@example.com")[
                "CreateAccountStatus"
            ]["AccountId"]
            for n in range(PROCESS_PER_CORE_TARGETS - 1)
        ]
        pages = len(list(client.get_paginator("list_accounts").paginate()))
        emulators = [
            Emulator(account_id=account, clock=Clock(start=START))
            for account in (DEFAULT_ACCOUNT_ID, *members)
        ]
        for seed, emulator in enumerate(emulators):
            seed_catalogue(emulator, seed=seed, images=3, region=REGION)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", url)
        with EmulatorServer(emulators[0], other_accounts=emulators[1:], sts_endpoint_url=url) as at:
            result = run_cli(
                "sync", "-v", "--json", "--data-dir", str(tmp_path / "data"), *chosen,
                "--config", str(organization_sources(tmp_path, at)),
                cwd=foreign_packages(tmp_path / "cwd"),
            )  # fmt: skip
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["targets"] == PROCESS_PER_CORE_TARGETS
    # Its accounts were listed once, to count them, and handed to each process.
    assert (f"syncing in {processes} processes" in result.stderr) == (processes > 1)
    sagemaker = summary["list_images_calls"] + summary["list_image_versions_calls"]
    assert summary["api_calls"] - sagemaker == pages
    assert result.stderr.count("listing the accounts of organization source org") == 1
