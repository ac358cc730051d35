"""Code references on the assets: the file and line of each asset's function, linked to the
hosted repository (GitHub or GitLab) when the checkout has an `origin` remote there."""

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import dagster as dg

from .beta import using_beta_apis

__all__ = ["ROOT", "GitSource", "git_source", "web_url", "with_code_references"]

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the anchor of the paths in links."""
GIT_TIMEOUT_S = 5.0
PLATFORMS = ("github", "gitlab")
_SCP_LIKE = re.compile(r"(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)\Z")
"""`git@github.com:org/repo.git`, git's short form of an ssh URL."""


@dataclass(frozen=True)
class GitSource:
    """Where the checked-out code lives on the web: the repository's page and the commit."""

    url: str
    commit: str


def web_url(remote: str) -> str | None:
    """The https page of a GitHub or GitLab remote (https, ssh or scp-like form), without any
    credentials it holds; None for other hosts."""
    parts = urlsplit(remote)
    if parts.scheme and parts.hostname:
        host, path = parts.hostname, parts.path
    elif match := _SCP_LIKE.match(remote):
        host, path = match["host"], match["path"]
    else:
        return None
    if not any(platform in host for platform in PLATFORMS):
        return None
    path = path.strip("/").removesuffix(".git")
    return f"https://{host}/{path}"


def _git(root: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return completed.stdout.strip()


def git_source(root: Path = ROOT) -> GitSource | None:
    """The `origin` page and commit of the checkout at `root`, or None: no git, no checkout,
    no origin, or an origin on another host."""
    try:
        url = web_url(_git(root, "remote", "get-url", "origin"))
        return GitSource(url, _git(root, "rev-parse", "HEAD")) if url else None
    except (OSError, subprocess.SubprocessError):
        return None


def with_code_references(
    assets: Sequence[dg.AssetsDefinition], source: GitSource | None
) -> list[dg.AssetsDefinition]:
    """`assets` with a reference to their source: a link into `source` when given, else the
    local file and line."""
    with using_beta_apis():
        referenced = dg.with_source_code_references(assets)
        if source is not None:
            referenced = dg.link_code_references_to_git(
                referenced,
                git_url=source.url,
                git_branch=source.commit,
                file_path_mapping=dg.AnchorBasedFilePathMapping(
                    local_file_anchor=ROOT, file_anchor_path_in_repository=""
                ),
            )
    return cast(list[dg.AssetsDefinition], list(referenced))
