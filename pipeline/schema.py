"""The one Arrow schema of the dataset, and API record -> row normalisation.

Every writer and reader derives from the constants here (`ADDED_COLUMNS`: the columns that
files written by earlier releases lack): `IMAGE_VERSION_SCHEMA` for
`DATA/image_versions/`, `IMAGE_SCHEMA` for `DATA/images/`, `IMAGE_VERSION_DETAILS_SCHEMA` for
`DATA/image_version_details/`, `STATE_SCHEMA` for `DATA/_state/` (and
`SYNC_STATE_VIEW_SCHEMA`, what the `sync_state` view shows of it), `SYNC_RUNS_SCHEMA` for
`DATA/sync_runs/`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from .apivalues import Unparsed, shown
from .errors import ImageVersionsError
from .model import ACCOUNT_ID, IMAGE_NAME, REGION, VERSION_COLUMNS, Row

__all__ = [
    "ADDED_COLUMNS",
    "IMAGE_SCHEMA",
    "IMAGE_VERSION_DETAILS_SCHEMA",
    "IMAGE_VERSION_SCHEMA",
    "STATE_SCHEMA",
    "SYNC_RUNS_SCHEMA",
    "SYNC_STATE_VIEW_SCHEMA",
    "MalformedRecord",
    "Tags",
    "arn_account_region",
    "details_row",
    "from_ms",
    "image_name_of",
    "image_row",
    "role_arn_of",
    "rows_to_table",
    "table_to_rows",
    "tags_of",
    "to_ms",
    "version_row",
]

TIMESTAMP = pa.timestamp("ms", tz="UTC")
TAGS = pa.map_(pa.string(), pa.string())
"""ListTags's Tags as key -> value (keys are unique per resource)."""
Tags = list[tuple[str, str]]
"""A resource's tags as rows hold them (`TAGS`): (key, value) pairs in key order."""

_VERSION_TYPES: dict[str, tuple[pa.DataType, bool]] = {
    "account_id": (pa.string(), False),
    "region": (pa.string(), False),
    "image_name": (pa.string(), False),
    "version": (pa.int32(), False),
    "image_arn": (pa.string(), False),
    "image_version_arn": (pa.string(), False),
    "status": (pa.string(), False),
    "failure_reason": (pa.string(), True),
    "creation_time": (TIMESTAMP, False),
    "last_modified_time": (TIMESTAMP, False),
    "is_deleted": (pa.bool_(), False),
    "observed_at": (TIMESTAMP, False),
}
"""The type of each of the model's `VERSION_COLUMNS`, and whether it may be null."""

IMAGE_VERSION_SCHEMA = pa.schema(
    [pa.field(name, *_VERSION_TYPES[name]) for name in VERSION_COLUMNS]
)

IMAGE_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("image_name", pa.string(), nullable=False),
        pa.field("image_arn", pa.string(), nullable=False),
        pa.field("display_name", pa.string()),
        pa.field("description", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("failure_reason", pa.string()),
        pa.field("creation_time", TIMESTAMP, nullable=False),
        pa.field("last_modified_time", TIMESTAMP, nullable=False),
        pa.field("observed_at", TIMESTAMP, nullable=False),
        # Catalogue depth (`tags`): DescribeImage's RoleArn and ListTags; null when not read.
        pa.field("role_arn", pa.string()),
        pa.field("tags", TAGS),
    ]
)

