"""Listings: sort orders, time filters and opaque NextTokens carrying a keyset cursor."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import operator
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .shapes import _Image, _Version
from .validation import VALIDATION, ApiError, _Params

_DEFAULT_MAX_RESULTS = 10
_SORT_ORDERS = ("ASCENDING", "DESCENDING")


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
