"""Request validation: error codes, :class:`ApiError`, string rules and typed request members."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .shapes import _compact

__all__ = [
    "ACCESS_DENIED",
    "INTERNAL_FAILURE",
    "IN_USE",
    "LIMIT_EXCEEDED",
    "NOT_FOUND",
    "SERIALIZATION",
    "THROTTLING",
    "UNKNOWN_OPERATION",
    "VALIDATION",
    "ApiError",
]

NOT_FOUND = "ResourceNotFound"
VALIDATION = "ValidationException"
IN_USE = "ResourceInUse"
LIMIT_EXCEEDED = "ResourceLimitExceeded"
THROTTLING = "ThrottlingException"
INTERNAL_FAILURE = "InternalFailure"
UNKNOWN_OPERATION = "UnknownOperationException"
SERIALIZATION = "SerializationException"
ACCESS_DENIED = "AccessDeniedException"

_VERSION_STATUSES = ("CREATING", "CREATED", "CREATE_FAILED", "DELETING", "DELETE_FAILED")


class ApiError(Exception):
    """A service error as the AWS JSON protocol reports it: code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def payload(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"__type": self.code, "message": self.message}


def _invalid(member: str, value: object, constraint: str) -> ApiError:
    """A ValidationException worded like the real service's."""
    shown = "null" if value is None else f"'{value}'"
    where = member[0].lower() + member[1:]
    return ApiError(
        VALIDATION,
        f"1 validation error detected: Value {shown} at '{where}' "
        f"failed to satisfy constraint: Member must {constraint}",
    )


@dataclass(frozen=True)
class _StringRule:
    min_len: int
    max_len: int
    pattern: re.Pattern[str] | None = None


def _rule(min_len: int, max_len: int, pattern: str | None = None) -> _StringRule:
    return _StringRule(min_len, max_len, re.compile(pattern) if pattern else None)


_VERSION_LABEL = r"[a-zA-Z]+ ?\d+\.\d+(\.\d+)?"
# SageMakerImageVersionAlias; every member that holds aliases shares its constraints.
_ALIAS_RULE = _rule(1, 128, r"(?!^[.-])^([a-zA-Z0-9-_.]+)")
_ALIAS_MEMBERS = ("Alias", "Aliases", "AliasesToAdd", "AliasesToDelete")
_STRING_RULES = {
    "ImageName": _rule(1, 63, r"[a-zA-Z0-9]([-.]?[a-zA-Z0-9]){0,62}"),
    "NameContains": _rule(0, 63, r"[a-zA-Z0-9\-.]+"),
    "NextToken": _rule(0, 8192),
    "ResourceArn": _rule(0, 256, r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:.+"),
    "RoleArn": _rule(20, 2048, r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"),
    "DisplayName": _rule(1, 128, r"\S(.*\S)?"),
    "Description": _rule(1, 512),
    "DeleteProperties": _rule(1, 11, r"(^DisplayName$)|(^Description$)"),
    "BaseImage": _rule(1, 255),
    "ClientToken": _rule(1, 36, r"[a-zA-Z0-9-]+"),
    "MLFramework": _rule(1, 128, _VERSION_LABEL),
    "ProgrammingLang": _rule(1, 128, _VERSION_LABEL),
    "ReleaseNotes": _rule(1, 255),
    **dict.fromkeys(_ALIAS_MEMBERS, _ALIAS_RULE),
}
_DETAIL_ENUMS = {
    "VendorGuidance": ("NOT_PROVIDED", "STABLE", "TO_BE_ARCHIVED", "ARCHIVED"),
    "JobType": ("TRAINING", "INFERENCE", "NOTEBOOK_KERNEL"),
    "Processor": ("CPU", "GPU"),
}
_DETAIL_STRINGS = ("MLFramework", "ProgrammingLang", "ReleaseNotes")


def _check_string(member: str, value: str) -> str:
    """Validate ``value`` against the model's length and pattern constraints for ``member``."""
    rule = _STRING_RULES[member]
    if len(value) < rule.min_len:
        raise _invalid(member, value, f"have length greater than or equal to {rule.min_len}")
    if len(value) > rule.max_len:
        raise _invalid(member, value, f"have length less than or equal to {rule.max_len}")
    if rule.pattern is not None and not rule.pattern.fullmatch(value):
        raise _invalid(member, value, f"satisfy regular expression pattern: {rule.pattern.pattern}")
    return value


class _Params:
    """Typed, validated access to the members of one request."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def _typed(self, member: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
        value = self._raw.get(member)
        if value is None:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise _invalid(member, value, f"be of type {kind_name}")
        return value

    def raw(self, member: str) -> Any:
        """A member as the request sent it, for a shape checked elsewhere (a TagList)."""
        return self._raw.get(member)

    def string(self, member: str) -> str | None:
        value: str | None = self._typed(member, str, "string")
        return None if value is None else _check_string(member, value)

    def required_string(self, member: str) -> str:
        value = self.string(member)
        if value is None:
            raise _invalid(member, None, "not be null")
        return value

    def string_list(self, member: str) -> list[str]:
        """A list of strings, each checked like a string member; empty when absent."""
        values: list[Any] = self._typed(member, list, "list") or []
        for value in values:
            if not isinstance(value, str):
                raise _invalid(member, value, "be of type string")
            _check_string(member, value)
        return list(dict.fromkeys(values))

    def details(self) -> dict[str, Any]:
        """The optional descriptive members of an image version that are present."""
        return _compact(
            {
                **{member: self.enum(member, values) for member, values in _DETAIL_ENUMS.items()},
                **{member: self.string(member) for member in _DETAIL_STRINGS},
                "Horovod": self.boolean("Horovod"),
            }
        )

    def enum(self, member: str, choices: Sequence[str]) -> str | None:
        value: str | None = self._typed(member, str, "string")
        if value is not None and value not in choices:
            raise _invalid(member, value, f"satisfy enum value set: [{', '.join(choices)}]")
        return value

    def integer(self, member: str, low: int, high: int | None = None) -> int | None:
        value: int | None = self._typed(member, int, "integer")
        if value is not None and value < low:
            raise _invalid(member, value, f"have value greater than or equal to {low}")
        if value is not None and high is not None and value > high:
            raise _invalid(member, value, f"have value less than or equal to {high}")
        return value

    def boolean(self, member: str) -> bool | None:
        value: bool | None = self._typed(member, bool, "boolean")
        return value

    def timestamp_ms(self, member: str) -> int | None:
        """An epoch-seconds timestamp, rounded to whole milliseconds."""
        value: float | None = self._typed(member, (int, float), "timestamp")
        if value is None:
            return None
        if not math.isfinite(value):
            raise _invalid(member, value, "be a finite timestamp")
        return round(value * 1000)


def _check_status(status: str) -> None:
    if status not in _VERSION_STATUSES:
        raise _invalid("ImageVersionStatus", status, f"be one of {', '.join(_VERSION_STATUSES)}")


def _check_detail_members(details: Mapping[str, Any]) -> None:
    unknown = sorted(set(details) - {*_DETAIL_ENUMS, *_DETAIL_STRINGS, "Horovod"})
    if unknown:
        raise ValueError(f"not image version details: {', '.join(unknown)}")


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object (an empty body is ``{}``); None if it is not one."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
