"""Validated settings, built at call time from flags, the sources file and the environment.

Nothing here runs at import. The optional sources file (`image-versions.toml`, or the path in
$IMAGE_VERSIONS_CONFIG) names sources, each a set of AWS credentials (a profile, optionally an
IAM role assumed with it, or every member account of an organization) and regions; without it
there is one source, `default`, built from boto3's standard chain.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cron import cron_problem
from .defaults import CALL_DEADLINE_S, CONCURRENCY, MAX_ATTEMPTS, RETRY_MODE
from .errors import ConfigError
from .redact import redact
from .run import SourceTarget
from .schema import ACCOUNT_ID, REGION
from .settings import check_group
from .source import AssumeRole, ClientSettings, Organization, check_profile
from .storage import DataDir

__all__ = [
    "CONFIG_ENV",
    "DATA_DIR_ENV",
    "AccessSettings",
    "Overrides",
    "ProjectConfig",
    "SourceConfig",
    "build_targets",
    "load_config",
    "resolve_data_dir",
]

DATA_DIR_ENV = "IMAGE_VERSIONS_DATA_DIR"
DEFAULT_DATA_DIR = "data"
CONFIG_ENV = "IMAGE_VERSIONS_CONFIG"
CONFIG_FILE = "image-versions.toml"
DEFAULT_SOURCE = "default"
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
PARTITION_SEPARATOR = "/"
_IAM_CHARS = r"A-Za-z0-9_+=,.@\-"
ROLE_ARN = re.compile(
    rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:role/([{_IAM_CHARS}]+/)*[{_IAM_CHARS}]{{1,64}}\Z"
)
MEMBER_ROLE = re.compile(rf"([{_IAM_CHARS}]+/)*[{_IAM_CHARS}]{{1,64}}\Z")
SESSION_NAME = re.compile(rf"[{_IAM_CHARS}]{{2,64}}\Z")
EXTERNAL_ID = re.compile(rf"[{_IAM_CHARS}:/]{{2,1224}}\Z")
_ENDPOINT_SCHEMES = ("http", "https")
_HOST_PORT = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)(:(?P<port>[0-9]+))?\Z"
)


@dataclass(frozen=True)
class SourceConfig:
    """One named source: whose credentials, which regions, which endpoint."""

    name: str
    regions: tuple[str, ...] = ()
    """Empty: the region boto3's chain gives at run time (AWS_DEFAULT_REGION, the profile)."""
    profile: str | None = None
    """The credentials' profile; with `role`, the profile that assumes it (`source_profile`)."""
    endpoint_url: str | None = None
    role: AssumeRole | None = None
    organization: Organization | None = None
    """Set: the source is every member account, discovered at run time (one partition per
    region, the accounts inside it)."""
    enrich: bool = False
    """Describe new and changed versions of this source (DescribeImageVersion + ListAliases)."""

    def partition_keys(self) -> list[str]:
        """Dagster partition keys: `name/region` per region, or `name` when resolved at run time."""
        if not self.regions:
            return [self.name]
        return [f"{self.name}{PARTITION_SEPARATOR}{region}" for region in self.regions]


@dataclass(frozen=True)
class ProjectConfig:
    """The sources file, or its defaults when there is none."""

    sources: tuple[SourceConfig, ...] = (SourceConfig(DEFAULT_SOURCE),)
    sync_cron: str = "0 * * * *"
    reconcile_cron: str = "30 2 * * *"
    path: Path | None = None

    def partition_keys(self) -> list[str]:
        return [key for source in self.sources for key in source.partition_keys()]

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources)
        where = f" in {self.path}" if self.path else ""
        raise ConfigError(f"unknown source {name!r}{where}; known sources: {known}")


