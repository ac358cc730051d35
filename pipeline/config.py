"""Validated settings, built at call time from flags and the environment (never at import)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import ConfigError
from .extract import SourceTarget
from .source import ClientSettings
from .storage import DataDir

DATA_DIR_ENV = "IMAGE_VERSIONS_DATA_DIR"
DEFAULT_DATA_DIR = "data"
DEFAULT_SOURCE = "default"
IMAGE_NAME = re.compile(r"[a-zA-Z0-9]([-.]?[a-zA-Z0-9]){0,62}\Z")
RETRY_MODES = ("standard", "adaptive", "legacy")


def resolve_data_dir(flag: str | None, environ: Mapping[str, str] | None = None) -> DataDir:
    """--data-dir, else $IMAGE_VERSIONS_DATA_DIR, else ./data."""
    environ = os.environ if environ is None else environ
    raw = flag or environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    if raw.startswith("s3://"):
        raise ConfigError("S3 data dirs are not supported yet; use a local directory")
    return DataDir(Path(raw).expanduser())


def validate_image_names(names: Iterable[str]) -> frozenset[str] | None:
    """The set of names, each checked against the API's ImageName pattern; None for none."""
    checked = set()
    for name in names:
        if not IMAGE_NAME.match(name):
            raise ConfigError(
                f"invalid image name {name!r}: SageMaker image names are 1-63 letters, digits, "
                "and single '-' or '.' between them"
            )
        checked.add(name)
    return frozenset(checked) or None


def known_regions() -> set[str]:
    """Every region in which botocore knows a SageMaker endpoint, across partitions."""
    import boto3

    session = boto3.session.Session()
    return {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    }


def default_region(profile: str | None) -> str | None:
    """boto3's region (AWS_DEFAULT_REGION, the profile's config), else AWS_REGION.

    botocore itself ignores AWS_REGION, which most other AWS SDKs and tools read.
    """
    import boto3
    import botocore.exceptions

    try:
        region = boto3.session.Session(profile_name=profile).region_name
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(f"AWS profile {profile!r} is not configured") from exc
    return region or os.environ.get("AWS_REGION") or None


def build_targets(
    *,
    regions: Iterable[str],
    endpoint_url: str | None,
    profile: str | None,
    source: str = DEFAULT_SOURCE,
    retry_mode: str = "standard",
    max_attempts: int = 10,
    max_rps: float | None = None,
    concurrency: int = 8,
) -> list[SourceTarget]:
    """One target per region (boto3's default region when none is given), all validated."""
    if retry_mode not in RETRY_MODES:
        raise ConfigError(f"retry mode must be one of {', '.join(RETRY_MODES)}, not {retry_mode!r}")
    if max_attempts < 1:
        raise ConfigError("max attempts must be at least 1")
    if max_rps is not None and max_rps <= 0:
        raise ConfigError(f"--max-rps must be a positive number, not {max_rps}")
    if not 1 <= concurrency <= 64:
        raise ConfigError(f"--concurrency must be between 1 and 64, not {concurrency}")
    if endpoint_url is not None and not re.match(r"https?://[^/\s]+", endpoint_url):
        raise ConfigError(f"--endpoint-url must be an http(s) URL, not {endpoint_url!r}")
    chosen = list(dict.fromkeys(regions)) or [r for r in [default_region(profile)] if r]
    if not chosen:
        raise ConfigError("no AWS region: pass --region or set AWS_REGION (or a profile's region)")
    known = known_regions()
    for region in chosen:
        if region not in known:
            raise ConfigError(f"unknown region {region!r}: SageMaker has no endpoint there")
    return [
        SourceTarget(
            source=source,
            client=ClientSettings(
                region=region,
                endpoint_url=endpoint_url,
                profile=profile,
                retry_mode=retry_mode,
                max_attempts=max_attempts,
                max_rps=max_rps,
                pool_size=concurrency,
            ),
        )
        for region in chosen
    ]
