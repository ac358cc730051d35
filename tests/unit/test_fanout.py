"""`sync --processes N` (`pipeline.fanout`): how targets are shared out, and how the children's
summaries add up. tests/e2e/test_targets.py runs the children for real."""

from __future__ import annotations

import pytest

from pipeline.fanout import Shard, in_shard, merge_figures
from pipeline.model import target_key


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