@dataclass(frozen=True)
class AccessSettings:
    """How hard to call the API: retries, rate and parallelism, shared by every source.

    Its options are declared in settings.OPTIONS (group `access`) and checked against them.
    """

    retry_mode: str = RETRY_MODE
    max_attempts: int = MAX_ATTEMPTS
    max_rps: float | None = None
    concurrency: int = CONCURRENCY
    call_deadline_s: float = CALL_DEADLINE_S

    def __post_init__(self) -> None:
        check_group(self, "access")


def resolve_data_dir(flag: str | None, environ: Mapping[str, str] | None = None) -> DataDir:
    """--data-dir, else $IMAGE_VERSIONS_DATA_DIR, else ./data: a local path or s3://BUCKET/PREFIX."""
    environ = os.environ if environ is None else environ
    raw = flag or environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return DataDir.at(raw)


def check_region(region: str, where: str) -> None:
    """Only the shape of an AWS region name (us-east-1): an unknown one fails later, per target."""
    if not REGION.match(region):
        raise ConfigError(f"{where} {region!r} is not an AWS region name like us-east-1")


def check_endpoint_url(url: str, where: str) -> None:
    """An http(s) URL with a host, a port in 1-65535 if any, and no query or fragment."""
    problem = _endpoint_url_problem(url)
    if problem:
        raise ConfigError(
            f"{where} must be an http(s) URL like https://HOST[:PORT][/PATH], "
            f"but {redact(url)!r} {problem}"
        )


def _endpoint_url_problem(url: str) -> str | None:
    # Checked before parsing: urlsplit silently drops tabs and newlines.
    if any(char.isspace() or not char.isprintable() for char in url):
        return "contains whitespace or control characters"
    if any(char in url for char in "'\"<>"):
        # They also end a URL for redact(), which would leave the rest of a password shown.
        return "contains quotes or angle brackets"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "cannot be parsed"
    if parts.scheme not in _ENDPOINT_SCHEMES:
        return "does not start with http:// or https://"
    if "?" in url or "#" in url:
        return "has a query or fragment"
    host_port = parts.netloc.rpartition("@")[2]
    if not host_port:
        return "has no host"
    match = _HOST_PORT.match(host_port)
    if not match:
        return "has no valid host[:port]"
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        return "has a port outside 1-65535"
    return None


# ------------------------------------------------------------------ the sources file


_SOURCE_KEYS = {
    "regions",
    "profile",
    "endpoint_url",
    "role_arn",
    "external_id",
    "source_profile",
    "role_session_name",
    "duration_seconds",
    "organization",
    "enrich",
}
_ORGANIZATION_KEYS = {"member_role", "accounts", "exclude", "external_id"}
_SCHEDULE_KEYS = {"sync_cron", "reconcile_cron"}


def load_config(flag: str | None = None, environ: Mapping[str, str] | None = None) -> ProjectConfig:
    """The sources file named by `flag`, else $IMAGE_VERSIONS_CONFIG, else ./image-versions.toml
    when it exists; otherwise the single `default` source."""
    environ = os.environ if environ is None else environ
    named = flag or environ.get(CONFIG_ENV)
    path = Path(named).expanduser() if named else Path(CONFIG_FILE)
    if not named and not path.exists():
        return ProjectConfig()
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return _parse_config(document, path)


