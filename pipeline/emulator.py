"""Local emulator of the SageMaker image APIs, speaking AWS JSON 1.1 over HTTP.

Unmodified boto3 talks to it like to the real service::

    with EmulatorServer() as server:
        seed_catalogue(server.emulator)
        client = boto3.client(
            "sagemaker",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        client.list_image_versions(ImageName="pytorch-2-3-gpu")

(or set ``AWS_ENDPOINT_URL_SAGEMAKER`` to ``server.url``). Supported operations are ListImages,
ListImageVersions, ListAliases, DescribeImage, DescribeImageVersion, CreateImage,
CreateImageVersion, UpdateImageVersion, DeleteImage and DeleteImageVersion, following the
botocore service model ``sagemaker 2017-07-24``: request validation, error codes, epoch-second
timestamps with millisecond precision, inclusive time filters, every sort order, and opaque
NextTokens that are bound to their request and resume after the last returned item (a keyset
cursor), so that creating or deleting items between pages never makes a listing skip an
unchanged item. Image versions carry their details and aliases (an alias names one version
of its image).

Tests drive the catalogue through the :class:`Emulator` Python API and a controllable
:class:`Clock`, and inject latency, throttling and server errors through :class:`Faults`.
One server can stand for several accounts, each an :class:`Emulator` of its own: it tells
which account a request is for from the request's access key, which :class:`CallerAccounts`
resolves through STS GetCallerIdentity (see :class:`EmulatorServer`).
The module depends on the standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import operator
import random
import re
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ElementTree
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

DEFAULT_ACCOUNT_ID = "123456789012"
MIN_SEED_IMAGES = 3
"""A seeded catalogue holds a big image, an image without versions, and small ones."""
DEFAULT_REGION = "us-east-1"

NOT_FOUND = "ResourceNotFound"
VALIDATION = "ValidationException"
IN_USE = "ResourceInUse"
LIMIT_EXCEEDED = "ResourceLimitExceeded"
THROTTLING = "ThrottlingException"
INTERNAL_FAILURE = "InternalFailure"
UNKNOWN_OPERATION = "UnknownOperationException"
SERIALIZATION = "SerializationException"
ACCESS_DENIED = "AccessDeniedException"

_TARGET_PREFIX = "SageMaker."
_CONTENT_TYPE = "application/x-amz-json-1.1"
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")
_DEFAULT_MAX_RESULTS = 10
_SORT_ORDERS = ("ASCENDING", "DESCENDING")
_VERSION_STATUSES = ("CREATING", "CREATED", "CREATE_FAILED", "DELETING", "DELETE_FAILED")
_IMAGE_STATUS = "CREATED"
_DEFAULT_LIMIT = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


# --- time ---------------------------------------------------------------------------------


def _as_utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _to_ms(when: datetime) -> int:
    """Milliseconds since the epoch, truncating."""
    return (_as_utc(when) - _EPOCH) // _ONE_MS


def _to_datetime(ms: int) -> datetime:
    return _EPOCH + ms * _ONE_MS


def _to_epoch(ms: int) -> float:
    return round(ms / 1000, 3)


def _truncate_to_ms(when: datetime) -> datetime:
    return _to_datetime(_to_ms(when))


class Clock:
    """Thread-safe clock of UTC-aware datetimes truncated to milliseconds.

    Without ``start`` it follows real time (shifted by every :meth:`advance`); with ``start``
    it is frozen there and moves only when told to.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen = None if start is None else _as_utc(start)
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """Return the current time."""
        with self._lock:
            if self._frozen is not None:
                return _truncate_to_ms(self._frozen)
            return _truncate_to_ms(datetime.now(UTC) + self._offset)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (frozen or not)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Freeze the clock at ``when``."""
        with self._lock:
            self._frozen = _as_utc(when)


# --- errors and faults --------------------------------------------------------------------


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


@dataclass
class Faults:
    """Faults injected into HTTP requests; mutable at runtime, drawn reproducibly from ``seed``."""

    latency_s: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    throttle_burst: int = 0
    rate_limit_rps: float | None = None
    operations: frozenset[str] | None = None
    seed: int = 0
    spike_rate: float = 0.0
    """Probability that a request is delayed by an extra ``spike_s`` seconds."""
    spike_s: float = 0.0
    token_expiry_rate: float = 0.0
    """Probability that a request carrying a NextToken is refused as expired."""
    denied_regions: frozenset[str] = frozenset()
    """Regions whose every request is refused with AccessDeniedException."""
    _rng: random.Random = field(
        default_factory=random.Random, init=False, repr=False, compare=False
    )
    _rng_seed: int | None = field(default=None, init=False, repr=False, compare=False)
    _bucket_rate: float | None = field(default=None, init=False, repr=False, compare=False)
    _tokens: float = field(default=0.0, init=False, repr=False, compare=False)
    _refilled_at: float = field(default=0.0, init=False, repr=False, compare=False)

    def applies_to(self, operation: str) -> bool:
        """Whether faults apply to ``operation``."""
        return self.operations is None or operation in self.operations

    def delay(self, operation: str) -> float:
        """Seconds to hold one request: the fixed latency plus a drawn spike (caller locks)."""
        if not self.applies_to(operation):
            return 0.0
        spike = self.spike_s if self.spike_rate > 0 and self._random() < self.spike_rate else 0
        return self.latency_s + spike

    def draw(
        self, operation: str, now: float, *, region: str = "", has_token: bool = False
    ) -> ApiError | None:
        """Decide the fault for one request at monotonic time ``now`` (caller holds a lock)."""
        if not self.applies_to(operation):
            return None
        if region in self.denied_regions:
            return ApiError(
                ACCESS_DENIED, f"User is not authorized to perform: sagemaker:{operation}"
            )
        if has_token and self.token_expiry_rate > 0 and self._random() < self.token_expiry_rate:
            return ApiError(VALIDATION, "The NextToken is expired or invalid.")
        if self.throttle_burst > 0:
            self.throttle_burst -= 1
            return ApiError(THROTTLING, "Rate exceeded")
        if not self._take_token(now):
            return ApiError(THROTTLING, "Rate exceeded")
        if self.throttle_rate > 0 and self._random() < self.throttle_rate:
            return ApiError(THROTTLING, "Rate exceeded")
        if self.error_rate > 0 and self._random() < self.error_rate:
            return ApiError(INTERNAL_FAILURE, "An internal error occurred.", status=500)
        return None

    def _random(self) -> float:
        if self._rng_seed != self.seed:
            self._rng = random.Random(self.seed)
            self._rng_seed = self.seed
        return self._rng.random()

    def _take_token(self, now: float) -> bool:
        """Token bucket holding up to one second of requests (at least one)."""
        rate = self.rate_limit_rps
        if rate is None:
            return True
        capacity = max(1.0, rate)
        if self._bucket_rate != rate:
            self._bucket_rate, self._tokens, self._refilled_at = rate, capacity, now
        self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


# --- request members ----------------------------------------------------------------------


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
    "RoleArn": _rule(20, 2048, r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"),
    "DisplayName": _rule(1, 128, r"\S(.*\S)?"),
    "Description": _rule(1, 512),
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


# --- catalogue ----------------------------------------------------------------------------


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


# --- listing and pagination ---------------------------------------------------------------


class _Timestamped(Protocol):
    created_ms: int
    modified_ms: int


_Row = TypeVar("_Row", bound=_Timestamped)


@dataclass(frozen=True)
class _Listing(Generic[_Row]):
    """How one List operation sorts its rows: SortBy value -> key, plus a unique tiebreaker."""

    operation: str
    result_key: str
    sort_keys: Mapping[str, Callable[[_Row], Any]]
    tiebreaker: Callable[[_Row], Any]

    def key(self, sort_by: str) -> Callable[[_Row], tuple[Any, Any]]:
        primary = self.sort_keys[sort_by]
        return lambda row: (primary(row), self.tiebreaker(row))


_IMAGE_LISTING = _Listing[_Image](
    operation="ListImages",
    result_key="Images",
    sort_keys={
        "CREATION_TIME": lambda image: image.created_ms,
        "LAST_MODIFIED_TIME": lambda image: image.modified_ms,
        "IMAGE_NAME": lambda image: image.name,
    },
    tiebreaker=lambda image: image.name,
)
_VERSION_LISTING = _Listing[_Version](
    operation="ListImageVersions",
    result_key="ImageVersions",
    sort_keys={
        "CREATION_TIME": lambda version: version.created_ms,
        "LAST_MODIFIED_TIME": lambda version: version.modified_ms,
        "VERSION": lambda version: version.number,
    },
    tiebreaker=lambda version: version.number,
)

# Inclusive time filters: member -> (row attribute, whether the bound is a lower bound).
_TIME_FILTERS = {
    "CreationTimeAfter": ("created_ms", True),
    "CreationTimeBefore": ("created_ms", False),
    "LastModifiedTimeAfter": ("modified_ms", True),
    "LastModifiedTimeBefore": ("modified_ms", False),
}


@dataclass(frozen=True)
class _ListQuery:
    """The validated sort, filter and paging members shared by both List operations."""

    max_results: int
    sort_by: str
    descending: bool
    bounds: dict[str, int]
    next_token: str | None

    @classmethod
    def parse(cls, params: _Params, listing: _Listing[Any]) -> _ListQuery:
        max_results = params.integer("MaxResults", 1, 100)
        sort_order = params.enum("SortOrder", _SORT_ORDERS) or "DESCENDING"
        bounds = {name: params.timestamp_ms(name) for name in _TIME_FILTERS}
        return cls(
            max_results=_DEFAULT_MAX_RESULTS if max_results is None else max_results,
            sort_by=params.enum("SortBy", tuple(listing.sort_keys)) or "CREATION_TIME",
            descending=sort_order == "DESCENDING",
            bounds={name: ms for name, ms in bounds.items() if ms is not None},
            next_token=params.string("NextToken"),
        )

    def admitted(self, rows: Iterable[_Row]) -> list[_Row]:
        """The rows within every time bound: one pass per bound, as comprehensions, since a
        no-change sync filters every stored version of an image and must stay cheap here."""
        kept = list(rows)
        for name, bound in self.bounds.items():
            attribute, lower = _TIME_FILTERS[name]
            value = operator.attrgetter(attribute)
            if lower:
                kept = [row for row in kept if value(row) >= bound]
            else:
                kept = [row for row in kept if value(row) <= bound]
        return kept

    def binding(self, operation: str, scope: Mapping[str, Any]) -> str:
        """Everything a NextToken must agree with (MaxResults may change between pages)."""
        return json.dumps(
            [operation, dict(scope), self.sort_by, self.descending, self.bounds], sort_keys=True
        )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


class _TokenCodec:
    """Opaque, tamper-proof NextTokens carrying a keyset cursor bound to its request."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    @staticmethod
    def _digest(binding: str) -> str:
        return hashlib.sha256(binding.encode()).hexdigest()[:32]

    def encode(self, binding: str, cursor: tuple[Any, Any]) -> str:
        payload = json.dumps({"b": self._digest(binding), "c": list(cursor)}).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, token: str, binding: str) -> tuple[Any, Any]:
        invalid = ApiError(VALIDATION, "Invalid pagination token: NextToken is not valid.")
        try:
            payload_part, mac_part = token.split(".")
            payload = base64.urlsafe_b64decode(payload_part)
            mac = base64.urlsafe_b64decode(mac_part)
        except ValueError:
            raise invalid from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        data = json.loads(payload)
        if data["b"] != self._digest(binding):
            raise ApiError(
                VALIDATION, "Invalid pagination token: NextToken belongs to a different request."
            )
        first, second = data["c"]
        return first, second


