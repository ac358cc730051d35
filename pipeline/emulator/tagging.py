"""Tags of images and image versions, by resource ARN: ListTags, AddTags and DeleteTags.

As the service model gives them: a `Tag` is `{Key, Value}` (a key of 1-128 and a value of
0-256 letters, digits, spaces and `_.:/=+-@`), a resource holds at most 50, ListTags pages
with NextToken at MaxResults of at least 50. A resource's tags go with it when it is deleted;
changing them never moves its LastModifiedTime.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .validation import LIMIT_EXCEEDED, ApiError, _invalid, _Params

if TYPE_CHECKING:
    from .operations import Emulator

__all__ = ["MAX_TAGS", "add_tags", "check_tags", "delete_tags", "list_tags", "merge_tags"]

MAX_TAGS = 50
_MIN_MAX_RESULTS = 50
_TAG_CHARS = re.compile(r"[\w\s.:/=+\-@]*")
_TAG_LIMITS = {"Key": (1, 128), "Value": (0, 256)}


def check_tags(tags: Any) -> dict[str, str]:
    """A `TagList` member as key -> value; ValidationException naming the first bad member."""
    if not isinstance(tags, list):
        raise _invalid("Tags", tags, "be of type list")
    checked: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, dict) or set(tag) != {"Key", "Value"}:
            raise _invalid("Tags", tag, "be a structure of Key and Value")
        for member, (low, high) in _TAG_LIMITS.items():
            text = tag[member]
            if not isinstance(text, str):
                raise _invalid(f"Tags.{member}", text, "be of type string")
            if not low <= len(text) <= high or not _TAG_CHARS.fullmatch(text):
                raise _invalid(
                    f"Tags.{member}",
                    text,
                    f"have length {low}-{high} and match {_TAG_CHARS.pattern}",
                )
        checked[tag["Key"]] = tag["Value"]
    return checked


def merge_tags(current: dict[str, str], added: dict[str, str]) -> None:
    """Add (or overwrite) `added` in place; ResourceLimitExceeded past MAX_TAGS."""
    if len(current.keys() | added.keys()) > MAX_TAGS:
        raise ApiError(LIMIT_EXCEEDED, f"A resource can have at most {MAX_TAGS} tags.")
    current.update(added)


def list_tags(emulator: Emulator, region: str, params: _Params) -> dict[str, Any]:
    """ListTags: the resource's tags in key order, a page at a time (keyset cursor: the last
    key returned)."""
    arn = params.required_string("ResourceArn")
    max_results = params.integer("MaxResults", _MIN_MAX_RESULTS) or _MIN_MAX_RESULTS
    token = params.string("NextToken")
    tags = emulator.resource_tags(arn, region=region)
    binding = json.dumps(["ListTags", region, arn])
    cursor = emulator.tokens.decode(token, binding)[1] if token else None
    remaining = sorted(key for key in tags if cursor is None or key > cursor)
    page = remaining[:max_results]
    response: dict[str, Any] = {"Tags": [{"Key": key, "Value": tags[key]} for key in page]}
    if len(remaining) > len(page):
        response["NextToken"] = emulator.tokens.encode(binding, (0, page[-1]))
    return response


def add_tags(emulator: Emulator, region: str, params: _Params) -> dict[str, Any]:
    """AddTags: adds or overwrites; answers with the tags it was given."""
    arn = params.required_string("ResourceArn")
    added = check_tags(params.raw("Tags"))
    merge_tags(emulator.resource_tags(arn, region=region), added)
    return {"Tags": [{"Key": key, "Value": value} for key, value in added.items()]}


def delete_tags(emulator: Emulator, region: str, params: _Params) -> dict[str, Any]:
    """DeleteTags: keys the resource does not have are ignored."""
    arn = params.required_string("ResourceArn")
    keys = params.raw("TagKeys")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise _invalid("TagKeys", keys, "be a list of strings")
    tags = emulator.resource_tags(arn, region=region)
    for key in keys:
        tags.pop(key, None)
    return {}