def _parse_config(document: dict[str, Any], path: Path) -> ProjectConfig:
    def fail(message: str) -> ConfigError:
        return ConfigError(f"config file {path}: {message}")

    unknown = set(document) - {"sources", "schedules"}
    if unknown:
        raise fail(f"unknown section(s) {sorted(unknown)}; expected [sources.NAME], [schedules]")
    schedules = document.get("schedules", {})
    if not isinstance(schedules, dict) or set(schedules) - _SCHEDULE_KEYS:
        raise fail(f"[schedules] takes only {sorted(_SCHEDULE_KEYS)}")
    raw_sources = document.get("sources", {})
    if not isinstance(raw_sources, dict) or not raw_sources:
        raise fail("no sources: add at least one [sources.NAME] table")
    sources = []
    for name, table in raw_sources.items():
        if not SOURCE_NAME.match(name):
            raise fail(f"source name {name!r} must be letters, digits, '-' or '_'")
        if not isinstance(table, dict) or set(table) - _SOURCE_KEYS:
            raise fail(f"[sources.{name}] takes only {sorted(_SOURCE_KEYS)}")
        regions = table.get("regions", [])
        if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
            raise fail(f"[sources.{name}] regions must be a list of strings")
        for key in ("profile", "endpoint_url", "source_profile"):
            if key in table and not isinstance(table[key], str):
                raise fail(f"[sources.{name}] {key} must be a string")
        try:
            for region in regions:
                check_region(region, "region")
            if "endpoint_url" in table:
                check_endpoint_url(table["endpoint_url"], "endpoint_url")
            role, organization = _parse_roles(table)
        except ConfigError as exc:
            raise fail(f"[sources.{name}] {exc}") from None
        if not isinstance(table.get("enrich", False), bool):
            raise fail(f"[sources.{name}] enrich must be true or false")
        sources.append(
            SourceConfig(
                name=name,
                regions=tuple(dict.fromkeys(regions)),
                profile=table.get("source_profile", table.get("profile")),
                endpoint_url=table.get("endpoint_url"),
                role=role,
                organization=organization,
                enrich=table.get("enrich", False),
            )
        )
    defaults = ProjectConfig()
    crons = {key: schedules.get(key, getattr(defaults, key)) for key in sorted(_SCHEDULE_KEYS)}
    for key, cron in crons.items():
        if not isinstance(cron, str):
            raise fail(f"[schedules] {key} must be a string, not {cron!r}")
        problem = cron_problem(cron)
        if problem:
            raise fail(f"[schedules] {key} {cron!r} is not a valid cron: {problem}")
    return ProjectConfig(
        sources=tuple(sources),
        sync_cron=crons["sync_cron"],
        reconcile_cron=crons["reconcile_cron"],
        path=path,
    )


def _checked(table: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> Any:
    """table[key] (None when absent), which must be a string matching `pattern`."""
    value = table.get(key)
    if value is not None and not (isinstance(value, str) and pattern.match(value)):
        raise ConfigError(f"{key} must be {what}, not {value!r}")
    return value


def _account_list(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, str) and ACCOUNT_ID.match(v) for v in value
    ):
        raise ConfigError(f"organization {key} must be a list of 12-digit account ids as strings")
    return tuple(dict.fromkeys(value))


def _parse_roles(table: Mapping[str, Any]) -> tuple[AssumeRole | None, Organization | None]:
    """A source's role (role_arn and its companions) and organization, validated."""
    role_arn = _checked(table, "role_arn", ROLE_ARN, "an IAM role ARN (arn:aws:iam::ID:role/NAME)")
    external_id = _checked(table, "external_id", EXTERNAL_ID, "2-1224 of A-Z a-z 0-9 +=,.@:/-_")
    session_name = _checked(table, "role_session_name", SESSION_NAME, "2-64 of A-Z a-z 0-9 +=,.@-_")
    duration = table.get("duration_seconds")
    if duration is not None and (type(duration) is not int or duration < 1):
        raise ConfigError(f"duration_seconds must be a positive integer, not {duration!r}")
    raw_organization = table.get("organization")
    if role_arn is None:
        for key in ("external_id", "source_profile"):
            if key in table:
                raise ConfigError(f"{key} needs role_arn (the role it is for)")
        if raw_organization is None:
            for key in ("role_session_name", "duration_seconds"):
                if key in table:
                    raise ConfigError(f"{key} needs role_arn or organization")
    elif "profile" in table:
        raise ConfigError("with role_arn, name the profile that assumes it with source_profile")
    session_name = session_name or AssumeRole.session_name
    role = None if role_arn is None else AssumeRole(role_arn, session_name, external_id, duration)
    if raw_organization is None:
        return role, None
    if not isinstance(raw_organization, dict) or set(raw_organization) - _ORGANIZATION_KEYS:
        raise ConfigError(f"organization takes only {sorted(_ORGANIZATION_KEYS)}")
    if "member_role" not in raw_organization:
        raise ConfigError("organization needs member_role (the role to assume in each account)")
    organization = Organization(
        member_role=_checked(raw_organization, "member_role", MEMBER_ROLE, "an IAM role name"),
        accounts=_account_list(raw_organization, "accounts"),
        exclude=_account_list(raw_organization, "exclude"),
        external_id=_checked(raw_organization, "external_id", EXTERNAL_ID, "2-1224 characters"),
        session_name=session_name,
        duration_seconds=duration,
    )
    return role, organization