# --- the emulator -------------------------------------------------------------------------

_Operation = Callable[["Emulator", str, _Params], dict[str, Any]]


class Emulator:
    """In-memory SageMaker image catalogue, one per region; every method is thread-safe."""

    def __init__(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        clock: Clock | None = None,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.account_id = account_id
        self.clock = clock if clock is not None else Clock()
        self.default_region = region
        self.faults = Faults()
        self.image_limit = _DEFAULT_LIMIT
        self.version_limit = _DEFAULT_LIMIT
        self._lock = threading.RLock()
        self._regions: dict[str, dict[str, _Image]] = {}
        self._tokens = _TokenCodec()
        self._requests: list[tuple[str, dict[str, Any]]] = []
        # Called with (operation, request members) before each HTTP request is served: lets a
        # test change the catalogue at an exact point of a client's sequence of calls.
        self.before_request: Callable[[str, dict[str, Any]], None] | None = None
        # Rewrites a successful response's JSON body before it is sent: lets a test serve
        # malformed or unusual records that the Python API would never create.
        self.rewrite_response: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    # Python API ---------------------------------------------------------------------------

    def create_image(
        self,
        name: str,
        *,
        region: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create an image; returns its ``Image`` shape with datetimes."""
        with self._lock:
            image = self._add_image(
                self._region(region),
                _check_string("ImageName", name),
                role_arn=f"arn:aws:iam::{self.account_id}:role/SageMakerImageRole",
                display_name=display_name,
                description=description,
            )
            return _image_shape(image, _to_datetime)

    def create_image_version(
        self,
        name: str,
        *,
        region: str | None = None,
        status: str = "CREATED",
        failure_reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        aliases: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Add the next version to image ``name``; returns its ``ImageVersion`` shape.

        ``details`` holds CreateImageVersion's optional members by their wire names
        (``JobType``, ``Processor``, ``Horovod``...), ``aliases`` its ``Aliases``.
        """
        _check_status(status)
        params = _Params({**(details or {}), "Aliases": list(aliases)})
        _check_detail_members(details or {})
        with self._lock:
            region = self._region(region)
            image = self._image(region, name)
            base_image = (
                f"{self.account_id}.dkr.ecr.{region}.amazonaws.com/{name.lower()}"
                f":v{image.next_version}"
            )
            version = self._add_version(
                image,
                base_image,
                details=params.details(),
                aliases=params.string_list("Aliases"),
                status=status,
                reason=failure_reason,
            )
            return _version_shape(image, version, _to_datetime)

    def update_image_version(
        self,
        name: str,
        version: int,
        *,
        region: str | None = None,
        status: str | None = None,
        failure_reason: str | None = None,
        last_modified_time: datetime | None = None,
        details: Mapping[str, Any] | None = None,
        aliases_to_add: Iterable[str] = (),
        aliases_to_delete: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Change a version's status and/or failure reason and stamp its LastModifiedTime.

        A new ``status`` replaces the failure reason with ``failure_reason`` (clearing it when
        None). ``details`` and the aliases change as UpdateImageVersion's members of the same
        names would. LastModifiedTime becomes ``last_modified_time`` if given, else the clock's
        now.
        """
        if status is not None:
            _check_status(status)
        _check_detail_members(details or {})
        params = _Params(
            {
                **(details or {}),
                "AliasesToAdd": list(aliases_to_add),
                "AliasesToDelete": list(aliases_to_delete),
            }
        )
        with self._lock:
            image = self._image(self._region(region), name)
            record = self._version(image, version)
            self._change_version(image, record, params)
            if status is not None:
                record.status, record.failure_reason = status, failure_reason
            elif failure_reason is not None:
                record.failure_reason = failure_reason
            record.modified_ms = (
                self._now_ms() if last_modified_time is None else _to_ms(last_modified_time)
            )
            return _version_shape(image, record, _to_datetime)

    def delete_image_version(self, name: str, version: int, *, region: str | None = None) -> None:
        """Delete one version of image ``name``."""
        with self._lock:
            image = self._image(self._region(region), name)
            del image.versions[self._version(image, version).number]

    def delete_image(self, name: str, *, region: str | None = None) -> None:
        """Delete image ``name`` and all its versions."""
        with self._lock:
            region = self._region(region)
            del self._catalogue(region)[self._image(region, name).name]

    def image_names(self, region: str | None = None) -> list[str]:
        """Names of the region's images, sorted."""
        with self._lock:
            return sorted(self._catalogue(self._region(region)))

    def live_versions(self, region: str | None = None) -> list[dict[str, Any]]:
        """Every version in the region as ``ImageVersion`` shape plus ``ImageName``, sorted."""
        with self._lock:
            catalogue = self._catalogue(self._region(region))
            return [
                {"ImageName": image.name, **_version_shape(image, version, _to_datetime)}
                for image in sorted(catalogue.values(), key=lambda image: image.name)
                for version in sorted(image.versions.values(), key=lambda v: v.number)
            ]

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """(operation, request members) of every HTTP request received, in order."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    # wire API ----------------------------------------------------------------------------

    def call(
        self, operation: str, params: Mapping[str, Any], *, region: str | None = None
    ) -> dict[str, Any]:
        """Run one API operation in-process; returns the wire shape or raises :class:`ApiError`."""
        handler = _OPERATIONS.get(operation)
        if handler is None:
            raise ApiError(UNKNOWN_OPERATION, f"Operation {operation} is not supported.")
        with self._lock:
            return handler(self, self._region(region), _Params(params))

    def handle_request(
        self, operation: str, body: bytes, region: str
    ) -> tuple[int, dict[str, Any]]:
        """Serve one HTTP request: log it, inject faults, run it; returns (status, JSON body)."""
        params = _json_object(body)
        with self._lock:
            self._requests.append((operation, params if params is not None else {}))
        if self.before_request is not None:
            self.before_request(operation, params if params is not None else {})
        faults = self.faults
        with self._lock:
            delay = faults.delay(operation)
        if delay > 0:
            time.sleep(delay)
        try:
            if params is None:
                raise ApiError(SERIALIZATION, "The request body is not a JSON object.")
            with self._lock:
                fault = faults.draw(
                    operation, time.monotonic(), region=region, has_token="NextToken" in params
                )
            if fault is not None:
                raise fault
            response = self.call(operation, params, region=region)
            if self.rewrite_response is not None:
                response = self.rewrite_response(operation, response)
            return 200, response
        except ApiError as error:
            return error.status, error.payload()
        except Exception as error:  # a bug here must still look like a service failure
            return 500, ApiError(INTERNAL_FAILURE, repr(error), status=500).payload()

    # operations -------------------------------------------------------------------------

    def _list_images(self, region: str, params: _Params) -> dict[str, Any]:
        query = _ListQuery.parse(params, _IMAGE_LISTING)
        contains = params.string("NameContains")
        needle = (contains or "").lower()
        rows = [image for image in self._catalogue(region).values() if needle in image.name.lower()]
        return self._list_page(
            query,
            rows,
            _IMAGE_LISTING,
            {"region": region, "NameContains": contains},
            lambda image: _image_shape(image, _to_epoch),
        )

    def _list_image_versions(self, region: str, params: _Params) -> dict[str, Any]:
        name = params.required_string("ImageName")
        query = _ListQuery.parse(params, _VERSION_LISTING)
        image = self._image(region, name)
        return self._list_page(
            query,
            list(image.versions.values()),
            _VERSION_LISTING,
            {"region": region, "ImageName": name},
            lambda version: _version_shape(image, version, _to_epoch),
        )

    def _list_page(
        self,
        query: _ListQuery,
        rows: Iterable[_Row],
        listing: _Listing[_Row],
        scope: Mapping[str, Any],
        render: Callable[[_Row], dict[str, Any]],
    ) -> dict[str, Any]:
        """Filter, sort and cut one page after the NextToken's cursor; the shared List core."""
        binding = query.binding(listing.operation, scope)
        key = listing.key(query.sort_by)
        cursor = self._tokens.decode(query.next_token, binding) if query.next_token else None

        def after_cursor(row: _Row) -> bool:
            if cursor is None:
                return True
            return key(row) < cursor if query.descending else key(row) > cursor

        matching = sorted(
            (row for row in query.admitted(rows) if after_cursor(row)),
            key=key,
            reverse=query.descending,
        )
        page = matching[: query.max_results]
        response: dict[str, Any] = {listing.result_key: [render(row) for row in page]}
        if len(matching) > len(page):
            response["NextToken"] = self._tokens.encode(binding, key(page[-1]))
        return response

    def _describe_image(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        return {**_image_shape(image, _to_epoch), "RoleArn": image.role_arn}

    def _describe_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        version = self._addressed_version(image, params)
        if version is None:
            if not image.versions:
                raise ApiError(NOT_FOUND, f"Image {image.arn} has no versions.")
            version = image.versions[max(image.versions)]
        return {
            **_version_shape(image, version, _to_epoch),
            "BaseImage": version.base_image,
            "ContainerImage": _container_image(version.base_image),
            **version.details,
        }

    def _create_image(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._add_image(
            region,
            params.required_string("ImageName"),
            role_arn=params.required_string("RoleArn"),
            display_name=params.string("DisplayName"),
            description=params.string("Description"),
        )
        return {"ImageArn": image.arn}

    def _create_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        name = params.required_string("ImageName")
        base_image = params.required_string("BaseImage")
        token = params.required_string("ClientToken")
        details = params.details()
        aliases = params.string_list("Aliases")
        image = self._image(region, name)
        repeated = [v for v in image.versions.values() if v.client_token == token]
        version = (
            repeated[0]
            if repeated
            else self._add_version(image, base_image, token, details, aliases=aliases)
        )
        return {"ImageVersionArn": _version_arn(image, version.number)}

    def _update_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        version = self._addressed_version(image, params)
        if version is None:
            raise _invalid("Version", None, "not be null when no Alias is given")
        self._change_version(image, version, params)
        version.modified_ms = self._now_ms()
        return {"ImageVersionArn": _version_arn(image, version.number)}

    def _list_aliases(self, region: str, params: _Params) -> dict[str, Any]:
        name = params.required_string("ImageName")
        max_results = params.integer("MaxResults", 1, 100) or _DEFAULT_MAX_RESULTS
        token = params.string("NextToken")
        image = self._image(region, name)
        version = self._addressed_version(image, params)
        chosen = image.versions.values() if version is None else [version]
        # One row per alias, in (version, alias) order; the cursor is the last row returned.
        rows = sorted((v.number, alias) for v in chosen for alias in v.aliases)
        scope = {"region": region, "ImageName": name, "Version": params.integer("Version", 0)}
        binding = json.dumps(["ListAliases", scope, params.string("Alias")], sort_keys=True)
        cursor = self._tokens.decode(token, binding) if token else None
        remaining = [row for row in rows if cursor is None or row > cursor]
        page = remaining[:max_results]
        response: dict[str, Any] = {"SageMakerImageVersionAliases": [alias for _, alias in page]}
        if len(remaining) > len(page):
            response["NextToken"] = self._tokens.encode(binding, page[-1])
        return response

    def _delete_image(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        del self._catalogue(region)[image.name]
        return {}

    def _delete_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        version = self._addressed_version(image, params)
        if version is None:
            raise _invalid("Version", None, "not be null")
        del image.versions[version.number]
        return {}

    # internals ---------------------------------------------------------------------------

    def _region(self, region: str | None) -> str:
        return region or self.default_region

    def _now_ms(self) -> int:
        return _to_ms(self.clock.now())

    def _catalogue(self, region: str) -> dict[str, _Image]:
        return self._regions.setdefault(region, {})

    def _image(self, region: str, name: str) -> _Image:
        image = self._catalogue(region).get(_check_string("ImageName", name))
        if image is None:
            arn = f"arn:aws:sagemaker:{region}:{self.account_id}:image/{name}"
            raise ApiError(NOT_FOUND, f"Image {arn} does not exist.")
        return image

    @staticmethod
    def _version(image: _Image, number: int) -> _Version:
        version = image.versions.get(number)
        if version is None:
            raise ApiError(
                NOT_FOUND, f"Image version {_version_arn(image, number)} does not exist."
            )
        return version

    @staticmethod
    def _addressed_version(image: _Image, params: _Params) -> _Version | None:
        """The version a request names by ``Version`` or ``Alias``; None when it names none."""
        number = params.integer("Version", 0)
        alias = params.string("Alias")
        if number is not None and alias is not None:
            raise ApiError(VALIDATION, "Specify either Version or Alias, not both.")
        if alias is not None:
            for version in image.versions.values():
                if alias in version.aliases:
                    return version
            raise ApiError(NOT_FOUND, f"Alias {alias} of image {image.arn} does not exist.")
        return None if number is None else Emulator._version(image, number)

    @staticmethod
    def _claim_aliases(image: _Image, number: int, aliases: Iterable[str]) -> None:
        """Refuse aliases that another version of the image holds (an alias names one version)."""
        for alias in aliases:
            for other in image.versions.values():
                if other.number != number and alias in other.aliases:
                    raise ApiError(
                        IN_USE,
                        f"Alias {alias} is in use by version {other.number} of {image.name}.",
                    )

    def _change_version(self, image: _Image, version: _Version, params: _Params) -> None:
        """Apply UpdateImageVersion's members (details, AliasesToAdd/-Delete) to a version."""
        details = params.details()
        added = params.string_list("AliasesToAdd")
        deleted = params.string_list("AliasesToDelete")
        if set(added) & set(deleted):
            raise ApiError(VALIDATION, "An alias cannot be both added and deleted.")
        missing = sorted(set(deleted) - version.aliases)
        if missing:
            raise ApiError(
                NOT_FOUND, f"Alias {missing[0]} of version {version.number} does not exist."
            )
        self._claim_aliases(image, version.number, added)
        version.details.update(details)
        version.aliases = (version.aliases - set(deleted)) | set(added)

    def _add_image(
        self,
        region: str,
        name: str,
        *,
        role_arn: str,
        display_name: str | None,
        description: str | None,
    ) -> _Image:
        catalogue = self._catalogue(region)
        if any(existing.lower() == name.lower() for existing in catalogue):
            raise ApiError(IN_USE, f"Image {name} already exists.")
        if len(catalogue) >= self.image_limit:
            raise ApiError(
                LIMIT_EXCEEDED, f"The limit of {self.image_limit} images per region is reached."
            )
        now = self._now_ms()
        image = _Image(
            name=name,
            arn=f"arn:aws:sagemaker:{region}:{self.account_id}:image/{name}",
            role_arn=role_arn,
            display_name=None
            if display_name is None
            else _check_string("DisplayName", display_name),
            description=None if description is None else _check_string("Description", description),
            created_ms=now,
            modified_ms=now,
        )
        catalogue[name] = image
        return image

    def _add_version(
        self,
        image: _Image,
        base_image: str,
        token: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        aliases: Iterable[str] = (),
        status: str = "CREATED",
        reason: str | None = None,
    ) -> _Version:
        if len(image.versions) >= self.version_limit:
            raise ApiError(
                LIMIT_EXCEEDED,
                f"Image {image.name} reached the limit of {self.version_limit} versions.",
            )
        self._claim_aliases(image, image.next_version, aliases)
        now = self._now_ms()
        version = _Version(
            number=image.next_version,
            base_image=base_image,
            status=status,
            failure_reason=reason,
            created_ms=now,
            modified_ms=now,
            client_token=token,
            details=details or {},
            aliases=set(aliases),
        )
        image.versions[version.number] = version
        image.next_version += 1
        return version


_OPERATIONS: dict[str, _Operation] = {
    "ListImages": Emulator._list_images,
    "ListImageVersions": Emulator._list_image_versions,
    "DescribeImage": Emulator._describe_image,
    "DescribeImageVersion": Emulator._describe_image_version,
    "ListAliases": Emulator._list_aliases,
    "CreateImage": Emulator._create_image,
    "CreateImageVersion": Emulator._create_image_version,
    "UpdateImageVersion": Emulator._update_image_version,
    "DeleteImage": Emulator._delete_image,
    "DeleteImageVersion": Emulator._delete_image_version,
}


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


# --- realistic data -----------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageTemplate:
    name: str
    display_name: str
    description: str


_IMAGE_TEMPLATES = (
    _ImageTemplate("pytorch-2-3-gpu", "PyTorch 2.3 GPU", "PyTorch 2.3 with CUDA 12.1 for GPU"),
    _ImageTemplate("tensorflow-2-16-cpu", "TensorFlow 2.16 CPU", "TensorFlow 2.16, Python 3.11"),
    _ImageTemplate("sklearn-1-5", "scikit-learn 1.5", "scikit-learn 1.5 with pandas and polars"),
    _ImageTemplate("Custom.R-4.4", "R 4.4", "R 4.4 with tidyverse for the analytics team"),
    _ImageTemplate("xgboost-1-7-6", "XGBoost 1.7.6", "XGBoost 1.7.6 training image"),
    _ImageTemplate("huggingface-tgi-2-0", "Hugging Face TGI 2.0", "Text generation inference"),
    _ImageTemplate("DataScience.Py3-11", "Data Science 3.11", "Conda data science distribution"),
    _ImageTemplate("spark-3-5-emr", "Spark 3.5", "PySpark 3.5 notebook kernel for EMR"),
    _ImageTemplate("jax-0-4-30-gpu", "JAX 0.4.30 GPU", "JAX with CUDA 12 and cuDNN 9"),
    _ImageTemplate("Geospatial.v1", "Geospatial", "GDAL, rasterio and geopandas"),
    _ImageTemplate("rapids-24-06", "RAPIDS 24.06", "RAPIDS cuDF and cuML on CUDA 12"),
    _ImageTemplate("autogluon-1-1", "AutoGluon 1.1", "AutoGluon tabular and time series"),
    _ImageTemplate("mxnet-1-9-cpu", "MXNet 1.9 CPU", "Legacy MXNet 1.9 image"),
    _ImageTemplate("julia-1-10", "Julia 1.10", "Julia 1.10 with IJulia kernel"),
    _ImageTemplate("team-nlp.base-v2", "NLP base v2", "Shared base image of the NLP team"),
    _ImageTemplate("llama3-finetune-a100", "Llama 3 fine-tuning", "QLoRA fine-tuning on A100"),
)
_BUILD_FAILURES = (
    "Image size 31.2 GB exceeds the maximum of 30 GB.",
    "Unable to pull the base image: the ECR repository policy denies access to the role.",
    "The kernel gateway did not start within 300 seconds.",
    "The base image manifest was not found; the tag may have been overwritten.",
)
_DELETE_FAILURES = (
    "The image version is used by a running app and cannot be deleted.",
    "An internal error occurred while deleting the image version. Retry the request.",
)
_FAILURE_REASONS = {"CREATE_FAILED": _BUILD_FAILURES, "DELETE_FAILED": _DELETE_FAILURES}
_BIG_IMAGE_VERSIONS = (305, 340)
_SMALL_IMAGE_VERSIONS = (1, 8)
_FORCED_TIE_SIZE = 5
_BUILD_FAILURE_RATE = 0.08
_OBSERVED_BUILD_RATE = 0.3


def _seconds(rng: random.Random, low_ms: int, high_ms: int) -> float:
    """A random duration in whole milliseconds, as seconds."""
    return rng.randint(low_ms, high_ms) / 1000


def _pick_templates(rng: random.Random, count: int) -> list[_ImageTemplate]:
    picked = rng.sample(_IMAGE_TEMPLATES, min(count, len(_IMAGE_TEMPLATES)))
    extra = range(len(picked), count)
    return picked + [
        _ImageTemplate(f"custom-image-{n:03d}", f"Custom image {n}", "Team-built image")
        for n in extra
    ]


def _version_chunks(rng: random.Random, count: int, *, forced_tie: bool) -> list[int]:
    """Split ``count`` versions into groups created at the same instant (mostly singles)."""
    chunks: list[int] = []
    remaining = count
    while remaining > 0:
        chunks.append(min(remaining, rng.choice((1, 1, 1, 1, 1, 1, 1, 1, 2, 3))))
        remaining -= chunks[-1]
    if forced_tie:
        chunks.insert(rng.randrange(len(chunks) + 1), _FORCED_TIE_SIZE)
    return chunks


def _demo_details(name: str) -> dict[str, Any]:
    """Plausible CreateImageVersion details for an image, derived from its name alone."""
    lower = name.lower()
    gpu = any(mark in lower for mark in ("gpu", "a100", "rapids", "tgi"))
    training = any(mark in lower for mark in ("finetune", "xgboost", "train"))
    job = "INFERENCE" if "tgi" in lower else "TRAINING" if training else "NOTEBOOK_KERNEL"
    framework = re.match(r"([a-z]+)-(\d+)-(\d+)", lower)
    return _compact(
        {
            "JobType": job,
            "Processor": "GPU" if gpu else "CPU",
            "Horovod": gpu and job == "TRAINING",
            "MLFramework": f"{framework[1]} {framework[2]}.{framework[3]}" if framework else None,
            "ProgrammingLang": "Python 3.11",
            "VendorGuidance": "STABLE",
            "ReleaseNotes": f"Built from the {name} Dockerfile",
        }
    )


def _create_demo_version(
    emulator: Emulator,
    name: str,
    region: str | None,
    *,
    status: str = "CREATED",
    failure_reason: str | None = None,
) -> dict[str, Any]:
    """Create a version with demo details and the alias ``v<number>``, stamped once."""
    created = emulator.create_image_version(
        name,
        region=region,
        status=status,
        failure_reason=failure_reason,
        details=_demo_details(name),
    )
    number = created["Version"]
    emulator.update_image_version(
        name,
        number,
        region=region,
        aliases_to_add=[f"v{number}"],
        last_modified_time=created["LastModifiedTime"],
    )
    return created


def _seed_versions(
    emulator: Emulator, rng: random.Random, name: str, count: int, region: str | None
) -> None:
    """Create ``count`` versions: a group shares one timestamp, a single one may fail or be
    observed while building (its LastModifiedTime then follows its CreationTime)."""
    if count > 1:
        for _ in range(count):
            _create_demo_version(emulator, name, region)
        return
    status = "CREATE_FAILED" if rng.random() < _BUILD_FAILURE_RATE else "CREATED"
    reason = rng.choice(_BUILD_FAILURES) if status == "CREATE_FAILED" else None
    if rng.random() < _OBSERVED_BUILD_RATE:
        version = _create_demo_version(emulator, name, region, status="CREATING")
        emulator.clock.advance(_seconds(rng, 60_000, 1_200_000))
        emulator.update_image_version(
            name, version["Version"], region=region, status=status, failure_reason=reason
        )
    else:
        _create_demo_version(emulator, name, region, status=status, failure_reason=reason)


def _age_big_image(emulator: Emulator, rng: random.Random, name: str, region: str | None) -> None:
    """Fail one deletion and delete two versions of the big image (avoiding tied versions)."""
    versions = [v for v in emulator.live_versions(region) if v["ImageName"] == name]
    stamps = Counter(v["LastModifiedTime"] for v in versions)
    candidates = [
        v["Version"]
        for v in versions
        if v["ImageVersionStatus"] == "CREATED" and stamps[v["LastModifiedTime"]] == 1
    ]
    failed, *deleted = rng.sample(candidates, 3)
    emulator.clock.advance(_seconds(rng, 60_000, 3_600_000))
    emulator.update_image_version(
        name, failed, region=region, status="DELETE_FAILED", failure_reason=_DELETE_FAILURES[0]
    )
    for number in deleted:
        emulator.delete_image_version(name, number, region=region)


def seed_catalogue(
    emulator: Emulator, *, seed: int = 0, images: int = 12, region: str | None = None
) -> None:
    """Fill a region with a realistic catalogue, deterministic for ``seed`` and the start clock.

    ``images`` images (at least 3): one with 300+ versions (including a group of versions
    created at the same millisecond, one DELETE_FAILED and two deleted), one without versions,
    the others with 1-8. About 8% of builds fail with a FailureReason. Image creations and
    version groups are interleaved at random, the clock advancing 30 s to 8 h between events,
    so the history spans about two months of the clock.
    """
    if images < MIN_SEED_IMAGES:
        raise ValueError(f"seed_catalogue needs at least {MIN_SEED_IMAGES} images")
    rng = random.Random(seed)
    templates = _pick_templates(rng, images)
    counts = [rng.randint(*_BIG_IMAGE_VERSIONS), 0]
    counts += [rng.randint(*_SMALL_IMAGE_VERSIONS) for _ in templates[2:]]
    timelines = [
        deque([-1, *_version_chunks(rng, count, forced_tie=index == 0)])
        for index, count in enumerate(counts)
    ]
    pending = dict(zip(range(images), timelines, strict=True))
    while pending:
        index = rng.choices(list(pending), weights=[len(t) for t in pending.values()])[0]
        event = pending[index].popleft()
        if not pending[index]:
            del pending[index]
        emulator.clock.advance(_seconds(rng, 30_000, 8 * 3_600_000))
        template = templates[index]
        if event < 0:
            has_text = rng.random() < 0.8
            emulator.create_image(
                template.name,
                region=region,
                display_name=template.display_name if has_text else None,
                description=template.description if has_text else None,
            )
        else:
            _seed_versions(emulator, rng, template.name, event, region)
    _age_big_image(emulator, rng, templates[0].name, region)


# --- random mutations ---------------------------------------------------------------------

_TRANSITIONS = {
    "CREATING": ("CREATED", "CREATED", "CREATE_FAILED"),
    "CREATED": ("DELETE_FAILED",),
    "DELETE_FAILED": ("CREATED",),
}
_PROJECTS = ("churn", "fraud", "vision", "forecast", "ranking", "speech")
_FLAVOURS = ("cpu", "gpu", "base", "dev")
_TIE_RATE = 0.2

_Mutation = Callable[[Emulator, random.Random, str | None], str | None]


def _mutate_create_version(
    emulator: Emulator, rng: random.Random, region: str | None
) -> str | None:
    names = emulator.image_names(region)
    if not names:
        return None
    name = rng.choice(names)
    status = rng.choice(("CREATING", "CREATING", "CREATED"))
    version = _create_demo_version(emulator, name, region, status=status)
    return f"created {name} version {version['Version']} ({status})"


def _mutate_status(emulator: Emulator, rng: random.Random, region: str | None) -> str | None:
    candidates = [
        v for v in emulator.live_versions(region) if v["ImageVersionStatus"] in _TRANSITIONS
    ]
    if not candidates:
        return None
    target = rng.choice(candidates)
    old = target["ImageVersionStatus"]
    new = rng.choice(_TRANSITIONS[old])
    reason = rng.choice(_FAILURE_REASONS[new]) if new in _FAILURE_REASONS else None
    name, number = target["ImageName"], target["Version"]
    emulator.update_image_version(name, number, region=region, status=new, failure_reason=reason)
    return f"{name} version {number}: {old} -> {new}"


def _mutate_delete_version(
    emulator: Emulator, rng: random.Random, region: str | None
) -> str | None:
    versions = emulator.live_versions(region)
    if not versions:
        return None
    target = rng.choice(versions)
    emulator.delete_image_version(target["ImageName"], target["Version"], region=region)
    return f"deleted {target['ImageName']} version {target['Version']}"


def _mutate_delete_image(emulator: Emulator, rng: random.Random, region: str | None) -> str | None:
    names = emulator.image_names(region)
    if not names:
        return None
    name = rng.choice(names)
    emulator.delete_image(name, region=region)
    return f"deleted image {name} with all its versions"


def _mutate_create_image(emulator: Emulator, rng: random.Random, region: str | None) -> str:
    existing = {name.lower() for name in emulator.image_names(region)}
    name = ""
    while not name or name.lower() in existing:
        name = f"{rng.choice(_PROJECTS)}-{rng.choice(_FLAVOURS)}-{rng.randint(1, 99)}"
    emulator.create_image(name, region=region, display_name=name.replace("-", " ").title())
    count = rng.randint(1, 3)
    for _ in range(count):
        _create_demo_version(emulator, name, region)
    return f"created image {name} with {count} versions"


_MUTATIONS: tuple[tuple[_Mutation, float], ...] = (
    (_mutate_create_version, 4.0),
    (_mutate_status, 3.0),
    (_mutate_delete_version, 2.0),
    (_mutate_create_image, 1.0),
    (_mutate_delete_image, 0.3),
)


def random_mutations(
    emulator: Emulator, rng: random.Random, count: int, *, region: str | None = None
) -> list[str]:
    """Apply ``count`` random realistic changes; returns one human-readable line per change.

    Changes create versions, move statuses along (CREATING -> CREATED/CREATE_FAILED, CREATED
    <-> DELETE_FAILED), delete versions or images and create images with a few versions. The
    clock advances up to two minutes before each change, except ~20% of the time (ties).
    """
    mutations = [mutation for mutation, _ in _MUTATIONS]
    weights = [weight for _, weight in _MUTATIONS]
    lines = []
    for _ in range(count):
        if rng.random() >= _TIE_RATE:
            emulator.clock.advance(_seconds(rng, 1, 120_000))
        mutate = rng.choices(mutations, weights)[0]
        lines.append(mutate(emulator, rng, region) or _mutate_create_image(emulator, rng, region))
    return lines


# --- HTTP ---------------------------------------------------------------------------------


def _region_from(authorization: str | None, default: str) -> str:
    """The region of a SigV4 ``Authorization`` header's credential scope."""
    match = _CREDENTIAL_SCOPE.search(authorization or "")
    return match.group(1) if match else default


class CallerAccounts:
    """The account of an access key, from STS GetCallerIdentity, remembered per key.

    The call carries the request's access key and session token but no valid signature: this
    is for STS emulators that do not verify signatures (moto's server), never for real STS.
    """

    def __init__(self, sts_endpoint_url: str, timeout_s: float = 5.0) -> None:
        self.sts_endpoint_url = sts_endpoint_url
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}

    def account_of(self, access_key: str, session_token: str | None) -> str | None:
        """The key's account, or None when STS cannot say."""
        with self._lock:
            known = self._accounts.get(access_key)
        if known is not None:
            return known
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/20000101/us-east-1/"
            "sts/aws4_request, SignedHeaders=host, Signature=unverified",
        }
        if session_token:
            headers["X-Amz-Security-Token"] = session_token
        request = urllib.request.Request(
            self.sts_endpoint_url,
            data=b"Action=GetCallerIdentity&Version=2011-06-15",
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                document = ElementTree.fromstring(response.read())
        except (OSError, ElementTree.ParseError):
            return None
        account = next((e.text for e in document.iter() if e.tag.endswith("}Account")), None)
        if account is None:
            return None
        with self._lock:
            self._accounts[access_key] = account
        return account

    def keys(self) -> dict[str, str]:
        """Every access key resolved so far, with its account."""
        with self._lock:
            return dict(self._accounts)


class _HTTPServer(ThreadingHTTPServer):
    """Threaded server (daemon threads) that can cut its open keep-alive connections."""

    def __init__(
        self,
        address: tuple[str, int],
        emulator: Emulator,
        accounts: Mapping[str, Emulator],
        caller_accounts: CallerAccounts | None,
    ) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator
        self.accounts = accounts
        self.caller_accounts = caller_accounts
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections the client dropped; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def emulator_for(self, authorization: str | None, token: str | None) -> Emulator | None:
        """The emulator of the request's account; None for an account this server lacks.

        The default emulator serves every request whose account cannot be resolved."""
        match = _ACCESS_KEY.search(authorization or "")
        if self.caller_accounts is None or match is None:
            return self.emulator
        account = self.caller_accounts.account_of(match.group(1), token)
        return self.emulator if account is None else self.accounts.get(account)

    def close_connections(self) -> None:
        """Shut every open connection so its handler thread finishes and closes it."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """AWS JSON 1.1 over HTTP/1.1 keep-alive: POST / with ``X-Amz-Target``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HTTPServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(_TARGET_PREFIX)  # another service's stays unknown
        authorization = self.headers.get("Authorization")
        emulator = self.server.emulator_for(authorization, self.headers.get("X-Amz-Security-Token"))
        if emulator is None:
            denied = ApiError(ACCESS_DENIED, f"The caller has no access to sagemaker:{operation}")
            self._reply(denied.status, denied.payload())
            return
        region = _region_from(authorization, emulator.default_region)
        status, payload = emulator.handle_request(operation, body, region)
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status != 200:
            self.send_header("x-amzn-ErrorType", payload["__type"])
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no line on stderr per request."""


class EmulatorServer:
    """The emulator on a real loopback socket, served by a daemon thread.

    With `other_accounts` and `sts_endpoint_url`, one server serves several accounts: a
    request goes to the emulator of the account that STS names for its access key, to
    `emulator` when STS cannot say, and is refused (AccessDeniedException) for an account
    that has no emulator here.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        other_accounts: Iterable[Emulator] = (),
        sts_endpoint_url: str | None = None,
    ) -> None:
        self.emulator = emulator if emulator is not None else Emulator()
        self.accounts = {e.account_id: e for e in (self.emulator, *other_accounts)}
        self.caller_accounts = (
            None if sts_endpoint_url is None else CallerAccounts(sts_endpoint_url)
        )
        self.url = ""
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        """Bind and start serving; :attr:`url` is valid afterwards."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        httpd = _HTTPServer(self._address, self.emulator, self.accounts, self.caller_accounts)
        host, port = httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._httpd = httpd
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the socket."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1", port: int = 8765, *, seed: int | None = 0, images: int = 12
) -> None:
    """Serve a (seeded, unless ``seed`` is None) emulator until interrupted; prints the URL.

    The seeded history starts 90 days ago (it spans about two months); afterwards the clock
    follows real time.
    """
    emulator = Emulator()
    if seed is not None:
        emulator.clock = Clock(datetime.now(UTC) - timedelta(days=90))
        seed_catalogue(emulator, seed=seed, images=images)
        emulator.clock = Clock()
    # The interrupt may come as soon as the URL is printed (the server already answers on its
    # own thread), so the whole serving block is inside the try.
    try:
        with EmulatorServer(emulator, host, port) as server:
            print(f"SageMaker emulator listening on {server.url}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
