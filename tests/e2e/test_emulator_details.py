"""The emulator's image version details and aliases: DescribeImageVersion, ListAliases,
UpdateImageVersion and the alias members of CreateImageVersion, against the botocore model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError

from pipeline.emulator import Emulator, EmulatorServer, seed_catalogue
from tests.support import assert_conforms, error_code, raw_call

ROLE = "arn:aws:iam::123456789012:role/r"
DETAILS = {
    "VendorGuidance": "TO_BE_ARCHIVED",
    "JobType": "INFERENCE",
    "MLFramework": "PyTorch 2.3.1",
    "ProgrammingLang": "Python 3.11",
    "Processor": "GPU",
    "Horovod": True,
    "ReleaseNotes": "CUDA 12.1, cuDNN 8.9",
}


def make_client(server: EmulatorServer, **config: Any) -> Any:
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(**config),
    )


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[Any]:
    made = make_client(server)
    yield made
    made.close()


@pytest.fixture
def aliased(client: Any) -> dict[int, list[str]]:
    """Image `img` with versions 1-3 and their aliases (version 3 has none)."""
    aliases = {1: ["1.0", "stable"], 2: ["1.1", "beta", "latest"], 3: []}
    client.create_image(ImageName="img", RoleArn=ROLE)
    for number, names in aliases.items():
        client.create_image_version(ImageName="img", BaseImage=f"repo/img:{number}", Aliases=names)
    return aliases


def all_aliases(client: Any, page_size: int, **params: Any) -> list[str]:
    pages = client.get_paginator("list_aliases").paginate(
        ImageName="img", PaginationConfig={"PageSize": page_size}, **params
    )
    return [alias for page in pages for alias in page["SageMakerImageVersionAliases"]]


def test_describe_image_version_returns_every_member_of_the_model(
    server: EmulatorServer, client: Any
) -> None:
    client.create_image(ImageName="full", RoleArn=ROLE)
    client.create_image_version(
        ImageName="full", BaseImage="1.dkr.ecr.us-east-1.amazonaws.com/full:1", **DETAILS
    )
    server.emulator.update_image_version("full", 1, status="DELETE_FAILED", failure_reason="used")
    shape = client.meta.service_model.operation_model("DescribeImageVersion").output_shape
    status, _, body = raw_call(server.url, "SageMaker.DescribeImageVersion", {"ImageName": "full"})
    assert status == 200
    assert_conforms(shape, body)
    assert set(body) == set(shape.members)
    assert {key: body[key] for key in DETAILS} == DETAILS
    assert body["BaseImage"] == "1.dkr.ecr.us-east-1.amazonaws.com/full:1"
    assert body["ContainerImage"].startswith("1.dkr.ecr.us-east-1.amazonaws.com/full@sha256:")


def test_list_aliases_pages_through_an_image_or_one_version(
    server: EmulatorServer, client: Any, aliased: dict[int, list[str]]
) -> None:
    everything = [alias for number in sorted(aliased) for alias in sorted(aliased[number])]
    for page_size in (1, 2, 100):
        assert all_aliases(client, page_size) == everything
    assert all_aliases(client, 2, Version=2) == ["1.1", "beta", "latest"]
    assert all_aliases(client, 1, Alias="stable") == ["1.0", "stable"]
    assert all_aliases(client, 1, Version=3) == []
    first = client.list_aliases(ImageName="img")
    assert first["SageMakerImageVersionAliases"] == everything  # default page of 10
    assert "NextToken" not in first
    model = client.meta.service_model.operation_model("ListAliases").output_shape
    status, _, body = raw_call(
        server.url, "SageMaker.ListAliases", {"ImageName": "img", "MaxResults": 2}
    )
    assert status == 200 and "NextToken" in body
    assert_conforms(model, body)


def test_list_aliases_validates_like_the_model(
    server: EmulatorServer, client: Any, aliased: dict[int, list[str]]
) -> None:
    token = client.list_aliases(ImageName="img", MaxResults=1)["NextToken"]
    invalid: list[dict[str, Any]] = [
        {"ImageName": "img", "MaxResults": 101},
        {"ImageName": "img", "Version": 1, "Alias": "stable"},
        {"ImageName": "img", "Version": 2, "NextToken": token},  # another request's token
        {"ImageName": "img", "NextToken": token[:-4] + "AAAA"},  # tampered
        {"ImageName": "bad_name"},
    ]
    for params in invalid:
        with pytest.raises(ClientError) as excinfo:
            client.list_aliases(**params)
        assert error_code(excinfo) == "ValidationException", params
    with pytest.raises(ParamValidationError):  # botocore itself requires ImageName
        client.list_aliases()
    unvalidated = make_client(server, parameter_validation=False)
    for params in ({"ImageName": "img", "MaxResults": 0}, {"ImageName": "img", "Version": -1}):
        with pytest.raises(ClientError) as excinfo:
            unvalidated.list_aliases(**params)
        assert error_code(excinfo) == "ValidationException"
    unvalidated.close()
    status, _, body = raw_call(server.url, "SageMaker.ListAliases", {})
    assert (status, body["__type"]) == (400, "ValidationException")
    for params in (
        {"ImageName": "missing"},
        {"ImageName": "img", "Version": 9},
        {"ImageName": "img", "Alias": "unknown"},
    ):
        with pytest.raises(client.exceptions.ResourceNotFound):
            client.list_aliases(**params)


def test_an_alias_names_one_version_of_its_image(
    server: EmulatorServer, client: Any, aliased: dict[int, list[str]]
) -> None:
    emulator = server.emulator
    assert client.describe_image_version(ImageName="img", Alias="beta")["Version"] == 2
    with pytest.raises(ClientError) as excinfo:
        client.create_image_version(ImageName="img", BaseImage="b", Aliases=["stable"])
    assert error_code(excinfo) == "ResourceInUse"
    with pytest.raises(ClientError) as excinfo:
        client.update_image_version(ImageName="img", Version=3, AliasesToAdd=["beta"])
    assert error_code(excinfo) == "ResourceInUse"
    with pytest.raises(ClientError) as excinfo:
        client.update_image_version(ImageName="img", Version=3, AliasesToDelete=["beta"])
    assert error_code(excinfo) == "ResourceNotFound"
    with pytest.raises(ClientError) as excinfo:
        client.update_image_version(
            ImageName="img", Version=3, AliasesToAdd=["x"], AliasesToDelete=["x"]
        )
    assert error_code(excinfo) == "ValidationException"
    other = "arn:aws:iam::123456789012:role/r"
    client.create_image(ImageName="other", RoleArn=other)
    client.create_image_version(ImageName="other", BaseImage="b", Aliases=["stable"])  # per image
    assert emulator.call("ListAliases", {"ImageName": "other"})["SageMakerImageVersionAliases"] == [
        "stable"
    ]
    client.delete_image_version(ImageName="img", Alias="stable")
    assert [v["Version"] for v in emulator.live_versions() if v["ImageName"] == "img"] == [2, 3]
    client.create_image_version(ImageName="img", BaseImage="b", Aliases=["stable"])  # freed


def test_update_image_version_changes_details_and_aliases_and_stamps_the_version(
    server: EmulatorServer, client: Any, aliased: dict[int, list[str]]
) -> None:
    emulator = server.emulator
    created = client.describe_image_version(ImageName="img", Version=2)
    emulator.clock.advance(90)
    arn = client.update_image_version(
        ImageName="img",
        Alias="latest",
        AliasesToAdd=["2.0"],
        AliasesToDelete=["beta"],
        JobType="TRAINING",
        Horovod=False,
    )["ImageVersionArn"]
    assert arn.endswith("image-version/img/2")
    updated = client.describe_image_version(ImageName="img", Version=2)
    assert updated["LastModifiedTime"] == emulator.clock.now()
    assert updated["LastModifiedTime"] > created["LastModifiedTime"]
    assert updated["CreationTime"] == created["CreationTime"]
    assert (updated["JobType"], updated["Horovod"]) == ("TRAINING", False)
    assert all_aliases(client, 2, Version=2) == ["1.1", "2.0", "latest"]
    model = client.meta.service_model.operation_model("UpdateImageVersion").output_shape
    status, _, body = raw_call(
        server.url, "SageMaker.UpdateImageVersion", {"ImageName": "img", "Version": 3}
    )
    assert status == 200
    assert_conforms(model, body)
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.update_image_version(ImageName="img", Version=7, JobType="TRAINING")


def test_the_python_api_sets_details_and_aliases(emulator: Emulator) -> None:
    emulator.create_image("py")
    emulator.create_image_version("py", details=DETAILS, aliases=["one"])
    before = emulator.call("DescribeImageVersion", {"ImageName": "py", "Alias": "one"})
    assert {key: before[key] for key in DETAILS} == DETAILS
    emulator.clock.advance(5)
    emulator.update_image_version(
        "py", 1, details={"Processor": "CPU"}, aliases_to_add=["two"], aliases_to_delete=["one"]
    )
    after = emulator.call("DescribeImageVersion", {"ImageName": "py", "Version": 1})
    assert after["Processor"] == "CPU" and after["JobType"] == "INFERENCE"
    assert after["LastModifiedTime"] > before["LastModifiedTime"]
    assert emulator.call("ListAliases", {"ImageName": "py"})["SageMakerImageVersionAliases"] == [
        "two"
    ]
    with pytest.raises(ValueError, match="Colour"):
        emulator.create_image_version("py", details={"Colour": "blue"})


def test_the_seeded_catalogue_has_details_and_aliases(server: EmulatorServer, client: Any) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=3, images=6)
    model = client.meta.service_model
    versions = emulator.live_versions()
    assert len(versions) > 300
    for version in versions[:: len(versions) // 25]:
        key = {"ImageName": version["ImageName"], "Version": version["Version"]}
        described = emulator.call("DescribeImageVersion", key)
        assert_conforms(model.operation_model("DescribeImageVersion").output_shape, described)
        assert {"JobType", "Processor", "ProgrammingLang", "ReleaseNotes"} <= set(described)
        # Seeding sets aliases without moving LastModifiedTime off what ListImageVersions says.
        assert described["LastModifiedTime"] == version["LastModifiedTime"].timestamp()
        aliases = emulator.call("ListAliases", key)["SageMakerImageVersionAliases"]
        assert aliases == [f"v{version['Version']}"]


def test_update_image_changes_the_role_and_clears_properties(
    server: EmulatorServer, client: Any
) -> None:
    client.create_image(ImageName="img", RoleArn=ROLE, DisplayName="Img", Description="about")
    before = client.describe_image(ImageName="img")
    other = "arn:aws:iam::123456789012:role/other"
    server.emulator.clock.advance(5)
    answer = client.update_image(ImageName="img", RoleArn=other, DeleteProperties=["DisplayName"])
    assert answer["ImageArn"] == before["ImageArn"]
    after = client.describe_image(ImageName="img")
    assert (after["RoleArn"], after["Description"]) == (other, "about")
    assert "DisplayName" not in after and after["LastModifiedTime"] > before["LastModifiedTime"]
    status, _, body = raw_call(
        server.url,
        "SageMaker.UpdateImage",
        {"ImageName": "img", "DeleteProperties": ["RoleArn"]},
    )
    assert (status, body["__type"]) == (400, "ValidationException")
