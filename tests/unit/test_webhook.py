"""Delivery to a webhook (`pipeline.webhook`): its failures say what went wrong, never where."""

from __future__ import annotations

import socket

import pytest

from pipeline.webhook import DeliveryFailed, post_json

SECRET = "T0KEN-s3cret"


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_unreachable_webhook_fails_without_naming_its_url() -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{closed_port()}/hooks/{SECRET}?token={SECRET}"
    with pytest.raises(DeliveryFailed, match="the webhook could not be reached") as failed:
        post_json(url, {"count": 1}, timeout_s=5)
    assert SECRET not in str(failed.value) and "127.0.0.1" not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


@pytest.mark.parametrize("url", [f"file:///tmp/{SECRET}", f"hooks.example/{SECRET}", ""])
def test_only_http_urls_are_posted_to(url: str) -> None:
    with pytest.raises(DeliveryFailed, match="must start with http:// or https://") as refused:
        post_json(url, {}, timeout_s=5)
    assert SECRET not in str(refused.value)
