"""The SageMaker side (`pipeline.source`) without a network: listings over scripted pages, what
an answer that is not the API's becomes, organization members, and the client's pacing hooks
(botocore events fired by hand). tests/e2e/ drives the same code over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.clients import make_client
from pipeline.guard import CallGuard
from pipeline.ratelimit import AdaptiveRateLimiter
from pipeline.source import (
    ApiStats,
    ClientSettings,
    Organization,
    _once,
    list_image_versions,
    list_images,
    organization_members,
)
from tests.support import REGION

Page = dict[str, Any]


class ScriptedSageMaker:
    """Stands for a boto3 SageMaker client: each List call answers the next of `script`, a
    page or a ClientError to raise; the parameters of every call are kept."""

    def __init__(self, script: list[Page | ClientError]) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def _answer(self, **params: Any) -> Page:
        self.calls.append(params)
        answer = self.script.pop(0)
        if isinstance(answer, ClientError):
            raise answer
        return answer

    list_images = _answer
    list_image_versions = _answer


def refused(code: str, message: str = "refused") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "ListImageVersions")


def test_a_listing_follows_every_page_at_the_largest_page_size() -> None:
    client = ScriptedSageMaker(
        [
            {"Images": [{"ImageName": "a"}], "NextToken": "t1"},
            {"Images": [{"ImageName": "b"}], "NextToken": "t2"},
            {"Images": []},
        ]
    )
    assert [image["ImageName"] for image in list_images(client)] == ["a", "b"]
    assert [call.get("NextToken") for call in client.calls] == [None, "t1", "t2"]
    assert {call["MaxResults"] for call in client.calls} == {100}


@pytest.mark.parametrize(
    ("pages", "problem"),
    [
        ([{}], "without its Images list"),  # a proxy's HTML page, parsed by botocore
        ([{"Images": None}], "without its Images list"),
        ([{"Images": [], "NextToken": "t"}, {"Images": [], "NextToken": "t"}], "loops"),
    ],
)
def test_an_answer_that_is_not_the_apis_is_an_error_not_an_empty_catalogue(
    pages: list[Page], problem: str
) -> None:
    """Invariant 8: "no images" from such an answer would tombstone every image."""
    with pytest.raises(Exception, match=problem):  # MalformedResponse, not a list
        list_images(ScriptedSageMaker(pages))


def test_versions_are_listed_oldest_change_first_from_the_given_time() -> None:
    after = datetime(2026, 3, 1, tzinfo=UTC)
    client = ScriptedSageMaker([{"ImageVersions": [{"Version": 1}]}])
    assert list(list_image_versions(client, "lab", after)) == [[{"Version": 1}]]
    (call,) = client.calls
    assert call == {
        "ImageName": "lab",
        "MaxResults": 100,
        "SortBy": "LAST_MODIFIED_TIME",
        "SortOrder": "ASCENDING",
        "LastModifiedTimeAfter": after,
    }


def test_a_refused_next_token_restarts_the_listing_and_skips_no_page() -> None:
    first, second = {"ImageVersions": [{"Version": 1}], "NextToken": "t"}, {"ImageVersions": []}
    bad_token = refused("ValidationException", "bad token")
    client = ScriptedSageMaker(
        [first, refused("InvalidNextToken"), first, bad_token, first, second]
    )
    pages = list(list_image_versions(client, "lab", None))
    assert pages == [[{"Version": 1}]] * 3 + [[]]
    assert [call.get("NextToken") for call in client.calls] == [None, "t"] * 3


def test_other_refusals_and_too_many_restarts_fail_the_listing() -> None:
    denied = ScriptedSageMaker([refused("AccessDeniedException")])
    with pytest.raises(ClientError, match="AccessDenied"):
        list(list_image_versions(denied, "lab", None))
    page = {"ImageVersions": [], "NextToken": "t"}
    expiring = ScriptedSageMaker([page, refused("ExpiredNextToken")] * 4)
    with pytest.raises(ClientError, match="ExpiredNextToken"):
        list(list_image_versions(expiring, "lab", None))


def test_an_organization_source_covers_its_active_members_through_the_member_role() -> None:
    listed = [
        {"Id": "111111111111", "Arn": "arn:aws:organizations::1:account/a", "State": "ACTIVE"},
        {"Id": "222222222222", "Arn": "arn:aws-cn:organizations::1:account/b", "Status": "ACTIVE"},
        {"Id": "333333333333", "State": "SUSPENDED"},
        {"Id": "444444444444", "State": "ACTIVE"},
    ]
    organization = Organization("team/Reader", exclude=("444444444444",))
    settings = ClientSettings(REGION, source="org", organization=organization)
    members = organization_members(settings, listed)
    assert [(m.account_id, m.problem) for m in members] == [
        ("111111111111", None),
        ("222222222222", None),
    ]
    roles = [m.settings.roles[-1].role_arn for m in members if m.settings]
    assert roles == [
        "arn:aws:iam::111111111111:role/team/Reader",
        "arn:aws-cn:iam::222222222222:role/team/Reader",
    ]
    assert all(m.settings and m.settings.organization is None for m in members)

    allow_listed = Organization("Reader", accounts=("333333333333", "555555555555"))
    problems = organization_members(ClientSettings(REGION, organization=allow_listed), listed)
    assert [(m.account_id, m.settings, m.problem) for m in problems] == [
        ("333333333333", None, "account is SUSPENDED"),
        ("555555555555", None, "not in the organization"),
    ]


class HttpAnswer:
    """What botocore hands its needs-retry handlers: the HTTP response's status and headers."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def retry_hook(settings: ClientSettings) -> tuple[Callable[..., Any], ApiStats]:
    """make_client's needs-retry decision, fired as botocore fires it after an attempt."""
    stats = ApiStats()
    guard = CallGuard(deadline_s=10.0, cancel=threading.Event())
    client = make_client(settings, stats, guard, AdaptiveRateLimiter())

    def after_attempt(status: int, code: str | None, attempts: int) -> Any:
        parsed = {"Error": {"Code": code}} if code else {}
        with client.bound():  # as a call of this client's target fires them
            client.meta.events.emit("before-send.sagemaker.ListImages", request=None)
            return client.meta.events.emit_until_response(
                "needs-retry.sagemaker.ListImages",
                response=(HttpAnswer(status), parsed),
                caught_exception=None,
                attempts=attempts,
                operation=client.meta.service_model.operation_model("ListImages"),
                request_dict={"context": {}},
            )[1]

    return after_attempt, stats


