"""Delivery of a JSON document to a user's webhook: one POST, standard library only.

A webhook's URL often is its secret (a token in its path or query, as Slack's and Teams'
incoming webhooks have): it never appears in a message, a log line or Dagster metadata. A
failure says what went wrong (the HTTP status, or the network error) and nothing of where.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from .errors import ImageVersionsError, one_line

__all__ = ["DeliveryFailed", "post_json"]

WEBHOOK_SCHEMES = ("http", "https")
USER_AGENT = "image-versions-alerts"


class DeliveryFailed(ImageVersionsError):
    """The webhook did not accept the document; the message never holds its URL."""


def _reason(error: urllib.error.URLError | OSError) -> str:
    """What went wrong, without the URL: an HTTP status, or the network error's text."""
    if isinstance(error, urllib.error.HTTPError):
        return f"the webhook answered HTTP {error.code}"
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    text = cause.strerror if isinstance(cause, OSError) and cause.strerror else None
    return f"the webhook could not be reached: {one_line(text or type(cause).__name__)}"


def post_json(url: str, document: Mapping[str, Any], *, timeout_s: float) -> int:
    """POST `document` as JSON to `url` and return the HTTP status (2xx).

    Raises DeliveryFailed on a URL that is not http(s), on an answer other than 2xx, and on
    any network error or timeout (after `timeout_s` per socket operation).
    """
    if url.split(":", 1)[0].lower() not in WEBHOOK_SCHEMES:
        raise DeliveryFailed("the webhook URL must start with http:// or https://")
    request = urllib.request.Request(
        url,
        data=json.dumps(document, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status: int = response.status
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(_reason(exc)) from None
    return status
