"""The extractor under the other answer to each question AWS leaves open (docs/aws-behaviour.md):
real syncs through unmodified boto3 against the emulator with one of its `Modes` on. Each ends
with the data equal to the source after a reconcile, and no state stored twice."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.emulator import Emulator, EmulatorServer, Modes, random_mutations, seed_catalogue
from pipeline.storage import DataDir
from tests.support import assert_converged, history_duplicates, run_sync


def image_with_versions(emulator: Emulator, name: str, versions: int) -> None:
    emulator.create_image(name)
    for _ in range(versions):
        emulator.create_image_version(name)


def test_whole_second_filters_store_no_state_twice(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """botocore before its mid-2026 change sends LastModifiedTimeAfter as whole seconds: the
    listing re-reads rows stamped up to a second before the window, which must not be taken
    for changes."""
    emulator = server.emulator
    emulator.modes.whole_second_filters = True
    emulator.clock.advance(0.1)
    emulator.create_image("edge")
    emulator.create_image_version("edge")  # stamped .100
    emulator.clock.advance(600.5)  # the default lookback, and half a second
    emulator.create_image_version("edge")  # stamped .600: the window starts at .600
    assert run_sync(data_dir, server).ok
    emulator.clock.advance(1)
    report = run_sync(data_dir, server)
    assert report.ok, report.failures
    assert (report.new, report.changed, report.rows_written) == (0, 0, 0)
    assert history_duplicates(data_dir) == 0
    assert_converged(data_dir, emulator)


def test_whole_second_filters_through_mutations_and_ties(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    emulator.modes.whole_second_filters = True
    seed_catalogue(emulator, seed=5, images=6)
    rng = random.Random(5)
    run_sync(data_dir, server, lookback_minutes=3 / 60)
    for _ in range(5):
        random_mutations(emulator, rng, 8)
        emulator.clock.advance(rng.uniform(0.001, 2))
        assert run_sync(data_dir, server, lookback_minutes=3 / 60).ok
        assert history_duplicates(data_dir) == 0
    assert run_sync(data_dir, server, reconcile=True).ok
    assert_converged(data_dir, emulator)


def test_short_and_empty_pages_with_a_token_lose_and_repeat_nothing(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=6, images=6)
    emulator.modes.filtered_scan_pages = True
    rng = random.Random(6)
    assert run_sync(data_dir, server).ok
    for _ in range(3):
        random_mutations(emulator, rng, 8)
        emulator.clock.advance(30)
        emulator.clear_requests()
        assert run_sync(data_dir, server).ok
        assert history_duplicates(data_dir) == 0
        paged = [
            p for op, p in emulator.requests() if op == "ListImageVersions" and "NextToken" in p
        ]
        assert paged, "the incremental listings of the big images went on past empty pages"
    assert run_sync(data_dir, server, reconcile=True).ok
    assert_converged(data_dir, emulator)


def mutate_slowly(emulator: Emulator, rng: random.Random) -> None:
    """Creates and deletes that take their time (CREATING, DELETING), and status changes."""
    names = emulator.image_names()
    for _ in range(6):
        emulator.clock.advance(rng.uniform(0.001, 20))
        versions = emulator.live_versions()
        kind = rng.choice(["create", "create", "delete", "status"])
        if kind == "create":
            emulator.create_image_version(rng.choice(names))
        elif kind == "delete" and versions:
            victim = rng.choice(versions)
            emulator.delete_image_version(victim["ImageName"], victim["Version"])
        elif versions:
            victim = rng.choice(versions)
            emulator.update_image_version(victim["ImageName"], victim["Version"])


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "unstamped"])
def test_creating_and_deleting_that_last_converge_after_a_reconcile(
    server: EmulatorServer, data_dir: DataDir, stamped: bool
) -> None:
    emulator = server.emulator
    seed_catalogue(emulator, seed=7, images=5)
    emulator.modes = Modes(
        creating_s=45, deleting_s=45, delete_failure_rate=0.3, transitions_stamp=stamped
    )
    rng = random.Random(7)
    assert run_sync(data_dir, server).ok
    seen = set()
    for _ in range(6):
        mutate_slowly(emulator, rng)
        seen |= {v["ImageVersionStatus"] for v in emulator.live_versions()}
        assert run_sync(data_dir, server).ok
        assert history_duplicates(data_dir) == 0
    assert {"CREATING", "DELETING"} <= seen
    assert run_sync(data_dir, server, reconcile=True).ok
    assert_converged(data_dir, emulator)
    emulator.clock.advance(60)  # every create and delete settles, some deletes failed
    assert run_sync(data_dir, server, reconcile=True).ok
    assert_converged(data_dir, emulator)
    statuses = {v["ImageVersionStatus"] for v in emulator.live_versions()}
    assert "DELETE_FAILED" in statuses and not statuses & {"CREATING", "DELETING"}


def test_names_found_in_any_case_keep_each_image_apart(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """A lookup that ignores case can answer for another image: one deleted and re-created
    in another case between ListImages and its ListImageVersions."""
    emulator = server.emulator
    emulator.modes.case_insensitive_names = True
    for name in ("Team.Vision-GPU", "speech"):
        image_with_versions(emulator, name, 3)
    assert run_sync(data_dir, server).ok

    def recreate(operation: str, params: dict[str, Any]) -> None:
        if operation == "ListImageVersions" and params["ImageName"] == "Team.Vision-GPU":
            emulator.before_request = None
            emulator.delete_image("Team.Vision-GPU")
            image_with_versions(emulator, "team.vision-gpu", 1)

    emulator.clock.advance(5)
    emulator.before_request = recreate
    run_sync(data_dir, server)
    assert emulator.before_request is None, "the image was re-created mid-sync"
    assert history_duplicates(data_dir) == 0
    emulator.clock.advance(5)
    assert run_sync(data_dir, server).ok
    assert run_sync(data_dir, server, reconcile=True).ok
    assert_converged(data_dir, emulator)


def test_archived_versions_that_drop_out_of_listings_are_kept_not_tombstoned(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    emulator.modes.archived_unlisted = True
    image_with_versions(emulator, "old", 4)
    assert run_sync(data_dir, server).ok
    emulator.clock.advance(5)
    emulator.update_image_version("old", 1, details={"VendorGuidance": "ARCHIVED"})
    emulator.update_image_version("old", 2, details={"VendorGuidance": "ARCHIVED"})
    emulator.delete_image_version("old", 3)
    assert run_sync(data_dir, server).ok
    report = run_sync(data_dir, server, reconcile=True)
    assert report.ok, report.failures
    assert report.deleted == 1  # version 3 alone
    assert_converged(data_dir, emulator)
    emulator.clear_requests()
    again = run_sync(data_dir, server, reconcile=True)
    assert (again.new, again.changed, again.deleted, again.rows_written) == (0, 0, 0, 0)
    described = [p for op, p in emulator.requests() if op == "DescribeImageVersion"]
    assert sorted(p["Version"] for p in described) == [1, 2]  # one call per archived version
    assert_converged(data_dir, emulator)
