"""Validated settings, built at call time from flags, the sources file and the environment.

Nothing here runs at import. The optional sources file (`image-versions.toml`, or the path in
$IMAGE_VERSIONS_CONFIG) names sources, each a set of AWS credentials (a profile, optionally an
IAM role assumed with it, or every member account of an organization) and regions; without it
there is one source, `default`, built from boto3's standard chain.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .defaults import CALL_DEADLINE_S, CONCURRENCY, MAX_ATTEMPTS, RETRY_MODE
from .errors import ConfigError
from .project import (
    PARTITION_SEPARATOR,
    ProjectConfig,
    SourceConfig,
    check_endpoint_url,
    check_region,
)
from .run import SourceTarget
from .settings import check_group
from .source import ClientSettings, check_profile
from .storage import DataDir

__all__ = [
    "CONFIG_ENV",
    "DATA_DIR_ENV",
    "AccessSettings",
    "Overrides",
    "ProjectConfig",
    "SourceConfig",
    "build_targets",
    "check_endpoint_url",
    "check_region",
    "load_config",
    "resolve_data_dir",
]

DATA_DIR_ENV = "IMAGE_VERSIONS_DATA_DIR"
DEFAULT_DATA_DIR = "data"
CONFIG_ENV = "IMAGE_VERSIONS_CONFIG"
CONFIG_FILE = "image-versions.toml"


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


# ------------------------------------------------------------------ the sources file


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
    from .settings_sources import parse_sources_file

    return parse_sources_file(document, path)


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
        targets.append(SourceTarget(source.name, client, enrich=source.enrich, tags=source.tags))
    return list(dict.fromkeys(targets))
