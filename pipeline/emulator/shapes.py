"""The catalogue's records (images and their versions) and the response shapes built from them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_IMAGE_STATUS = "CREATED"


@dataclass
class _Version:
    number: int
    base_image: str
    status: str
    failure_reason: str | None
    created_ms: int
    modified_ms: int
    client_token: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    aliases: set[str] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Image:
    name: str
    arn: str
    role_arn: str
    display_name: str | None
    description: str | None
    created_ms: int
    modified_ms: int
    versions: dict[int, _Version] = field(default_factory=dict)
    next_version: int = 1
    tags: dict[str, str] = field(default_factory=dict)


_Stamp = Callable[[int], Any]


def _compact(shape: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in shape.items() if value is not None}


def _image_shape(image: _Image, stamp: _Stamp) -> dict[str, Any]:
    """The model's ``Image`` structure."""
    return _compact(
        {
            "CreationTime": stamp(image.created_ms),
            "Description": image.description,
            "DisplayName": image.display_name,
            "ImageArn": image.arn,
            "ImageName": image.name,
            "ImageStatus": _IMAGE_STATUS,
            "LastModifiedTime": stamp(image.modified_ms),
        }
    )


def _version_arn(image: _Image, number: int) -> str:
    prefix = image.arn.rsplit(":", 1)[0]
    return f"{prefix}:image-version/{image.name.lower()}/{number}"


def _version_shape(image: _Image, version: _Version, stamp: _Stamp) -> dict[str, Any]:
    """The model's ``ImageVersion`` structure."""
    return _compact(
        {
            "CreationTime": stamp(version.created_ms),
            "FailureReason": version.failure_reason,
            "ImageArn": image.arn,
            "ImageVersionArn": _version_arn(image, version.number),
            "ImageVersionStatus": version.status,
            "LastModifiedTime": stamp(version.modified_ms),
            "Version": version.number,
        }
    )


def _container_image(base_image: str) -> str:
    """A digest-pinned URI, as SageMaker resolves the base image at version creation."""
    repository = base_image.split("@", 1)[0]
    registry, slash, last = repository.rpartition("/")
    digest = hashlib.sha256(base_image.encode()).hexdigest()
    return f"{registry}{slash}{last.split(':', 1)[0]}@sha256:{digest}"