# ------------------------------------------------------------------ targets


def default_region(profile: str | None, source: str) -> str | None:
    """boto3's region (AWS_DEFAULT_REGION, the profile's config), else AWS_REGION.

    botocore itself ignores AWS_REGION, which most other AWS SDKs and tools read. A profile
    that is not configured is left for the source's connection to report (it fails that
    source alone), unless the region was to come from it: then the source's targets cannot
    even be named, and its ConfigError is raised here.
    """
    import botocore.session

    core = botocore.session.get_session()
    if profile is not None:
        core.set_config_variable("profile", profile)
    try:
        check_profile(core, profile, source)
    except ConfigError:
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if not region:
            raise
        return region
    return core.get_config_variable("region") or os.environ.get("AWS_REGION") or None


@dataclass(frozen=True)
class Overrides:
    """What command-line flags put over the sources file."""

    regions: tuple[str, ...] = ()
    endpoint_url: str | None = None
    profile: str | None = None
    sources: tuple[str, ...] = ()


def select_partitions(
    config: ProjectConfig, keys: Sequence[str]
) -> list[tuple[SourceConfig, str | None]]:
    """(source, region or None for boto3's default) for each Dagster partition key."""
    selected = []
    for key in keys:
        name, _, region = key.partition(PARTITION_SEPARATOR)
        source = config.source(name)
        if key not in source.partition_keys():
            raise ConfigError(f"partition {key!r} is not one of {config.partition_keys()}")
        selected.append((source, region or None))
    return selected


def build_targets(
    config: ProjectConfig,
    access: AccessSettings,
    overrides: Overrides = Overrides(),
    partition_keys: Sequence[str] | None = None,
) -> list[SourceTarget]:
    """The validated (source, region) targets of a sync.

    Partition keys (from Dagster) pick exact (source, region) pairs; otherwise the sources named
    in `overrides` (default: all) each give their regions, or the flags' regions.
    """
    if overrides.endpoint_url is not None:
        check_endpoint_url(overrides.endpoint_url, "--endpoint-url")
    for flag_region in overrides.regions:
        check_region(flag_region, "--region")
    if partition_keys is not None:
        pairs = select_partitions(config, partition_keys)
    else:
        chosen = [config.source(n) for n in overrides.sources] or list(config.sources)
        pairs = [
            (source, region)
            for source in chosen
            for region in (overrides.regions or source.regions or (None,))
        ]
    targets = []
    for source, maybe_region in pairs:
        profile = overrides.profile or source.profile
        region = maybe_region or default_region(profile, source.name)
        if not region:
            raise ConfigError(
                "no AWS region: pass --region, set AWS_REGION, or list regions in the sources file"
            )
        client = ClientSettings(
            region=region,
            endpoint_url=overrides.endpoint_url or source.endpoint_url,
            profile=profile,
            source=source.name,
            roles=() if source.role is None else (source.role,),
            organization=source.organization,
            retry_mode=access.retry_mode,
            max_attempts=access.max_attempts,
            max_rps=access.max_rps,
            pool_size=access.concurrency,
            call_deadline_s=access.call_deadline_s,
        )
        targets.append(SourceTarget(source=source.name, client=client, enrich=source.enrich))
    return list(dict.fromkeys(targets))
