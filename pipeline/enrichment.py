"""What enrichment and catalogue depth read beyond the listings: the details, aliases and
tags of versions, and the roles and tags of images.

Enrichment (`enrich`) describes the new and changed states of versions (DescribeImageVersion,
ListAliases); catalogue depth (`tags`, which implies enrichment) adds each version's tags
(ListTags) to its details, and each image's RoleArn (DescribeImage) and tags (ListTags) to
the catalogue. A tag change moves no LastModifiedTime, so the tags of images are read every
sync (one call per image) and those of unchanged versions on every full listing (one call per
version), where a change re-describes the version (docs/aws-behaviour.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .aws_errors import AwsErrorKind, kind_of
from .decisions import latest_per_version
from .guard import Cancelled
from .model import Row
from .schema import MalformedRecord, Tags, details_row, role_arn_of, tags_of
from .source import list_aliases, list_tags, patiently

__all__ = [
    "alias_holders",
    "deepen_images",
    "describe_versions",
    "retagged_versions",
]

log = logging.getLogger(__name__)


def _not_found(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and kind_of(exc) is AwsErrorKind.NOT_FOUND


def alias_holders(client: Any, image_name: str) -> dict[str, int]:
    """alias -> the version it names now, for every alias of the image: one ListAliases (all
    pages), then a DescribeImageVersion by alias each (the listing names no versions). An
    alias deleted in between is left out."""
    holders = {}
    for alias in list_aliases(client, image_name):
        try:
            item = patiently(client.describe_image_version, ImageName=image_name, Alias=alias)
        except Exception as exc:
            if _not_found(exc):
                continue
            raise
        version = item.get("Version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MalformedRecord(f"DescribeImageVersion of alias {alias} named no version")
        holders[alias] = version
    return holders


def _version_tags(client: Any, row: Row) -> Tags | None:
    """The tags of a listed version; None when its ARN is the model's "None" (nothing to ask
    about)."""
    arn = row["image_version_arn"]
    return None if arn == "None" else tags_of(list_tags(client, arn))


def describe_versions(
    client: Any,
    rows: list[Row],
    observed_at_ms: int,
    *,
    tags: bool = False,
    read_tags: Mapping[int, Tags] | None = None,
) -> tuple[list[Row], int]:
    """Details rows of listed versions (DescribeImageVersion, then every page of ListAliases,
    and with `tags` ListTags, unless `read_tags` holds the version's already), and how many
    vanished first.

    A version deleted since it was listed (ResourceNotFound) has no details to record: it is
    skipped and logged, and the next reconcile tombstones it. Any other error fails the image,
    so that no state is written without its details.
    """
    read_tags = read_tags or {}
    details: list[Row] = []
    vanished = 0
    for row in rows:
        name, version = row["image_name"], row["version"]
        try:
            described = patiently(client.describe_image_version, ImageName=name, Version=version)
            aliases = list_aliases(client, name, version)
            found = None
            if tags:
                found = read_tags[version] if version in read_tags else _version_tags(client, row)
        except Exception as exc:
            if not _not_found(exc):
                raise
            log.info(
                "%s version %d was deleted before it could be described; no details recorded",
                name,
                version,
            )
            vanished += 1
            continue
        details.append(
            details_row(row, described, aliases, observed_at_ms=observed_at_ms, tags=found)
        )
    return details, vanished


def retagged_versions(
    client: Any,
    listed: Iterable[Row],
    stored: Mapping[int, Tags | None],
    skip: Iterable[int] = (),
) -> tuple[dict[int, Tags], set[int]]:
    """The tags of each live listed version but those in `skip` (one ListTags each), and the
    versions whose tags differ from those their latest stored details record (`stored`;
    None: recorded before tags were read): those are described again.

    A version deleted since it was listed is left out."""
    skipped = set(skip)
    read: dict[int, Tags] = {}
    for version, row in sorted(latest_per_version(listed).items()):
        if version in skipped or row["is_deleted"]:
            continue
        try:
            found = _version_tags(client, row)
        except Exception as exc:
            if _not_found(exc):
                continue
            raise
        if found is not None:
            read[version] = found
    moved = {version for version, found in read.items() if stored.get(version) != found}
    return read, moved


def deepen_images(
    client: Any,
    rows: list[Row],
    stored: Mapping[str, Row],
    *,
    describe_all: bool,
    wanted: frozenset[str] | None,
    workers: int,
) -> dict[str, Exception]:
    """Set `role_arn` and `tags` of each catalogue row (in place), on `workers` threads; the
    images that failed, with why (their row keeps what `stored` had).

    Tags are read every time; the role, with DescribeImage, only when `describe_all` (a full
    listing) or the image is new, changed (its LastModifiedTime moved) or without one stored.
    An image not `wanted` (None: all are) keeps what was stored; one deleted meanwhile
    (ResourceNotFound) gets nulls, as its versions' listing finds it gone."""

    def deepen(row: Row) -> tuple[str, Exception] | None:
        name = row["image_name"]
        before = stored.get(name)
        row["role_arn"] = None if before is None else before["role_arn"]
        row["tags"] = None if before is None else before["tags"]
        if wanted is not None and name not in wanted:
            return None
        try:
            row["tags"] = tags_of(list_tags(client, row["image_arn"]))
            if (
                describe_all
                or before is None
                or before["role_arn"] is None
                or before["last_modified_time"] != row["last_modified_time"]
            ):
                row["role_arn"] = role_arn_of(patiently(client.describe_image, ImageName=name))
        except Cancelled:
            raise
        except Exception as exc:
            if _not_found(exc):
                row["role_arn"] = row["tags"] = None
                return None
            return name, exc
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        failed = [outcome for outcome in pool.map(deepen, rows) if outcome is not None]
    return dict(failed)