# DescribeImageVersion and ListAliases of one state of a version (opt-in enrichment). Keyed
# like the history: the version, the LastModifiedTime of the state described, and when.
IMAGE_VERSION_DETAILS_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("image_name", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("last_modified_time", TIMESTAMP, nullable=False),
        pa.field("base_image", pa.string()),
        pa.field("container_image", pa.string()),
        pa.field("job_type", pa.string()),
        pa.field("ml_framework", pa.string()),
        pa.field("programming_lang", pa.string()),
        pa.field("processor", pa.string()),
        pa.field("horovod", pa.bool_()),
        pa.field("release_notes", pa.string()),
        pa.field("vendor_guidance", pa.string()),
        pa.field("aliases", pa.list_(pa.string()), nullable=False),
        pa.field("observed_at", TIMESTAMP, nullable=False),
        pa.field("tags", TAGS),  # ListTags of the version (`tags`); null when not read
    ]
)
ADDED_COLUMNS: tuple[tuple[pa.Schema, tuple[str, ...]], ...] = (
    (IMAGE_SCHEMA, ("role_arn", "tags")),
    (IMAGE_VERSION_DETAILS_SCHEMA, ("tags",)),
)
"""Per schema, the trailing columns that a release added: files written before lack them,
and every reader takes such a file as holding nulls there (evolution.py)."""
# Per-image sync state (state.py): one row per image, in one file per account and region
# (`DATA/_state/accounts/<account>.<region>/images.parquet`).
WINDOW_ENTRY = pa.struct(
    [
        pa.field("version", pa.int32(), nullable=False),
        pa.field("last_modified_ms", pa.int64(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
    ]
)

STATE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("image_name", pa.string(), nullable=False),
        pa.field("image_arn", pa.string(), nullable=False),
        pa.field("watermark", TIMESTAMP),
        pa.field("max_version", pa.int32(), nullable=False),
        pa.field("last_synced_at", TIMESTAMP),
        pa.field("is_deleted", pa.bool_(), nullable=False),
        pa.field("last_error", pa.string()),
        # The versions whose last_modified_time the next incremental listing will re-read,
        # with the digest of their stored state: how re-read rows are told apart from changes.
        pa.field("window", pa.list_(WINDOW_ENTRY), nullable=False),
    ]
)
# The state as the `sync_state` view shows it: without the digests of the window.
SYNC_STATE_VIEW_SCHEMA = pa.schema([f for f in STATE_SCHEMA if f.name != "window"])

