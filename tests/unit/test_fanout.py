"""`sync --processes N` (`pipeline.fanout`, `pipeline.shares`): how targets are shared out,
and how the children's summaries add up. tests/e2e/test_targets.py runs the children for real."""

from __future__ import annotations

import os

import pytest

from pipeline.defaults import PROCESS_PER_CORE_TARGETS
from pipeline.errors import ConfigError
from pipeline.fanout import (
    Handover,
    Shard,
    in_shard,
    merge_failures,
    merge_figures,
    plan_shards,
)
from pipeline.model import ImageState, account_key, target_key
from pipeline.run import SourceTarget
from pipeline.shares import default_processes, plan_by_cost
from pipeline.source import ClientSettings
from pipeline.state import save_state, save_target_account
from pipeline.storage import DataDir


def test_a_shard_is_written_index_slash_count() -> None:
    assert Shard.parse("0/3") == Shard(0, 3)
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("3/3", "-1/2", "1/0", "1", "a/b"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_every_target_belongs_to_exactly_one_shard_and_spreads_over_all() -> None:
    keys = [target_key(f"org-{account:03d}", region) for account in range(60) for region in "ab"]
    shards = [Shard(index, 4) for index in range(4)]
    owners = {key: [s.index for s in shards if in_shard(key, s)] for key in keys}
    assert all(len(found) == 1 for found in owners.values())
    sizes = [sum(found == [s.index] for found in owners.values()) for s in shards]
    assert min(sizes) >= len(keys) // 8, sizes  # a stable hash, not the first N to one child
    assert all(in_shard(key, None) for key in keys)  # no --shard: every target
    assert owners == {key: [s.index for s in shards if in_shard(key, s)] for key in keys}


def test_a_plan_deals_the_costliest_targets_first_each_to_the_least_loaded_shard() -> None:
    costs = {"big.r": 500.0, **{f"small-{i}.r": 50.0 for i in range(10)}}
    plan = plan_shards(costs, 2)
    loads = [sum(costs[key] for key, index in plan.items() if index == shard) for shard in (0, 1)]
    assert sorted(loads) == [500.0, 500.0]  # the large one alone; a hash split 550/450 or worse
    assert [key for key, index in plan.items() if index == plan["big.r"]] == ["big.r"]
    assert plan == plan_shards(dict(reversed(costs.items())), 2)  # every child plans alike


def test_a_planned_target_follows_its_plan_and_an_unknown_one_its_hash() -> None:
    keys = [target_key(f"org-{account:03d}", "r") for account in range(40)]
    hashed = {key: next(i for i in range(2) if in_shard(key, Shard(i, 2))) for key in keys}
    planned = {key: 1 - index for key, index in hashed.items() if key != keys[0]}
    for key in keys:
        owners = [i for i in range(2) if in_shard(key, Shard(i, 2, planned))]
        assert owners == [planned.get(key, hashed[key])]


def test_a_handover_read_from_a_child_s_standard_input_is_checked() -> None:
    account = {"Id": "111111111111", "State": "ACTIVE", "Arn": "arn:aws:organizations::1"}
    handover = Handover(
        {"a.r": 0, "b.r": 1}, {"org": [account], "gone": ConfigError("cannot list: denied")}
    )
    read = Handover.from_json(handover.to_json())
    assert read.plan == {"a.r": 0, "b.r": 1}
    assert read.accounts["org"] == [account]
    assert isinstance(read.accounts["gone"], ConfigError)
    assert str(read.accounts["gone"]) == "cannot list: denied"
    for bad in (
        "[1]",
        "not json",
        '{"plan": {"a.r": "0"}, "accounts": {}}',
        '{"plan": {"a.r": true}, "accounts": {}}',
        '{"plan": {}}',
        '{"plan": {}, "accounts": {"org": [1]}}',
        '{"plan": {}, "accounts": {"org": [{"State": "ACTIVE"}]}}',
        '{"plan": {}, "accounts": {"org": {"error": 1}}}',
    ):
        with pytest.raises(ValueError):
            Handover.from_json(bad)


def _known_target(data_dir: DataDir, source: str, account: str, images: int) -> str:
    """A target an earlier sync reached, its account's state holding `images` images."""
    key = target_key(source, "r")
    save_target_account(data_dir, key, account_key(account, "r"))
    names = [f"image-{i}" for i in range(images)]
    states = [ImageState(source, account, "r", name, f"arn:{name}") for name in names]
    save_state(data_dir, {state.key: state for state in states})
    return key


def test_the_plan_weighs_each_known_target_by_the_images_of_its_account(
    data_dir: DataDir,
) -> None:
    data_dir.prepare()
    big = _known_target(data_dir, "big", "111111111111", 30)
    small = [_known_target(data_dir, f"small{i}", f"22222222222{i}", 5) for i in range(6)]
    _known_target(data_dir, "other", "333333333333", 90)  # not a source of this sync
    plan = plan_by_cost(data_dir, {"big", *(f"small{i}" for i in range(6))}, 2)
    assert set(plan) == {big, *small}
    assert [key for key, index in plan.items() if index == plan[big]] == [big]


def test_a_process_per_core_once_the_sync_has_enough_targets(data_dir: DataDir) -> None:
    data_dir.prepare()
    cores = len(os.sched_getaffinity(0))
    targets = [SourceTarget(f"s{i}", ClientSettings("r")) for i in range(PROCESS_PER_CORE_TARGETS)]

    def processes(of: list[SourceTarget]) -> int:
        return default_processes(data_dir, of, {})

    assert processes(targets[:-1]) == 1
    assert processes(targets) == cores  # none synced yet: each is a target all the same
    for target in targets[:-1]:
        save_target_account(data_dir, target.key, account_key("1" * 12, "r"))
    save_target_account(data_dir, target_key("elsewhere", "r"), account_key("1" * 12, "r"))
    assert processes(targets[:-1]) == 1  # a target of another source is not the sync's
    assert processes(targets) == cores


def test_the_childrens_summaries_add_up_to_one() -> None:
    merged = merge_figures(
        [
            {
                "ok": True,
                "failures": [],
                "images": 3,
                "api_calls": 10,
                "seconds": 2.5,
                "watermark_min": "2026-01-02",
                "watermark_max": "2026-03-01",
                "reconciled": False,
            },
            {
                "ok": False,
                "failures": ["x"],
                "images": 4,
                "api_calls": 7,
                "seconds": 4.0,
                "watermark_min": "2026-01-01",
                "watermark_max": None,
                "reconciled": True,
            },
            {"images": 0, "seconds": 0.1, "watermark_min": None, "watermark_max": "2026-02-01"},
        ]
    )
    assert merged == {
        "images": 7,
        "api_calls": 17,
        "seconds": 4.0,  # the children ran side by side: the wall time is the longest
        "watermark_min": "2026-01-01",
        "watermark_max": "2026-03-01",
        "reconciled": True,
    }


def test_a_failure_that_every_child_reports_is_listed_and_counted_once() -> None:
    unlisted = "org/r: cannot list the organization's accounts: AccessDenied"
    summaries = [
        {"failed": 2, "failures": [unlisted, "a/r: image x: broken"]},
        {"failed": 2, "failures": [unlisted, "b/r: image y: broken"]},
        {"failed": 0, "failures": []},
    ]
    failures = merge_failures(summaries)
    assert failures == [unlisted, "a/r: image x: broken", "b/r: image y: broken"]
    assert merge_figures(summaries)["failed"] == len(failures)
