"""The targets of a sync share one SageMaker client, each call signed, paced and counted as the
target that makes it; botocore's adaptive mode keeps a client per target."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.clients import Clients, TargetClient
from pipeline.guard import CallGuard
from pipeline.source import ApiStats, ClientSettings
from tests.support import REGION


def settings(**given: Any) -> ClientSettings:
    return ClientSettings(REGION, endpoint_url="http://127.0.0.1:9", **given)


def fire(client: TargetClient) -> SimpleNamespace:
    """The events of one ListImages call that our handlers take part in; its request."""
    request = SimpleNamespace(context={"signing": {"region": REGION}})
    operation = client.meta.service_model.operation_model("ListImages")
    events = client.meta.events
    events.emit("before-call.sagemaker.ListImages", model=operation, params={}, context={})
    events.emit("before-sign.sagemaker.ListImages", request=request)
    return request


def test_targets_alike_share_a_client_and_each_call_is_its_targets() -> None:
    clients = Clients(pool_size=8)
    guard = CallGuard(10.0, threading.Event())
    first, second = ApiStats(), ApiStats()
    a = clients.client(settings(source="a"), "credentials of a", first, guard)
    b = clients.client(settings(source="b", max_rps=5.0), "credentials of b", second, guard)
    assert a.meta is b.meta  # one botocore client
    with a.bound():
        signed_a = fire(a)
    with b.bound():
        fire(b)
        signed_b = fire(b)
    assert signed_a.context["signing"] == {
        "region": REGION,
        "request_credentials": "credentials of a",
    }
    assert signed_b.context["signing"]["request_credentials"] == "credentials of b"
    assert (first.calls["ListImages"], second.calls["ListImages"]) == (1, 2)
    other = clients.client(settings(read_timeout_s=5.0), "credentials of c", ApiStats(), guard)
    assert other.meta is not a.meta  # other client settings, another client
    clients.close()


def test_a_shared_client_refuses_a_call_made_as_no_target() -> None:
    client = Clients(pool_size=8).client(
        settings(), "credentials", ApiStats(), CallGuard(10.0, threading.Event())
    )
    with pytest.raises(RuntimeError, match="outside a TargetClient"):
        fire(client)


def test_clients_of_the_adaptive_retry_mode_are_each_targets_own() -> None:
    clients = Clients(pool_size=8)
    guard = CallGuard(10.0, threading.Event())
    adaptive = settings(retry_mode="adaptive")
    a = clients.client(adaptive, "credentials of a", ApiStats(), guard)
    b = clients.client(adaptive, "credentials of b", ApiStats(), guard)
    assert a.meta is not b.meta