def test_a_throttled_attempt_goes_straight_back_to_the_pacer_while_attempts_remain() -> None:
    after_attempt, stats = retry_hook(ClientSettings(REGION, max_attempts=3))
    assert after_attempt(400, "ThrottlingException", attempts=1) == 0.0
    assert after_attempt(400, "ThrottlingException", attempts=3) is None  # out of attempts
    assert after_attempt(500, "InternalFailure", attempts=1) > 0  # botocore's own back-off
    assert after_attempt(200, None, attempts=1) is None
    assert (stats.attempts, stats.throttled) == (4, 2)


def test_a_value_read_once_is_computed_once_by_targets_that_start_together() -> None:
    computed: list[int] = []
    go = threading.Event()

    def compute() -> int:
        computed.append(1)
        assert go.wait(30)  # every caller is on its way meanwhile
        return 42

    value = _once(compute)
    arriving = [threading.Event() for _ in range(8)]
    answers: list[int] = []

    def target(arrived: threading.Event) -> None:
        arrived.set()
        answers.append(value())

    threads = [threading.Thread(target=target, args=(event,)) for event in arriving]
    for thread in threads:
        thread.start()
    for event in arriving:
        assert event.wait(30)
    go.set()
    for thread in threads:
        thread.join(30)
    assert answers == [42] * 8
    assert computed == [1]
