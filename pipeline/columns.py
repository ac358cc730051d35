"""What each column of the datasets means, beside the Arrow schemas it describes.

One home for the column descriptions: Dagster's column schemas show them, and README's column
tables print them (tests/e2e/test_dagster_catalog.py holds README to this module). Standard
library and pyarrow only: no Dagster here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from .schema import IMAGE_SCHEMA, IMAGE_VERSION_DETAILS_SCHEMA, IMAGE_VERSION_SCHEMA

__all__ = [
    "IMAGE_COLUMNS",
    "IMAGE_VERSION_COLUMNS",
    "IMAGE_VERSION_DETAILS_COLUMNS",
    "Column",
    "type_text",
]


@dataclass(frozen=True)
class Column:
    """One column of a dataset: its name, its Arrow type as README writes it, its meaning."""

    name: str
    type: str
    nullable: bool
    description: str

    @property
    def type_and_nullability(self) -> str:
        """The type cell of README's tables: `string`, `string, nullable`."""
        return f"{self.type}, nullable" if self.nullable else self.type


def type_text(data_type: pa.DataType) -> str:
    """An Arrow type as README writes it: `string`, `int32`, `timestamp(ms, UTC)`,
    `list<string>`, `map<string, string>`."""
    if pa.types.is_timestamp(data_type):
        return f"timestamp({data_type.unit}, {data_type.tz})"
    if pa.types.is_list(data_type):
        return f"list<{type_text(data_type.value_type)}>"
    if pa.types.is_map(data_type):
        return f"map<{type_text(data_type.key_type)}, {type_text(data_type.item_type)}>"
    return str(data_type)


def _described(schema: pa.Schema, descriptions: Mapping[str, str]) -> tuple[Column, ...]:
    """The columns of `schema`, in order, each with its description; every column must have
    one and nothing else may (a schema change without its description fails here)."""
    if list(descriptions) != schema.names:
        raise ValueError(
            f"column descriptions {list(descriptions)} do not match the schema {schema.names}"
        )
    return tuple(
        Column(field.name, type_text(field.type), field.nullable, descriptions[field.name])
        for field in schema
    )


_VERSION_KEY = {
    "account_id": "12-digit account, from the ARN",
    "region": "from the ARN",
    "image_name": "ImageName (case matters, dots allowed)",
    "version": "Version",
}

IMAGE_VERSION_COLUMNS = _described(
    IMAGE_VERSION_SCHEMA,
    {
        **_VERSION_KEY,
        "image_arn": "ImageArn",
        "image_version_arn": 'ImageVersionArn; `"None"` is kept as the API sends it',
        "status": "ImageVersionStatus; unknown values are kept as they come",
        "failure_reason": "FailureReason, when a build or deletion failed",
        "creation_time": "CreationTime",
        "last_modified_time": "LastModifiedTime; its UTC month is the Hive key `month`",
        "is_deleted": "true on a tombstone: the version was gone at `observed_at`; "
        "its other fields are its last known state",
        "observed_at": "when the sync saw this state",
    },
)

IMAGE_COLUMNS = _described(
    IMAGE_SCHEMA,
    {
        "account_id": _VERSION_KEY["account_id"],
        "region": _VERSION_KEY["region"],
        "image_name": _VERSION_KEY["image_name"],
        "image_arn": "ImageArn",
        "display_name": "DisplayName",
        "description": "Description",
        "status": "ImageStatus; unknown values are kept as they come",
        "failure_reason": "FailureReason, when the image's creation or deletion failed",
        "creation_time": "CreationTime",
        "last_modified_time": "LastModifiedTime",
        "observed_at": "when the sync listed the catalogue",
        "role_arn": "RoleArn from `DescribeImage` (with `tags`; else null)",
        "tags": "from `ListTags`, key -> value (with `tags`; else null)",
    },
)

IMAGE_VERSION_DETAILS_COLUMNS = _described(
    IMAGE_VERSION_DETAILS_SCHEMA,
    {
        **_VERSION_KEY,
        "last_modified_time": "of the state `DescribeImageVersion` returned",
        "base_image": "BaseImage",
        "container_image": "ContainerImage",
        "job_type": "JobType: TRAINING, INFERENCE, NOTEBOOK_KERNEL",
        "ml_framework": "MLFramework, e.g. `PyTorch 2.3`",
        "programming_lang": "ProgrammingLang, e.g. `Python 3.11`",
        "processor": "Processor: CPU, GPU",
        "horovod": "Horovod",
        "release_notes": "ReleaseNotes",
        "vendor_guidance": "VendorGuidance: NOT_PROVIDED, STABLE, TO_BE_ARCHIVED, ARCHIVED",
        "aliases": "from `ListAliases`, sorted; empty when none",
        "observed_at": "when the sync described it",
        "tags": "the version's, from `ListTags`, key -> value (with `tags`; else null)",
    },
)
