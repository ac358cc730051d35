"""The whole-dataset checks (`pipeline.quality`) on small real data dirs: each passes on a
healthy one and names what is wrong on a damaged one."""

from __future__ import annotations

from datetime import timedelta

from pipeline import quality
from pipeline.model import account_key
from pipeline.schema import from_ms, rows_to_table
from pipeline.state import keep_previous_state, save_state
from pipeline.storage import DataDir
from pipeline.warehouse import refresh_views
from tests.datasets import ACCOUNT, IMAGE, T0_MS, image_state, synced, version_rows
from tests.support import REGION


def test_the_checks_pass_on_a_healthy_data_dir(data_dir: DataDir) -> None:
    synced(data_dir, version_rows([1, 2, 3]))
    for check in quality.DAMAGE_CHECKS:
        outcome = check(data_dir)
        assert outcome.passed, (check.__name__, outcome)


def test_a_state_stored_twice_is_named_with_its_account_and_region(data_dir: DataDir) -> None:
    """Invariant 14: the views hide the copy; the check finds it in the stored rows."""
    rows = version_rows([1, 2])
    synced(data_dir, rows)
    synced(data_dir, rows)
    outcome = quality.states_stored_once(data_dir)
    assert not outcome.passed
    (example,) = outcome.details["examples"]
    assert example.startswith(f"{ACCOUNT}/{REGION}: 2 copies")


def test_two_states_of_a_version_at_one_instant_are_ambiguous(data_dir: DataDir) -> None:
    synced(data_dir, version_rows([1]) + version_rows([1], status="CREATE_FAILED"))
    outcome = quality.no_duplicate_live_versions(data_dir)
    assert not outcome.passed
    assert outcome.details["examples"] == [f"{ACCOUNT}/{REGION}/{IMAGE} v1: 2 states"]


def test_states_at_one_instant_that_the_rule_of_latest_tells_apart_are_not_ambiguous(
    data_dir: DataDir,
) -> None:
    """Observed at one instant, the state the API modified last is the latest (LATEST_FIRST),
    as the views take it: the check follows the same rule."""
    (row,) = version_rows([1])
    later = {**row, "status": "CREATE_FAILED", "last_modified_time": row["last_modified_time"] + 5}
    synced(data_dir, [row, later])
    assert quality.no_duplicate_live_versions(data_dir).passed


def test_an_arn_naming_another_image_breaks_the_api_model(data_dir: DataDir) -> None:
    synced(data_dir, version_rows([1]))
    (planted,) = version_rows([2])
    planted["image_arn"] = planted["image_arn"].replace(IMAGE, "other-image")
    data_dir.write_versions(rows_to_table([planted]))  # past version_row, which refuses it
    outcome = quality.values_match_the_api_model(data_dir)
    assert not outcome.passed
    (example,) = outcome.details["examples"]
    assert example.startswith(f"{IMAGE} v2:") and "other-image" in example


def test_a_watermark_that_went_back_is_named(data_dir: DataDir) -> None:
    synced(data_dir, version_rows([1]))
    key = account_key(ACCOUNT, REGION)
    state = image_state(watermark_ms=T0_MS + 500)
    save_state(data_dir, {state.key: state})
    keep_previous_state(data_dir, key)
    state.watermark_ms = T0_MS + 800
    save_state(data_dir, {state.key: state})
    assert quality.watermarks_never_decrease(data_dir).passed

    keep_previous_state(data_dir, key)
    state.watermark_ms = T0_MS + 100
    save_state(data_dir, {state.key: state})
    outcome = quality.watermarks_never_decrease(data_dir)
    assert not outcome.passed
    (example,) = outcome.details["examples"]
    assert example.startswith(f"{ACCOUNT}/{REGION}/{IMAGE}: ")


def test_a_source_is_stale_once_its_last_sync_is_older_than_allowed(data_dir: DataDir) -> None:
    synced_at = T0_MS + 2000
    synced(data_dir, version_rows([1]), synced_at_ms=synced_at)
    now = from_ms(synced_at) + timedelta(hours=2)
    assert quality.sources_are_fresh(data_dir, timedelta(hours=3), now=now).passed
    stale = quality.sources_are_fresh(data_dir, timedelta(hours=1), now=now)
    assert not stale.passed and stale.details["stale"][0].startswith(f"lab/{REGION}: ")


def test_checks_that_read_the_views_fail_clearly_before_the_first_sync(
    data_dir: DataDir,
) -> None:
    data_dir.prepare()
    for outcome in (
        quality.values_match_the_api_model(data_dir),
        quality.states_stored_once(data_dir),
        quality.sources_are_fresh(data_dir, timedelta(hours=1)),
    ):
        assert not outcome.passed and outcome.description.startswith("no warehouse yet")
    refresh_views(data_dir)
    assert quality.sources_are_fresh(data_dir, timedelta(hours=1)).description == (
        "no source has been synced yet"
    )
