"""The sources a project names: each source's credentials, regions and endpoint, its Dagster
partition keys, and the checks of a region name and an endpoint URL.

Plain data, below both the sources file's model (settings_sources.py) and the loader and
target builder (config.py), so neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .model import REGION
from .redact import redact
from .source import AssumeRole, Organization

__all__ = [
    "DEFAULT_SOURCE",
    "PARTITION_SEPARATOR",
    "ProjectConfig",
    "SourceConfig",
    "check_endpoint_url",
    "check_region",
]

DEFAULT_SOURCE = "default"
PARTITION_SEPARATOR = "/"
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
    tags: bool = False
    """Record this source's image roles and the tags of its images and versions."""

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
