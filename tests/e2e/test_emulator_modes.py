"""The emulator's `Modes`, each the other answer to a question AWS leaves open, exercised by
unmodified boto3 over real HTTP; every answer still conforms to the botocore model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.emulator import Clock, Emulator, EmulatorServer, Modes
from tests.support import assert_conforms, error_code, raw_call

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=Clock(START))


@pytest.fixture
def server(emulator: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as running:
        yield running


def numbers(client: Any, name: str, **params: Any) -> list[int]:
    listed = client.list_image_versions(ImageName=name, **params)["ImageVersions"]
    return sorted(v["Version"] for v in listed)


def statuses(client: Any, name: str) -> dict[int, str]:
    listed = client.list_image_versions(ImageName=name)["ImageVersions"]
    return {v["Version"]: v["ImageVersionStatus"] for v in listed}


def test_every_mode_is_off_by_default() -> None:
    assert Modes() == Emulator().modes
    assert Modes().describe() == "defaults"
    assert "whole_second_filters=True" in Modes.all_on().describe()


def test_whole_second_filters_floor_every_time_bound(emulator: Emulator, client: Any) -> None:
    emulator.create_image("edge")
    emulator.clock.advance(0.2)
    emulator.create_image_version("edge")  # 1 @ .200
    emulator.clock.advance(0.5)
    emulator.create_image_version("edge")  # 2 @ .700
    after = START + 500 * MS
    assert numbers(client, "edge", LastModifiedTimeAfter=after) == [2]
    emulator.modes.whole_second_filters = True
    assert numbers(client, "edge", LastModifiedTimeAfter=after) == [1, 2]
    assert numbers(client, "edge", CreationTimeBefore=START + 900 * MS) == []


def test_filtered_pages_come_short_or_empty_with_a_token(
    emulator: Emulator, server: EmulatorServer, client: Any
) -> None:
    emulator.create_image("paged")
    for _ in range(25):
        emulator.clock.advance(1)
        emulator.create_image_version("paged")
    emulator.modes.filtered_scan_pages = True
    after = START + timedelta(seconds=20)
    pages = list(
        client.get_paginator("list_image_versions").paginate(
            ImageName="paged",
            LastModifiedTimeAfter=after,
            SortBy="LAST_MODIFIED_TIME",
            SortOrder="ASCENDING",
            PaginationConfig={"PageSize": 10},
        )
    )
    sizes = [len(page["ImageVersions"]) for page in pages]
    assert sizes == [0, 1, 5]  # scanned 1-10, 11-20 (20 matches), then 21-25
    assert all("NextToken" in page for page in pages[:-1])
    listed = [v["Version"] for page in pages for v in page["ImageVersions"]]
    assert listed == list(range(20, 26))
    # Without a filter, pages stay full.
    unfiltered = client.list_image_versions(ImageName="paged", MaxResults=10)
    assert len(unfiltered["ImageVersions"]) == 10
    emulator.create_image("other")
    images = client.list_images(NameContains="OTHER", MaxResults=1, SortBy="IMAGE_NAME")
    assert images["Images"] == [] and "NextToken" in images
    model = client.meta.service_model.operation_model("ListImageVersions").output_shape
    status, _, body = raw_call(
        server.url,
        "SageMaker.ListImageVersions",
        {
            "ImageName": "paged",
            "LastModifiedTimeAfter": after.timestamp(),
            "MaxResults": 3,
            "SortOrder": "ASCENDING",
        },
    )
    assert status == 200 and body["ImageVersions"] == [] and body["NextToken"]
    assert_conforms(model, body)


def test_creating_lasts_then_created_stamped_at_the_change(emulator: Emulator, client: Any) -> None:
    emulator.modes.creating_s = 60
    emulator.create_image("slow")
    arn = client.create_image_version(ImageName="slow", BaseImage="x.dkr.ecr/slow:1")
    assert arn["ImageVersionArn"].endswith("/1")
    assert statuses(client, "slow") == {1: "CREATING"}
    emulator.clock.advance(59.999)
    assert statuses(client, "slow") == {1: "CREATING"}
    emulator.clock.advance(0.001)
    described = client.describe_image_version(ImageName="slow", Version=1)
    assert described["ImageVersionStatus"] == "CREATED"
    assert described["LastModifiedTime"] == START + timedelta(seconds=60)
    emulator.modes.transitions_stamp = False
    emulator.create_image_version("slow")
    emulator.clock.advance(61)
    version = client.describe_image_version(ImageName="slow", Version=2)
    assert version["ImageVersionStatus"] == "CREATED"
    assert version["LastModifiedTime"] == version["CreationTime"]


def test_deleting_lasts_while_listed_then_gone_or_failed(
    emulator: Emulator, server: EmulatorServer, client: Any
) -> None:
    emulator.create_image("going")
    for _ in range(3):
        emulator.create_image_version("going")
    emulator.modes.deleting_s = 30
    emulator.clock.advance(1)
    client.delete_image_version(ImageName="going", Version=1)
    emulator.delete_image_version("going", 2)
    assert statuses(client, "going") == {1: "DELETING", 2: "DELETING", 3: "CREATED"}
    assert client.describe_image_version(ImageName="going", Version=1)[
        "LastModifiedTime"
    ] == START + timedelta(seconds=1)
    emulator.clock.advance(30)
    assert statuses(client, "going") == {3: "CREATED"}
    with pytest.raises(ClientError) as excinfo:
        client.describe_image_version(ImageName="going", Version=1)
    assert error_code(excinfo) == "ResourceNotFound"
    emulator.modes.delete_failure_rate = 1.0
    client.delete_image_version(ImageName="going", Version=3)
    emulator.clock.advance(30)
    failed = client.list_image_versions(ImageName="going")["ImageVersions"]
    assert [(v["ImageVersionStatus"], bool(v.get("FailureReason"))) for v in failed] == [
        ("DELETE_FAILED", True)
    ]
    model = client.meta.service_model.operation_model("ListImageVersions").output_shape
    _, _, body = raw_call(server.url, "SageMaker.ListImageVersions", {"ImageName": "going"})
    assert_conforms(model, body)


def test_an_explicit_status_change_overrides_a_pending_one(emulator: Emulator, client: Any) -> None:
    emulator.modes.creating_s = 10
    emulator.create_image("racy")
    emulator.create_image_version("racy")
    emulator.update_image_version("racy", 1, status="CREATE_FAILED", failure_reason="broken")
    emulator.clock.advance(11)
    assert statuses(client, "racy") == {1: "CREATE_FAILED"}


def test_deleting_a_creating_version_deletes_it_and_a_second_delete_changes_nothing(
    emulator: Emulator, client: Any
) -> None:
    emulator.modes = Modes(creating_s=60, deleting_s=10)
    emulator.create_image("brief")
    emulator.create_image_version("brief")
    emulator.clock.advance(1)
    client.delete_image_version(ImageName="brief", Version=1)
    emulator.clock.advance(5)
    client.delete_image_version(ImageName="brief", Version=1)  # still due at 11 s
    assert statuses(client, "brief") == {1: "DELETING"}
    emulator.clock.advance(5)
    assert statuses(client, "brief") == {}


def test_names_are_found_in_any_case_only_in_that_mode(emulator: Emulator, client: Any) -> None:
    emulator.create_image("Team.Vision-GPU")
    emulator.create_image_version("Team.Vision-GPU")
    with pytest.raises(ClientError) as excinfo:
        client.list_image_versions(ImageName="team.vision-gpu")
    assert error_code(excinfo) == "ResourceNotFound"
    emulator.modes.case_insensitive_names = True
    listed = client.list_image_versions(ImageName="team.vision-gpu")["ImageVersions"]
    assert [v["ImageArn"].rsplit("/", 1)[1] for v in listed] == ["Team.Vision-GPU"]
    assert listed[0]["ImageVersionArn"].endswith("image-version/team.vision-gpu/1")
    assert client.describe_image(ImageName="TEAM.VISION-GPU")["ImageName"] == "Team.Vision-GPU"


def test_archived_versions_drop_out_of_listings_but_still_describe(
    emulator: Emulator, client: Any
) -> None:
    emulator.create_image("old")
    for _ in range(2):
        emulator.create_image_version("old")
    client.update_image_version(ImageName="old", Version=1, VendorGuidance="ARCHIVED")
    assert numbers(client, "old") == [1, 2]
    emulator.modes.archived_unlisted = True
    assert numbers(client, "old") == [2]
    described = client.describe_image_version(ImageName="old", Version=1)
    assert described["VendorGuidance"] == "ARCHIVED"
    assert [v["Version"] for v in emulator.live_versions()] == [1, 2]
