"""The SageMaker image API emulator, exercised by unmodified boto3 over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError
from botocore.retries.standard import ExponentialBackoff

from pipeline.emulator import (
    ApiError,
    Clock,
    Emulator,
    EmulatorServer,
    Faults,
    random_mutations,
    seed_catalogue,
)
from tests.support import assert_conforms, error_code, raw_call

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
VERSION_FIELDS = {
    "CREATION_TIME": "CreationTime",
    "LAST_MODIFIED_TIME": "LastModifiedTime",
    "VERSION": "Version",
}
IMAGE_FIELDS = {
    "CREATION_TIME": "CreationTime",
    "LAST_MODIFIED_TIME": "LastModifiedTime",
    "IMAGE_NAME": "ImageName",
}

Connect = Callable[..., Any]


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    """One boto3 session per module, so the SageMaker model is loaded once."""
    return boto3.session.Session()


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=Clock(START))


@pytest.fixture
def seeded(emulator: Emulator) -> Emulator:
    seed_catalogue(emulator, seed=7)
    return emulator


@pytest.fixture
def server(emulator: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as running:
        yield running


@pytest.fixture
def connect(session: boto3.session.Session, server: EmulatorServer) -> Iterator[Connect]:
    """Factory of SageMaker clients bound to the emulator; closes them afterwards."""
    clients: list[Any] = []

    def make(region: str = "us-east-1", **config: Any) -> Any:
        client = session.client(
            "sagemaker",
            endpoint_url=server.url,
            region_name=region,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            config=Config(**config),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(connect: Connect) -> Any:
    return connect()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep botocore's retries but not its (up to seconds long) backoff sleeps."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def versions_of(emulator: Emulator, name: str) -> list[dict[str, Any]]:
    return [v for v in emulator.live_versions() if v["ImageName"] == name]


def big_image(emulator: Emulator) -> str:
    counts = Counter(str(v["ImageName"]) for v in emulator.live_versions())
    return counts.most_common(1)[0][0]


def all_versions(client: Any, page_size: int = 37, **params: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator("list_image_versions")
    pages = paginator.paginate(PaginationConfig={"PageSize": page_size}, **params)
    return [version for page in pages for version in page["ImageVersions"]]


def all_images(client: Any, page_size: int = 5, **params: Any) -> list[dict[str, Any]]:
    pages = client.get_paginator("list_images").paginate(
        PaginationConfig={"PageSize": page_size}, **params
    )
    return [image for page in pages for image in page["Images"]]


# --- protocol and model conformance -------------------------------------------------------


def test_every_response_conforms_to_the_botocore_model(
    seeded: Emulator, server: EmulatorServer, client: Any
) -> None:
    model = client.meta.service_model
    name = big_image(seeded)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("ListImages", {"MaxResults": 100}),
        ("ListImageVersions", {"ImageName": name, "MaxResults": 100}),
        ("DescribeImage", {"ImageName": name}),
        ("DescribeImageVersion", {"ImageName": name}),
        ("CreateImage", {"ImageName": "new", "RoleArn": "arn:aws:iam::123456789012:role/r"}),
        ("CreateImageVersion", {"ImageName": "new", "BaseImage": "img:1", "ClientToken": "t"}),
        ("DeleteImageVersion", {"ImageName": "new", "Version": 1}),
        ("DeleteImage", {"ImageName": "new"}),
    ]
    for operation, params in calls:
        status, headers, body = raw_call(server.url, f"SageMaker.{operation}", params)
        assert status == 200, body
        assert headers["Content-Type"] == "application/x-amz-json-1.1"
        assert_conforms(model.operation_model(operation).output_shape, body)
    status, _, body = raw_call(server.url, "SageMaker.ListImageVersions", {"ImageName": "gone"})
    assert (status, set(body)) == (400, {"__type", "message"})


def test_errors_follow_the_json_protocol(server: EmulatorServer) -> None:
    status, headers, body = raw_call(server.url, "SageMaker.ListDomains", {})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert headers["x-amzn-ErrorType"] == "UnknownOperationException"
    status, _, body = raw_call(server.url, "Other.ListImages", {})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = raw_call(server.url, "SageMaker.ListImages", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = raw_call(server.url, "SageMaker.ListImages", b"")
    assert (status, body) == (200, {"Images": []})


def test_modeled_errors_map_to_client_exceptions(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFound) as excinfo:
        client.list_image_versions(ImageName="missing")
    assert error_code(excinfo) == "ResourceNotFound"
    assert "missing does not exist" in excinfo.value.response["Error"]["Message"]
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_keep_alive_reuses_one_connection(server: EmulatorServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        sockets = []
        for _ in range(3):
            connection.request(
                "POST", "/", body=b"{}", headers={"X-Amz-Target": "SageMaker.ListImages"}
            )
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, {"Images": []})
            sockets.append(connection.sock)
        assert sockets[0] is sockets[1] is sockets[2]
    finally:
        connection.close()


def test_concurrent_requests(seeded: Emulator, connect: Connect) -> None:
    client = connect(max_pool_connections=16)
    name = big_image(seeded)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                assert len(client.list_image_versions(ImageName=name)["ImageVersions"]) == 10
        except BaseException as error:  # collected and asserted in the main thread
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(seeded.requests()) == 120


def test_endpoint_from_environment(
    server: EmulatorServer, seeded: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", server.url)
    client = boto3.session.Session().client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    try:
        assert len(client.list_images()["Images"]) == 10
    finally:
        client.close()
    assert seeded.requests() == [("ListImages", {})]


# --- listing semantics --------------------------------------------------------------------


@pytest.mark.parametrize("sort_by", ["CREATION_TIME", "LAST_MODIFIED_TIME", "VERSION"])
@pytest.mark.parametrize("sort_order", ["ASCENDING", "DESCENDING"])
def test_list_image_versions_sort_orders(
    seeded: Emulator, client: Any, sort_by: str, sort_order: str
) -> None:
    name = big_image(seeded)
    got = all_versions(client, ImageName=name, SortBy=sort_by, SortOrder=sort_order)
    field = VERSION_FIELDS[sort_by]
    expected = sorted(
        versions_of(seeded, name),
        key=lambda v: (v[field], v["Version"]),
        reverse=sort_order == "DESCENDING",
    )
    assert [v["Version"] for v in got] == [v["Version"] for v in expected]


def test_list_image_versions_defaults(seeded: Emulator, client: Any) -> None:
    name = big_image(seeded)
    response = client.list_image_versions(ImageName=name)
    newest = sorted(
        versions_of(seeded, name), key=lambda v: (v["CreationTime"], v["Version"]), reverse=True
    )
    assert [v["Version"] for v in response["ImageVersions"]] == [v["Version"] for v in newest[:10]]
    assert "NextToken" in response
    assert len(client.list_image_versions(ImageName=name, MaxResults=100)["ImageVersions"]) == 100


@pytest.mark.parametrize("sort_by", ["CREATION_TIME", "LAST_MODIFIED_TIME", "IMAGE_NAME"])
@pytest.mark.parametrize("sort_order", ["ASCENDING", "DESCENDING"])
def test_list_images_sort_orders(
    seeded: Emulator, client: Any, sort_by: str, sort_order: str
) -> None:
    seeded.create_image("tie-a")
    seeded.create_image("tie-b")  # same millisecond: broken by ImageName
    got = all_images(client, SortBy=sort_by, SortOrder=sort_order)
    field = IMAGE_FIELDS[sort_by]
    expected = sorted(
        got, key=lambda i: (i[field], i["ImageName"]), reverse=sort_order == "DESCENDING"
    )
    assert got == expected
    assert sorted(i["ImageName"] for i in got) == seeded.image_names()


def test_list_images_name_contains_and_time_filters(seeded: Emulator, client: Any) -> None:
    seeded.create_image("Mixed.Case-Name")
    contains = client.list_images(NameContains="case-n")["Images"]
    assert [i["ImageName"] for i in contains] == ["Mixed.Case-Name"]
    images = all_images(client)
    middle = sorted(images, key=lambda i: i["CreationTime"])[5]["CreationTime"]
    after = all_images(client, CreationTimeAfter=middle)
    before = all_images(client, CreationTimeBefore=middle)
    assert len(after) + len(before) == len(images) + 1  # the boundary image is in both
    assert all_images(client, LastModifiedTimeAfter=middle, LastModifiedTimeBefore=middle) == [
        i for i in images if i["CreationTime"] == middle
    ]


def test_time_filters_are_inclusive_at_millisecond_boundaries(
    emulator: Emulator, client: Any
) -> None:
    emulator.create_image("edge")
    t0 = emulator.clock.now()
    emulator.create_image_version("edge")  # 1 @ t0
    emulator.create_image_version("edge")  # 2 @ t0 (tie)
    emulator.clock.advance(0.001)
    emulator.create_image_version("edge")  # 3 @ t0 + 1 ms
    emulator.clock.advance(0.001)
    emulator.create_image_version("edge")  # 4 @ t0 + 2 ms
    emulator.clock.advance(5)
    t1 = emulator.update_image_version("edge", 1)["LastModifiedTime"]

    def versions(**filters: Any) -> list[int]:
        listed = client.list_image_versions(ImageName="edge", **filters)["ImageVersions"]
        return sorted(v["Version"] for v in listed)

    assert versions(CreationTimeAfter=t0 + MS) == [3, 4]
    assert versions(CreationTimeBefore=t0) == [1, 2]
    assert versions(CreationTimeAfter=t0, CreationTimeBefore=t0 + MS) == [1, 2, 3]
    assert versions(CreationTimeAfter=t0 + 2 * MS, CreationTimeBefore=t0 + 2 * MS) == [4]
    assert versions(CreationTimeAfter=t0 + MS + timedelta(microseconds=400)) == [3, 4]
    assert versions(CreationTimeAfter=t0 + MS + timedelta(microseconds=600)) == [4]
    assert versions(LastModifiedTimeBefore=t0) == [2]
    assert versions(LastModifiedTimeAfter=t0 + 2 * MS) == [1, 4]
    assert versions(LastModifiedTimeAfter=t1, LastModifiedTimeBefore=t1) == [1]
    assert versions(LastModifiedTimeAfter=t1 + MS) == []


def test_millisecond_timestamps_round_trip_exactly(
    emulator: Emulator, client: Any, server: EmulatorServer
) -> None:
    emulator.clock.set(START + timedelta(microseconds=123_987))
    created = emulator.create_image("precise")["CreationTime"]
    emulator.create_image_version("precise")
    assert created == START + 123 * MS
    listed = client.list_image_versions(ImageName="precise")["ImageVersions"][0]
    assert listed["CreationTime"] == created
    assert listed["CreationTime"].microsecond == 123_000
    again = client.list_image_versions(
        ImageName="precise", CreationTimeAfter=created, CreationTimeBefore=created
    )
    assert [v["Version"] for v in again["ImageVersions"]] == [1]
    _, _, raw = raw_call(server.url, "SageMaker.DescribeImage", {"ImageName": "precise"})
    assert raw["CreationTime"] == START.timestamp() + 0.123
    raw_filter = {"ImageName": "precise", "CreationTimeAfter": int(START.timestamp())}
    _, _, raw = raw_call(server.url, "SageMaker.ListImageVersions", raw_filter)
    assert len(raw["ImageVersions"]) == 1


def test_max_results_validation(seeded: Emulator, connect: Connect, server: Any) -> None:
    client = connect()
    name = big_image(seeded)
    with pytest.raises(ClientError) as excinfo:
        client.list_image_versions(ImageName=name, MaxResults=101)
    assert error_code(excinfo) == "ValidationException"
    assert "maxResults" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ParamValidationError):  # botocore itself enforces the minimum
        client.list_images(MaxResults=0)
    unvalidated = connect(parameter_validation=False)
    for operation, params in (
        (unvalidated.list_images, {"MaxResults": 0}),
        (unvalidated.list_image_versions, {"ImageName": name, "MaxResults": 0}),
    ):
        with pytest.raises(ClientError) as excinfo:
            operation(**params)
        assert error_code(excinfo) == "ValidationException"
    for bad in ("10", 10.5, True):
        status, _, body = raw_call(
            server.url, "SageMaker.ListImages", {"MaxResults": bad, "NameContains": "x"}
        )
        assert (status, body["__type"]) == (400, "ValidationException")


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("list_image_versions", {"SortBy": "IMAGE_NAME"}),
        ("list_image_versions", {"SortOrder": "UP"}),
        ("list_images", {"SortBy": "VERSION"}),
        ("list_images", {"SortOrder": "descending"}),
        ("list_images", {"NameContains": "no_underscores"}),
    ],
)
def test_invalid_list_parameters(
    seeded: Emulator, client: Any, operation: str, params: dict[str, Any]
) -> None:
    if operation == "list_image_versions":
        params = {"ImageName": big_image(seeded), **params}
    with pytest.raises(ClientError) as excinfo:
        getattr(client, operation)(**params)
    assert error_code(excinfo) == "ValidationException"


def test_next_token_is_bound_to_its_request(seeded: Emulator, client: Any) -> None:
    name = big_image(seeded)
    request = {"ImageName": name, "SortOrder": "ASCENDING", "CreationTimeAfter": START}
    first = client.list_image_versions(MaxResults=5, **request)
    token = first["NextToken"]
    second = client.list_image_versions(MaxResults=7, NextToken=token, **request)
    assert first["ImageVersions"][-1]["Version"] < second["ImageVersions"][0]["Version"]
    other = next(n for n in seeded.image_names() if n != name)
    changed = [
        {**request, "SortOrder": "DESCENDING"},
        {**request, "SortBy": "VERSION"},
        {**request, "CreationTimeAfter": START + MS},
        {**request, "LastModifiedTimeBefore": START + timedelta(days=365)},
        {**request, "ImageName": other},
    ]
    for params in changed:
        with pytest.raises(ClientError) as excinfo:
            client.list_image_versions(NextToken=token, **params)
        assert error_code(excinfo) == "ValidationException"
    for bad_token in (token[:-6] + "AAAAA=", "garbage", token.replace(".", "")):
        with pytest.raises(ClientError) as excinfo:
            client.list_image_versions(NextToken=bad_token, **request)
        assert error_code(excinfo) == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        client.list_images(NextToken=token)
    assert error_code(excinfo) == "ValidationException"
    stranger = Emulator()  # same request, but another emulator's secret
    stranger.create_image(name)
    wire = {**request, "CreationTimeAfter": START.timestamp(), "NextToken": token}
    with pytest.raises(ApiError) as api_error:
        stranger.call("ListImageVersions", wire)
    assert api_error.value.code == "ValidationException"


@pytest.mark.parametrize("sort_by", ["CREATION_TIME", "LAST_MODIFIED_TIME", "VERSION"])
@pytest.mark.parametrize("sort_order", ["ASCENDING", "DESCENDING"])
def test_mutations_mid_pagination_never_skip_a_stable_version(
    seeded: Emulator, client: Any, sort_by: str, sort_order: str
) -> None:
    name = big_image(seeded)
    rng = random.Random(f"{sort_by}/{sort_order}")
    initial = {v["Version"] for v in versions_of(seeded, name)}
    touched: set[int] = set()
    returned: list[int] = []
    pages = client.get_paginator("list_image_versions").paginate(
        ImageName=name, SortBy=sort_by, SortOrder=sort_order, PaginationConfig={"PageSize": 20}
    )
    for page in pages:
        returned += [v["Version"] for v in page["ImageVersions"]]
        seeded.clock.advance(rng.uniform(0, 2))
        live = sorted(v["Version"] for v in versions_of(seeded, name))
        deleted, updated = rng.sample(live, 2)
        seeded.delete_image_version(name, deleted)
        seeded.update_image_version(name, updated, status="DELETE_FAILED", failure_reason="busy")
        seeded.create_image_version(name)
        touched |= {deleted, updated}
    stable = initial - touched
    assert stable <= set(returned)
    assert all(count == 1 for version, count in Counter(returned).items() if version in stable)
    assert len(touched) > 20  # mutations happened between many pages


def test_missing_resources_are_not_found(seeded: Emulator, client: Any) -> None:
    name = big_image(seeded)
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (client.list_image_versions, {"ImageName": "nope"}),
        (client.describe_image, {"ImageName": "nope"}),
        (client.describe_image_version, {"ImageName": "nope"}),
        (client.describe_image_version, {"ImageName": name, "Version": 100_000}),
        (client.create_image_version, {"ImageName": "nope", "BaseImage": "x"}),
        (client.delete_image_version, {"ImageName": name, "Version": 100_000}),
        (client.delete_image, {"ImageName": "nope"}),
        (client.list_image_versions, {"ImageName": name.upper()}),  # names are case-sensitive
    ]
    for operation, params in calls:
        with pytest.raises(ClientError) as excinfo:
            operation(**params)
        assert error_code(excinfo) == "ResourceNotFound", params


@pytest.mark.parametrize(
    "name", ["bad_name", "-leading", "trailing-", "two..dots", "dash.-dot", "ümlaut", "a b"]
)
def test_invalid_image_names(client: Any, name: str) -> None:
    for operation in (client.list_image_versions, client.describe_image):
        with pytest.raises(ClientError) as excinfo:
            operation(ImageName=name)
        assert error_code(excinfo) == "ValidationException"
        assert "imageName" in excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize("name", ["a", "Custom.R-4.4", "x" * 63, "A1.b2-C3"])
def test_valid_image_names(client: Any, name: str) -> None:
    arn = client.create_image(ImageName=name, RoleArn="arn:aws:iam::123456789012:role/r")
    assert arn["ImageArn"].endswith(f":image/{name}")
    version = client.create_image_version(ImageName=name, BaseImage="img:1")
    assert version["ImageVersionArn"].endswith(f":image-version/{name.lower()}/1")


# --- regions and operations ---------------------------------------------------------------


def test_regions_are_separate_catalogues(
    emulator: Emulator, connect: Connect, server: EmulatorServer
) -> None:
    east, west = connect("us-east-1"), connect("us-west-2")
    role = "arn:aws:iam::123456789012:role/r"
    west_arn = west.create_image(ImageName="shared", RoleArn=role)["ImageArn"]
    assert west_arn == "arn:aws:sagemaker:us-west-2:123456789012:image/shared"
    assert east.list_images()["Images"] == []
    east.create_image(ImageName="shared", RoleArn=role)
    west.create_image_version(ImageName="shared", BaseImage="img:1")
    assert [v["Version"] for v in west.list_image_versions(ImageName="shared")["ImageVersions"]]
    assert east.list_image_versions(ImageName="shared")["ImageVersions"] == []
    assert emulator.image_names("us-west-2") == ["shared"]
    assert [v["ImageName"] for v in emulator.live_versions("us-west-2")] == ["shared"]
    assert emulator.live_versions("us-east-1") == []
    for _ in range(3):
        west.create_image_version(ImageName="shared", BaseImage="img:1")
        east.create_image_version(ImageName="shared", BaseImage="img:1")
    token = west.list_image_versions(ImageName="shared", MaxResults=1)["NextToken"]
    with pytest.raises(ClientError) as excinfo:
        east.list_image_versions(ImageName="shared", MaxResults=1, NextToken=token)
    assert error_code(excinfo) == "ValidationException"
    _, _, unsigned = raw_call(server.url, "SageMaker.ListImages", {})
    assert [i["ImageArn"] for i in unsigned["Images"]] == [
        "arn:aws:sagemaker:us-east-1:123456789012:image/shared"
    ]


def test_image_lifecycle(emulator: Emulator, client: Any) -> None:
    role = "arn:aws:iam::123456789012:role/service-role/SageMakerRole"
    client.create_image(ImageName="life", RoleArn=role, DisplayName="Life", Description="d")
    described = client.describe_image(ImageName="life")
    assert described["RoleArn"] == role
    assert (described["DisplayName"], described["Description"]) == ("Life", "d")
    assert described["ImageStatus"] == "CREATED"
    assert described["CreationTime"] == START
    with pytest.raises(ClientError) as excinfo:
        client.create_image(ImageName="life", RoleArn=role)
    assert error_code(excinfo) == "ResourceInUse"
    with pytest.raises(ClientError) as excinfo:
        client.describe_image_version(ImageName="life")
    assert error_code(excinfo) == "ResourceNotFound"
    for number in (1, 2):
        emulator.clock.advance(1)
        arn = client.create_image_version(
            ImageName="life", BaseImage=f"repo/img:{number}", JobType="TRAINING", Horovod=False
        )["ImageVersionArn"]
        assert arn == f"arn:aws:sagemaker:us-east-1:123456789012:image-version/life/{number}"
    latest = client.describe_image_version(ImageName="life")
    assert (latest["Version"], latest["BaseImage"]) == (2, "repo/img:2")
    assert latest["ContainerImage"].startswith("repo/img@sha256:")
    assert (latest["JobType"], latest["Horovod"]) == ("TRAINING", False)
    assert client.describe_image_version(ImageName="life", Version=1)["Version"] == 1
    client.delete_image_version(ImageName="life", Version=2)
    assert client.describe_image_version(ImageName="life")["Version"] == 1
    created = client.create_image_version(ImageName="life", BaseImage="repo/img:3")
    assert created["ImageVersionArn"].endswith("/life/3")  # numbers are never reused
    client.delete_image(ImageName="life")
    assert client.list_images()["Images"] == []
    assert emulator.live_versions() == []
    client.create_image(ImageName="life", RoleArn=role)
    assert client.create_image_version(ImageName="life", BaseImage="b")["ImageVersionArn"].endswith(
        "/life/1"
    )


def test_create_image_version_is_idempotent_per_client_token(client: Any) -> None:
    client.create_image(ImageName="idem", RoleArn="arn:aws:iam::123456789012:role/r")
    first = client.create_image_version(ImageName="idem", BaseImage="b", ClientToken="tok-1")
    again = client.create_image_version(ImageName="idem", BaseImage="b", ClientToken="tok-1")
    other = client.create_image_version(ImageName="idem", BaseImage="b", ClientToken="tok-2")
    assert first["ImageVersionArn"] == again["ImageVersionArn"]
    assert other["ImageVersionArn"].endswith("/idem/2")


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("create_image", {"ImageName": "x", "RoleArn": "not-an-arn-but-long-enough"}),
        ("create_image", {"ImageName": "x", "RoleArn": "arn:aws:iam::1:role/r" + "x" * 20}),
        ("describe_image_version", {"ImageName": "x", "Alias": ".hidden"}),
        ("delete_image_version", {"ImageName": "x"}),
        ("create_image_version", {"ImageName": "x", "BaseImage": "b", "Processor": "TPU"}),
        ("create_image_version", {"ImageName": "x", "BaseImage": "b", "Aliases": ["a:b"]}),
        ("update_image_version", {"ImageName": "x"}),
        ("list_aliases", {"ImageName": "x", "Alias": "-dash"}),
    ],
)
def test_invalid_write_requests(
    emulator: Emulator, client: Any, operation: str, params: dict[str, Any]
) -> None:
    emulator.create_image("x")
    with pytest.raises(ClientError) as excinfo:
        getattr(client, operation)(**params)
    assert error_code(excinfo) == "ValidationException"


def test_resource_limits(emulator: Emulator, client: Any) -> None:
    emulator.image_limit = 1
    emulator.version_limit = 1
    client.create_image(ImageName="one", RoleArn="arn:aws:iam::123456789012:role/r")
    client.create_image_version(ImageName="one", BaseImage="b")
    with pytest.raises(ClientError) as excinfo:
        client.create_image(ImageName="two", RoleArn="arn:aws:iam::123456789012:role/r")
    assert error_code(excinfo) == "ResourceLimitExceeded"
    with pytest.raises(ClientError) as excinfo:
        client.create_image_version(ImageName="one", BaseImage="b")
    assert error_code(excinfo) == "ResourceLimitExceeded"


# --- faults -------------------------------------------------------------------------------


def test_throttle_burst_is_retried_by_standard_mode(
    emulator: Emulator, connect: Connect, no_backoff: None
) -> None:
    client = connect(retries={"mode": "standard", "total_max_attempts": 3})
    emulator.faults.throttle_burst = 2
    response = client.list_images()
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert emulator.faults.throttle_burst == 0
    assert [operation for operation, _ in emulator.requests()] == ["ListImages"] * 3


def test_throttling_surfaces_without_retries(emulator: Emulator, connect: Connect) -> None:
    client = connect(retries={"total_max_attempts": 1})
    emulator.faults.throttle_burst = 1
    with pytest.raises(ClientError) as excinfo:
        client.list_images()
    assert error_code(excinfo) == "ThrottlingException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert client.list_images()["Images"] == []


def test_internal_failure_is_http_500(
    emulator: Emulator, connect: Connect, no_backoff: None
) -> None:
    emulator.faults.error_rate = 1.0
    with pytest.raises(ClientError) as excinfo:
        connect(retries={"total_max_attempts": 1}).list_images()
    assert error_code(excinfo) == "InternalFailure"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(ClientError) as excinfo:
        connect(retries={"mode": "standard", "total_max_attempts": 3}).list_images()
    assert excinfo.value.response["ResponseMetadata"]["RetryAttempts"] == 2


def test_rate_limit_is_a_token_bucket(emulator: Emulator, connect: Connect) -> None:
    client = connect(retries={"total_max_attempts": 1})
    emulator.faults.rate_limit_rps = 5

    def outcome() -> str:
        try:
            client.list_images()
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "ok"

    started = time.monotonic()
    outcomes = Counter(outcome() for _ in range(15))
    refilled = (time.monotonic() - started) * 5
    assert 5 <= outcomes["ok"] <= 5 + refilled + 1
    assert outcomes["ThrottlingException"] == 15 - outcomes["ok"]
    time.sleep(0.25)
    assert outcome() == "ok"


def test_latency_and_operation_scope(emulator: Emulator, connect: Connect) -> None:
    client = connect(retries={"total_max_attempts": 1})
    emulator.create_image("slow")
    emulator.faults = Faults(latency_s=0.2, throttle_burst=5, operations=frozenset({"ListImages"}))
    started = time.perf_counter()
    client.describe_image(ImageName="slow")
    assert time.perf_counter() - started < 0.2
    assert emulator.faults.throttle_burst == 5
    started = time.perf_counter()
    with pytest.raises(ClientError):
        client.list_images()
    assert time.perf_counter() - started >= 0.2
    assert emulator.faults.throttle_burst == 4


def test_random_faults_are_reproducible(emulator: Emulator, connect: Connect) -> None:
    client = connect(retries={"total_max_attempts": 1})

    def run() -> list[str]:
        emulator.faults = Faults(throttle_rate=0.3, error_rate=0.3, seed=11)
        outcomes = []
        for _ in range(20):
            try:
                client.list_images()
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(str(error.response["Error"]["Code"]))
        return outcomes

    first = run()
    assert first == run()
    assert set(first) == {"ok", "ThrottlingException", "InternalFailure"}


def test_request_log(emulator: Emulator, connect: Connect, server: EmulatorServer) -> None:
    client = connect(retries={"total_max_attempts": 1})
    emulator.faults.throttle_burst = 1
    with pytest.raises(ClientError):
        client.list_images()
    with pytest.raises(ClientError):
        client.describe_image(ImageName="bad_name")
    raw_call(server.url, "SageMaker.Nope", {"a": 1})
    client.list_images(MaxResults=3)
    assert emulator.requests() == [
        ("ListImages", {}),
        ("DescribeImage", {"ImageName": "bad_name"}),
        ("Nope", {"a": 1}),
        ("ListImages", {"MaxResults": 3}),
    ]
    emulator.clear_requests()
    assert emulator.requests() == []


# --- seeding and mutations ----------------------------------------------------------------


def snapshot(emulator: Emulator) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    images = emulator.call("ListImages", {"MaxResults": 100})["Images"]
    return images, emulator.live_versions()


def test_seed_catalogue_is_deterministic() -> None:
    first, second, other = (Emulator(clock=Clock(START)) for _ in range(3))
    seed_catalogue(first, seed=3)
    seed_catalogue(second, seed=3)
    seed_catalogue(other, seed=4)
    assert snapshot(first) == snapshot(second)
    assert snapshot(first) != snapshot(other)
    assert first.clock.now() == second.clock.now()


@pytest.mark.parametrize(("seed", "images"), [(0, 12), (1, 3), (2, 20)])
def test_seed_catalogue_shape(seed: int, images: int) -> None:
    emulator = Emulator(clock=Clock(START))
    seed_catalogue(emulator, seed=seed, images=images, region="eu-west-1")
    assert emulator.live_versions() == []
    names = emulator.image_names("eu-west-1")
    versions = emulator.live_versions("eu-west-1")
    tally = Counter(v["ImageName"] for v in versions)
    counts = sorted(tally[name] for name in names)
    assert len(names) == images
    assert counts[0] == 0
    assert counts[-1] >= 300
    assert all(1 <= count <= 8 for count in counts[1:-1])
    big = tally.most_common(1)[0][0]
    big_versions = [v for v in versions if v["ImageName"] == big]
    ties = Counter((v["CreationTime"], v["LastModifiedTime"]) for v in big_versions)
    assert max(ties.values()) >= 3
    numbers = [v["Version"] for v in big_versions]
    assert len(numbers) < max(numbers)  # some versions were deleted, numbers not reused
    statuses = Counter(v["ImageVersionStatus"] for v in versions)
    assert statuses["CREATED"] > len(versions) * 0.8
    assert statuses["CREATE_FAILED"] >= 1
    assert statuses["DELETE_FAILED"] == 1
    for version in versions:
        failed = version["ImageVersionStatus"].endswith("FAILED")
        assert ("FailureReason" in version) == failed
        assert version["LastModifiedTime"] >= version["CreationTime"] >= START
    assert any(v["LastModifiedTime"] > v["CreationTime"] for v in versions)
    span = max(v["CreationTime"] for v in versions) - min(v["CreationTime"] for v in versions)
    assert span > timedelta(weeks=2)


def test_seed_catalogue_names_are_realistic() -> None:
    emulator = Emulator(clock=Clock(START))
    seed_catalogue(emulator, seed=0, images=16)
    names = emulator.image_names()
    assert any("." in name and name != name.lower() for name in names)
    assert {"pytorch-2-3-gpu", "Custom.R-4.4"} <= set(names)
    with pytest.raises(ValueError, match="at least 3"):
        seed_catalogue(Emulator(), images=2)


def test_random_mutations(seeded: Emulator) -> None:
    twin = Emulator(clock=Clock(START))
    seed_catalogue(twin, seed=7)
    before = snapshot(seeded)
    started = seeded.clock.now()
    lines = random_mutations(seeded, random.Random(5), 60)
    assert lines == random_mutations(twin, random.Random(5), 60)
    assert snapshot(seeded) == snapshot(twin)
    assert len(lines) == 60
    assert snapshot(seeded) != before
    assert seeded.clock.now() > started
    kinds = " ".join(lines)
    for kind in ("created image", "-> ", "deleted ", "version"):
        assert kind in kinds
    statuses = {v["ImageVersionStatus"] for v in seeded.live_versions()}
    assert "CREATING" in statuses


# --- Python API and clock -----------------------------------------------------------------


def test_python_api(emulator: Emulator) -> None:
    image = emulator.create_image("api", display_name="API", description="desc")
    assert image["ImageArn"] == "arn:aws:sagemaker:us-east-1:123456789012:image/api"
    assert image["CreationTime"] == START
    version = emulator.create_image_version("api", status="CREATE_FAILED", failure_reason="boom")
    assert (version["Version"], version["FailureReason"]) == (1, "boom")
    emulator.clock.advance(60)
    updated = emulator.update_image_version("api", 1, status="CREATED")
    assert "FailureReason" not in updated
    assert updated["LastModifiedTime"] == START + timedelta(minutes=1)
    late = START - timedelta(days=1)
    stamped = emulator.update_image_version("api", 1, failure_reason="x", last_modified_time=late)
    assert (stamped["LastModifiedTime"], stamped["FailureReason"]) == (late, "x")
    [live] = emulator.live_versions()
    assert live["ImageName"] == "api"
    assert live["CreationTime"].tzinfo is not None
    emulator.delete_image_version("api", 1)
    assert emulator.live_versions() == []
    emulator.delete_image("api")
    assert emulator.image_names() == []
    with pytest.raises(ApiError) as excinfo:
        emulator.create_image_version("api")
    assert excinfo.value.code == "ResourceNotFound"
    emulator.create_image("ok")
    with pytest.raises(ApiError) as excinfo:
        emulator.create_image_version("ok", status="FINE")
    assert excinfo.value.code == "ValidationException"
    with pytest.raises(ApiError) as excinfo:
        emulator.create_image("OK")  # would share "ok"'s lowercased image-version ARNs
    assert excinfo.value.code == "ResourceInUse"


def test_emulator_defaults() -> None:
    emulator = Emulator(account_id="111122223333", region="eu-central-1")
    image = emulator.create_image("img")
    assert image["ImageArn"] == "arn:aws:sagemaker:eu-central-1:111122223333:image/img"
    assert emulator.image_names("eu-central-1") == ["img"]
    assert emulator.faults == Faults()
    assert abs(emulator.clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_frozen_clock() -> None:
    clock = Clock(START + timedelta(microseconds=123_456))
    assert clock.now() == START + 123 * MS
    clock.advance(0.0005)
    clock.advance(0.0005)
    assert clock.now() == START + 124 * MS
    clock.set(START)
    assert clock.now() == START
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_real_time_clock() -> None:
    clock = Clock()
    first = clock.now()
    assert first.tzinfo is not None and first.microsecond % 1000 == 0
    clock.advance(3600)
    assert clock.now() - first >= timedelta(hours=1)
    clock.set(START)
    time.sleep(0.01)
    assert clock.now() == START


def test_naive_datetimes_are_utc() -> None:
    clock = Clock(datetime(2024, 3, 1, 12, 0))
    assert clock.now() == START
    clock.set(datetime(2024, 3, 1, 13, 0))
    assert clock.now() == START + timedelta(hours=1)


# --- packaging ----------------------------------------------------------------------------


def test_serve_prints_its_url_and_stops_on_interrupt() -> None:
    script = "from pipeline.emulator import serve; serve(port=0, images=4)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        status, _, body = raw_call(url, "SageMaker.ListImages", {})
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert status == 200
    assert len(body["Images"]) == 4
    assert max(image["CreationTime"] for image in body["Images"]) < time.time()
    assert process.returncode == 0
    assert stderr == ""
