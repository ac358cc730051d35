"""The incremental engine without HTTP: which images a target lists, from which watermark, and
how what a listing returns changes the state, sync after sync."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline.decisions import (
    advance_state,
    classify,
    deleted_image_state,
    listing_start_ms,
    on_or_after,
    plan_images,
    versions_with_moved_aliases,
)
from pipeline.model import ImageState, Row

ACCOUNT, REGION, SOURCE = "012345678901", "us-east-1", "prod"
T0 = 1_772_323_200_000  # 2026-03-01, ms
MINUTE = 60_000
LOOKBACK = 5 * MINUTE


def _arn(name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:image/{name}"


def _image(name: str) -> Row:
    """A catalogue row (ListImages), as far as planning reads it."""
    return {"account_id": ACCOUNT, "region": REGION, "image_name": name, "image_arn": _arn(name)}


def _state(name: str, **fields: Any) -> ImageState:
    return replace(ImageState(SOURCE, ACCOUNT, REGION, name, _arn(name)), **fields)


def _version(name: str, version: int, modified: int, observed: int, **fields: Any) -> Row:
    return {
        "account_id": ACCOUNT,
        "region": REGION,
        "image_name": name,
        "version": version,
        "image_arn": _arn(name),
        "image_version_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:image-version/{name}/{version}",
        "status": "CREATED",
        "failure_reason": None,
        "creation_time": T0,
        "last_modified_time": modified,
        "is_deleted": False,
        "observed_at": observed,
    } | fields


def _plan(**arguments: Any) -> Any:
    defaults: dict[str, Any] = {
        "failed": (),
        "complete": True,
        "known": {},
        "wanted": None,
        "stored": None,
    }
    catalogue = arguments.pop("catalogue")
    failed = arguments.pop("failed", defaults.pop("failed"))
    return plan_images(catalogue, failed, source=SOURCE, **(defaults | arguments))


def test_a_new_image_is_listed_from_nothing_and_a_known_one_from_its_state() -> None:
    known = {"old": _state("old", watermark_ms=T0, max_version=3)}
    plan = _plan(catalogue=[_image("new"), _image("old")], known=known)
    assert plan.to_list == [_state("new"), known["old"]]
    starts = [listing_start_ms(state, LOOKBACK, full_listing=False) for state in plan.to_list]
    assert starts == [None, T0 - LOOKBACK]
    assert (plan.gone, plan.unknown) == ([], [])


def test_an_image_back_after_its_deletion_starts_from_nothing() -> None:
    deleted = _state("back", watermark_ms=T0, max_version=3, is_deleted=True)
    plan = _plan(catalogue=[_image("back")], known={"back": deleted})
    assert plan.to_list == [_state("back")]


def test_a_known_image_absent_from_a_complete_catalogue_is_gone() -> None:
    known = {"kept": _state("kept"), "dropped": _state("dropped")}
    known["tombstoned"] = _state("tombstoned", is_deleted=True)
    plan = _plan(catalogue=[_image("kept")], known=known)
    assert plan.gone == [known["dropped"]]  # one already deleted is not deleted again


def test_nothing_is_gone_when_the_catalogue_is_incomplete() -> None:
    plan = _plan(catalogue=[], known={"dropped": _state("dropped")}, complete=False)
    assert (plan.to_list, plan.gone) == ([], [])


def test_an_image_whose_record_failed_is_neither_listed_nor_gone() -> None:
    known = {"broken": _state("broken")}
    plan = _plan(catalogue=[_image("broken")], failed={"broken"}, known=known)
    assert (plan.to_list, plan.gone, plan.unknown) == ([], [], [])


def test_only_wanted_images_are_planned_and_unknown_wanted_names_reported() -> None:
    known = {"a": _state("a"), "b": _state("b")}
    plan = _plan(catalogue=[_image("a"), _image("c")], known=known, wanted={"a", "b", "nope"})
    assert plan.to_list == [known["a"]]
    assert plan.gone == [known["b"]]  # wanted and absent; "c" is not wanted
    assert plan.unknown == ["nope"]


def test_a_full_listing_tombstones_stored_images_nothing_accounts_for() -> None:
    stored = {
        "listed": {1: _version("listed", 1, T0, T0)},
        "orphan": {1: _version("orphan", 1, T0, T0), 2: _version("orphan", 2, T0, T0)},
        "emptied": {},
    }
    plan = _plan(catalogue=[_image("listed")], stored=stored)
    assert plan.gone == [_state("orphan")]
    incomplete = _plan(catalogue=[_image("listed")], stored=stored, complete=False)
    assert incomplete.gone == []


def test_two_syncs_of_one_image_from_listing_to_state_and_back_to_the_next_listing() -> None:
    """Absorbing a listing: the rows to write, the new watermark and window; the next
    listing starts there, and a re-read row inside the window is not written again."""
    (state,) = _plan(catalogue=[_image("img")]).to_list
    first_seen = T0 + 60 * MINUTE
    listed = [_version("img", 1, T0, first_seen), _version("img", 2, T0 + MINUTE, first_seen)]
    classified = classify(listed, state, None, observed_at_ms=first_seen)
    assert (classified.new, classified.changed, classified.to_write) == (2, 0, listed)
    state = advance_state(
        state, listed, lookback_ms=LOOKBACK, full_listing=False, synced_at_ms=first_seen
    )
    assert (state.watermark_ms, state.max_version) == (T0 + MINUTE, 2)
    assert set(state.window) == {1, 2}  # both stamps are within the lookback of the watermark

    start = listing_start_ms(state, LOOKBACK, full_listing=False)
    assert start == T0 + MINUTE - LOOKBACK
    second_seen = first_seen + 60 * MINUTE
    relisted = [
        _version("img", 2, T0 + MINUTE, second_seen),  # re-read: unchanged
        _version("img", 3, T0 + 2 * MINUTE, second_seen),
    ]
    classified = classify(on_or_after(relisted, start), state, None, observed_at_ms=second_seen)
    assert (classified.new, classified.changed) == (1, 0)
    assert classified.to_write == [relisted[1]]
    state = advance_state(
        state, relisted, lookback_ms=LOOKBACK, full_listing=False, synced_at_ms=second_seen
    )
    assert (state.watermark_ms, state.max_version, state.last_synced_ms) == (
        T0 + 2 * MINUTE,
        3,
        second_seen,
    )


def test_a_gone_image_is_tombstoned_and_its_state_reset() -> None:
    stored = {1: _version("img", 1, T0, T0)}
    state = _state("img", watermark_ms=T0, max_version=1, window={1: (T0, "digest")})
    classified = classify([], state, stored, observed_at_ms=T0 + MINUTE)
    assert classified.deleted == 1
    assert classified.to_write == [stored[1] | {"is_deleted": True, "observed_at": T0 + MINUTE}]
    deleted = deleted_image_state(state, synced_at_ms=T0 + MINUTE)
    assert (deleted.is_deleted, deleted.window, deleted.last_synced_ms) == (True, {}, T0 + MINUTE)
    assert listing_start_ms(deleted, LOOKBACK, full_listing=False) is None


def test_versions_whose_aliases_moved_are_both_ends_of_each_move() -> None:
    stored = {1: frozenset({"stable"}), 2: frozenset(), 3: frozenset({"beta"})}
    assert versions_with_moved_aliases({"stable": 1, "beta": 3}, stored) == set()
    assert versions_with_moved_aliases({"stable": 2, "beta": 3}, stored) == {1, 2}
    assert versions_with_moved_aliases({"stable": 1}, stored) == {3}  # beta deleted
    assert versions_with_moved_aliases({"stable": 1, "beta": 3, "rc": 4}, stored) == {4}
