"""The sync's model in plain Python (the standard library only): a row, the columns of a
version's observed state and its digest, an image's state, the keys of accounts and targets,
and the shapes of the identifiers they hold.

The incremental engine (`decisions.py`) and the options and report (`run.py`) need nothing
more, so they run, and are unit-tested, without pyarrow, boto3 or a data dir. The Arrow
schema (`schema.py`) gives these columns their types; the state files (`state.py`) store
these states.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCOUNT_ID",
    "IMAGE_NAME",
    "REGION",
    "STATE_COLUMNS",
    "VERSION_COLUMNS",
    "VERSION_KEY",
    "ImageState",
    "Row",
    "StateKey",
    "account_key",
    "fingerprint",
    "split_account_key",
    "target_key",
    "target_key_source",
    "tombstone",
]

Row = dict[str, Any]
"""One record as the sync handles it: column name -> value, timestamps in epoch ms."""

VERSION_COLUMNS: tuple[str, ...] = (
    "account_id",
    "region",
    "image_name",
    "version",
    "image_arn",
    "image_version_arn",
    "status",
    "failure_reason",
    "creation_time",
    "last_modified_time",
    "is_deleted",
    "observed_at",
)
"""The columns of `DATA/image_versions/`, in file order (their types: `schema.py`)."""

STATE_COLUMNS: tuple[str, ...] = tuple(name for name in VERSION_COLUMNS if name != "observed_at")
"""The columns that identify one observed state of a version: everything but when we saw it."""

VERSION_KEY: tuple[str, ...] = ("account_id", "region", "image_name", "version")

ACCOUNT_ID = re.compile(r"[0-9]{12}\Z")
REGION = re.compile(r"[a-z]{2,4}(-[a-z0-9]+)+\Z")
"""The shape of an AWS region name (us-east-1, us-gov-west-1, eusc-de-east-1)."""
IMAGE_NAME = re.compile(r"[a-zA-Z0-9]([-.]?[a-zA-Z0-9]){0,62}\Z")
"""The API's ImageName pattern (case matters, dots allowed)."""

StateKey = tuple[str, str, str]
"""(account_id, region, image_name)."""


def target_key(source: str, region: str) -> str:
    """The name of a target's directory: `prod.us-east-1`, `org.123456789012.us-east-1`.

    Source names hold no dots, so the key reads back unambiguously."""
    return f"{source.replace('/', '.')}.{region}"


def target_key_source(key: str) -> str:
    """The source name a target key (`target_key`) begins with."""
    return key.split(".", 1)[0]


def account_key(account_id: str, region: str) -> str:
    """The name of an account and region's state directory: `123456789012.us-east-1`."""
    return f"{account_id}.{region}"


def split_account_key(key: str) -> tuple[str, str]:
    """(account_id, region) of an `account_key` (account ids hold no dots)."""
    account_id, _, region = key.partition(".")
    return account_id, region


@dataclass
class ImageState:
    """What the last successful syncs established about one image."""

    source: str
    """The source whose sync last wrote this state (any source reaching the account may)."""
    account_id: str
    region: str
    image_name: str
    image_arn: str
    watermark_ms: int | None = None
    max_version: int = 0
    last_synced_ms: int | None = None
    is_deleted: bool = False
    last_error: str | None = None
    window: dict[int, tuple[int, str]] = field(default_factory=dict)
    """version -> (last_modified_time ms, fingerprint of the stored state)."""

    @property
    def key(self) -> StateKey:
        return (self.account_id, self.region, self.image_name)

    @property
    def account(self) -> str:
        """Its account and region's key (`account_key`)."""
        return account_key(self.account_id, self.region)


def tombstone(row: Mapping[str, Any], *, observed_at_ms: int) -> Row:
    """The tombstone of a version: its last known fields, marked deleted at `observed_at_ms`."""
    return {**row, "is_deleted": True, "observed_at": observed_at_ms}


def fingerprint(row: Mapping[str, Any]) -> str:
    """A short stable digest of a row's observed state (every column but `observed_at`)."""
    text = "\x1f".join(repr(row[name]) for name in STATE_COLUMNS)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