SYNC_RUNS_SCHEMA = pa.schema(
    [
        pa.field("started_at", TIMESTAMP, nullable=False),
        pa.field("finished_at", TIMESTAMP, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("account_id", pa.string()),
        pa.field("region", pa.string(), nullable=False),
        pa.field("images", pa.int64(), nullable=False),
        pa.field("versions_new", pa.int64(), nullable=False),
        pa.field("versions_changed", pa.int64(), nullable=False),
        pa.field("versions_deleted", pa.int64(), nullable=False),
        pa.field("api_calls", pa.int64(), nullable=False),
        pa.field("throttled_retries", pa.int64(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("error", pa.string()),
    ]
)
"""One row per target per sync, written with the target's last state commit."""

# DescribeImageVersion's string members -> their columns (Horovod, a boolean, is apart).
DETAIL_STRING_MEMBERS = {
    "BaseImage": "base_image",
    "ContainerImage": "container_image",
    "JobType": "job_type",
    "MLFramework": "ml_framework",
    "ProgrammingLang": "programming_lang",
    "Processor": "processor",
    "ReleaseNotes": "release_notes",
    "VendorGuidance": "vendor_guidance",
}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MalformedRecord(ImageVersionsError, ValueError):
    """An API record that cannot be normalised (a required field missing, of the wrong JSON
    type, or unparseable). It fails the record's image, never the run.

    A ValueError too: a bad value is what it reports, and code that validates records (ours
    or a caller's) may catch it as one."""


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch, rounded to the nearest millisecond (the API's precision)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Exact integer arithmetic on the timedelta's parts: 4x faster than dividing timedeltas,
    # and called twice per row.
    delta = value - EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + (delta.microseconds + 500) // 1000


MAX_MS = to_ms(datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC))
"""The last millisecond a datetime (and a `YYYY-MM` partition) can hold."""


def from_ms(ms: int) -> datetime:
    """The UTC datetime of `ms` milliseconds since the epoch."""
    return EPOCH + timedelta(milliseconds=ms)


@functools.lru_cache(maxsize=8192)
def arn_account_region(arn: str | None) -> tuple[str, str] | None:
    """(account, region) from a SageMaker ARN, or None when it is absent, not an ARN, or its
    account (12 digits) or region (the AWS pattern) is not one: both end up in paths."""
    if not arn:
        return None
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None
    account, region = parts[4], parts[3]
    if not (ACCOUNT_ID.match(account) and REGION.match(region)):
        return None
    return account, region


def _required(item: Mapping[str, Any], key: str) -> Any:
    value = item.get(key)
    if value is None:
        raise MalformedRecord(f"missing required field {key}")
    return value


def _string(item: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    """A string member, never coerced: a number or an object where the model says string is
    a malformed record."""
    value = _required(item, key) if required else item.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedRecord(f"{key} is not a string: {shown(value)}")
    return value


def _required_string(item: Mapping[str, Any], key: str) -> str:
    value = _string(item, key)
    assert value is not None
    return value


def _timestamp_ms(item: Mapping[str, Any], key: str) -> int:
    """A timestamp member in epoch milliseconds. One that rounds to the millisecond beyond
    9999-12-31T23:59:59.999 (epoch seconds 253402300799.9999) is malformed: no datetime can
    hold it, and it would be written to partition `month=10000-01`."""
    value = _required(item, key)
    if not isinstance(value, datetime):
        raw = value.raw if isinstance(value, Unparsed) else value
        raise MalformedRecord(f"{key} is not a timestamp: {shown(raw)}")
    ms = to_ms(value)
    if ms > MAX_MS:
        raise MalformedRecord(f"{key} {value.isoformat()} is after year 9999 to the millisecond")
    return ms


@functools.lru_cache(maxsize=8192)
def _version_arn_prefix(image_arn: str, image_name: str) -> str | None:
    """The ImageVersionArn of `image_name`'s versions, lower-cased, less the version number
    (`arn:aws:sagemaker:REGION:ACCOUNT:image-version/NAME/`), when `image_arn` (an ARN that
    `arn_account_region` accepts) names that image; else None.

    Image names compare without regard to case: ImageVersionArn lower-cases the name, and
    whether ImageArn keeps its case is undocumented; either answer is accepted, another
    name never is.
    """
    parts = image_arn.split(":", 5)
    if parts[5].lower() != f"image/{image_name.lower()}":
        return None
    return f"{':'.join(parts[:5])}:image-version/{image_name}/".lower()


def _image_arn_account_region(item: Mapping[str, Any]) -> tuple[str, str]:
    image_arn = _required_string(item, "ImageArn")
    parsed = arn_account_region(image_arn)
    if parsed is None:
        raise MalformedRecord(
            f"ImageArn {shown(image_arn)} does not name a 12-digit account and a region"
        )
    return parsed


def version_row(
    image_name: str,
    item: Mapping[str, Any],
    *,
    observed_at_ms: int,
    image_account_region: tuple[str, str],
) -> Row:
    """Normalise one `ImageVersion` API record to a row of `IMAGE_VERSION_SCHEMA`.

    Timestamps are kept as epoch milliseconds until the batch becomes an Arrow table.
    Unknown statuses are kept as they come; extra fields are ignored; values of the wrong JSON
    type are rejected, never coerced. The record's ImageArn must name its image, in the
    account and region of the image (`image_account_region`, from the catalogue), and its
    ImageVersionArn this version of that image; an `ImageVersionArn` of "None" (which the API
    model allows) is kept as is.
    """
    version = _required(item, "Version")
    if type(version) is not int:
        raise MalformedRecord(f"Version is not an integer: {shown(version)}")
    if not 0 <= version < 2**31:
        raise MalformedRecord(f"Version {version} is outside int32")
    # The image's ARN repeats for every version: parsed once per image (cached).
    account_region = _image_arn_account_region(item)
    if account_region != image_account_region:
        raise MalformedRecord(
            f"ImageArn names account {account_region[0]} in {account_region[1]}, but the image "
            f"is in account {image_account_region[0]} in {image_account_region[1]}"
        )
    image_arn = item["ImageArn"]
    prefix = _version_arn_prefix(image_arn, image_name)
    if prefix is None:
        raise MalformedRecord(f"ImageArn {shown(image_arn)} does not name image {image_name}")
    version_arn = _required_string(item, "ImageVersionArn")
    expected = prefix + str(version)
    if version_arn != expected and version_arn != "None" and version_arn.lower() != expected:
        raise MalformedRecord(
            f"ImageVersionArn {shown(version_arn)} does not name version {version} of image "
            f"{image_name} in account {account_region[0]} in {account_region[1]}"
        )
    return {
        "account_id": account_region[0],
        "region": account_region[1],
        "image_name": image_name,
        "version": version,
        "image_arn": image_arn,
        "image_version_arn": version_arn,
        "status": _required_string(item, "ImageVersionStatus"),
        "failure_reason": _string(item, "FailureReason", required=False),
        "creation_time": _timestamp_ms(item, "CreationTime"),
        "last_modified_time": _timestamp_ms(item, "LastModifiedTime"),
        "is_deleted": False,
        "observed_at": observed_at_ms,
    }


def image_name_of(item: Mapping[str, Any]) -> str | None:
    """The `ImageName` of a ListImages record when it is a valid image name, else None."""
    name = item.get("ImageName")
    return name if isinstance(name, str) and IMAGE_NAME.match(name) else None


def image_row(item: Mapping[str, Any], *, observed_at_ms: int, region: str) -> Row:
    """Normalise one `Image` record from `ListImages` of `region` to a row of `IMAGE_SCHEMA`.

    The image's account and region (from its ARN) become partition paths, so both are checked
    (and the region must be the one listed), as is the name against the API's pattern and
    the name the ARN gives (without regard to case, as in `version_row`).
    """
    name = _required_string(item, "ImageName")
    if not IMAGE_NAME.match(name):
        raise MalformedRecord(f"ImageName {shown(name)} is not a valid image name")
    account, arn_region = _image_arn_account_region(item)
    if arn_region != region:
        raise MalformedRecord(f"ImageArn names region {arn_region}, but {region} was listed")
    if _version_arn_prefix(item["ImageArn"], name) is None:
        raise MalformedRecord(f"ImageArn {shown(item['ImageArn'])} does not name image {name}")
    return {
        "account_id": account,
        "region": arn_region,
        "image_name": name,
        "image_arn": item["ImageArn"],
        "display_name": _string(item, "DisplayName", required=False),
        "description": _string(item, "Description", required=False),
        "status": _required_string(item, "ImageStatus"),
        "failure_reason": _string(item, "FailureReason", required=False),
        "creation_time": _timestamp_ms(item, "CreationTime"),
        "last_modified_time": _timestamp_ms(item, "LastModifiedTime"),
        "observed_at": observed_at_ms,
        "role_arn": None,
        "tags": None,
    }


def role_arn_of(described: Mapping[str, Any]) -> str | None:
    """DescribeImage's RoleArn (optional in the model)."""
    return _string(described, "RoleArn", required=False)


def tags_of(items: Any) -> Tags:
    """ListTags's `Tags` (every page's, joined) as (key, value) pairs in key order, the rows'
    form of a map column; a key seen twice keeps its last value."""
    if not isinstance(items, list):
        raise MalformedRecord(f"Tags is not a list: {shown(items)}")
    tags: dict[str, str] = {}
    for item in items:
        key = item.get("Key") if isinstance(item, Mapping) else None
        value = item.get("Value") if isinstance(item, Mapping) else None
        if not isinstance(key, str) or not isinstance(value, str):
            raise MalformedRecord(f"a tag is not a Key and a Value: {shown(item)}")
        tags[key] = value
    return sorted(tags.items())


def details_row(
    listed: Mapping[str, Any],
    described: Mapping[str, Any],
    aliases: Iterable[str],
    *,
    observed_at_ms: int,
    tags: Tags | None = None,
) -> Row:
    """A row of `IMAGE_VERSION_DETAILS_SCHEMA` from a listed version's row, its
    DescribeImageVersion response, its aliases and its tags (`tags_of`; None: not read).

    The LastModifiedTime is the one DescribeImageVersion reports: a version changed between
    listing and describing gets the details of its newer state, stamped with that state's time.
    """
    horovod = described.get("Horovod")
    if horovod is not None and not isinstance(horovod, bool):
        raise MalformedRecord(f"Horovod is not a boolean: {shown(horovod)}")
    aliases = list(aliases)
    if not all(isinstance(alias, str) for alias in aliases):
        raise MalformedRecord(f"an alias is not a string: {shown(aliases)}")
    return {
        "account_id": listed["account_id"],
        "region": listed["region"],
        "image_name": listed["image_name"],
        "version": listed["version"],
        "last_modified_time": _timestamp_ms(described, "LastModifiedTime"),
        **{
            column: _string(described, member, required=False)
            for member, column in DETAIL_STRING_MEMBERS.items()
        },
        "horovod": horovod,
        "aliases": sorted(set(aliases)),
        "observed_at": observed_at_ms,
        "tags": tags,
    }


def rows_to_table(rows: Iterable[Row], schema: pa.Schema = IMAGE_VERSION_SCHEMA) -> pa.Table:
    """Build an Arrow table of `schema` from rows whose timestamps are epoch milliseconds."""
    rows = list(rows)
    # Column by column: about twice as fast as pa.Table.from_pylist on row dicts.
    columns = {name: [row[name] for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def table_to_rows(table: pa.Table) -> list[Row]:
    """Rows of a table of either schema, with timestamps as epoch milliseconds again."""
    names = table.schema.names
    # Column by column, as rows_to_table: a third faster than Table.to_pylist.
    columns = [
        table.column(name).cast(pa.int64())
        if pa.types.is_timestamp(field.type)
        else table.column(name)
        for name, field in zip(names, table.schema, strict=True)
    ]
    return [
        dict(zip(names, values, strict=True))
        for values in zip(*(c.to_pylist() for c in columns), strict=True)
    ]
