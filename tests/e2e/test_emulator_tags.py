"""The emulator's tags: ListTags, AddTags, DeleteTags and CreateImage's Tags, through boto3
and raw requests, against the botocore model."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.emulator import EmulatorServer
from tests.support import assert_conforms, error_code, raw_call

ROLE = "arn:aws:iam::123456789012:role/r"


def every_tag(client: Any, arn: str, page_size: int) -> dict[str, str]:
    pages = client.get_paginator("list_tags").paginate(
        ResourceArn=arn, PaginationConfig={"PageSize": page_size}
    )
    return {tag["Key"]: tag["Value"] for page in pages for tag in page["Tags"]}


def test_images_and_versions_carry_their_own_tags(server: EmulatorServer, client: Any) -> None:
    image_arn = client.create_image(
        ImageName="Img.A", RoleArn=ROLE, Tags=[{"Key": "team", "Value": "nlp"}]
    )["ImageArn"]
    version_arn = client.create_image_version(
        ImageName="Img.A", BaseImage="repo/img:1", ClientToken="t1"
    )["ImageVersionArn"]
    assert version_arn.endswith(":image-version/img.a/1")
    assert client.list_tags(ResourceArn=image_arn)["Tags"] == [{"Key": "team", "Value": "nlp"}]
    assert client.list_tags(ResourceArn=version_arn)["Tags"] == []
    added = client.add_tags(ResourceArn=version_arn, Tags=[{"Key": "stage", "Value": ""}])
    assert added["Tags"] == [{"Key": "stage", "Value": ""}]
    client.add_tags(ResourceArn=image_arn, Tags=[{"Key": "team", "Value": "vision"}])
    assert every_tag(client, image_arn, 50) == {"team": "vision"}
    assert every_tag(client, version_arn, 50) == {"stage": ""}
    stamp = client.describe_image(ImageName="Img.A")["LastModifiedTime"]
    client.delete_tags(ResourceArn=image_arn, TagKeys=["team", "absent"])
    assert every_tag(client, image_arn, 50) == {}
    assert client.describe_image(ImageName="Img.A")["LastModifiedTime"] == stamp  # no stamp
    client.delete_image(ImageName="Img.A")
    with pytest.raises(ClientError) as gone:
        client.list_tags(ResourceArn=image_arn)
    assert error_code(gone) == "ResourceNotFound"


def test_list_tags_pages_and_answers_as_the_model_says(server: EmulatorServer, client: Any) -> None:
    arn = client.create_image(ImageName="img", RoleArn=ROLE)["ImageArn"]
    tags = {f"k{n:02d}": f"v{n}" for n in range(50)}
    client.add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    assert every_tag(client, arn, 50) == tags
    status, _, first = raw_call(server.url, "SageMaker.ListTags", {"ResourceArn": arn})
    assert status == 200 and len(first["Tags"]) == 50 and "NextToken" not in first
    client.delete_tags(ResourceArn=arn, TagKeys=["k00"])
    client.add_tags(ResourceArn=arn, Tags=[{"Key": "zz", "Value": "last"}])
    model = client.meta.service_model.operation_model("ListTags").output_shape
    for body in (first, client.list_tags(ResourceArn=arn, MaxResults=100)):
        body.pop("ResponseMetadata", None)
        assert_conforms(model, body)


def test_tags_are_validated_like_the_model(server: EmulatorServer, client: Any) -> None:
    arn = client.create_image(ImageName="img", RoleArn=ROLE)["ImageArn"]
    client.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{n}", "Value": "v"} for n in range(50)])
    with pytest.raises(ClientError) as full:
        client.add_tags(ResourceArn=arn, Tags=[{"Key": "one-more", "Value": "v"}])
    assert error_code(full) == "ResourceLimitExceeded"
    invalid: list[dict[str, Any]] = [
        {"ResourceArn": arn, "MaxResults": 10},
        {"ResourceArn": "not-an-arn"},
        {"ResourceArn": arn, "NextToken": "forged.token"},
    ]
    for body in invalid:
        status, _, answer = raw_call(server.url, "SageMaker.ListTags", body)
        assert (status, answer["__type"]) == (400, "ValidationException"), body
    for tags in ([{"Key": "", "Value": "v"}], [{"Key": "k", "Value": "x" * 257}], [{"Key": "k"}]):
        status, _, answer = raw_call(
            server.url, "SageMaker.AddTags", {"ResourceArn": arn, "Tags": tags}
        )
        assert (status, answer["__type"]) == (400, "ValidationException"), tags
    status, _, answer = raw_call(
        server.url,
        "SageMaker.ListTags",
        {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:image-version/img/9"},
    )
    assert (status, answer["__type"]) == (400, "ResourceNotFound")
