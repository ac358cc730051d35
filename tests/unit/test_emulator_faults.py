"""The emulator's rate limit on a virtual clock: the bucket's capacity and a steady neighbour
sharing it (no sockets, no sleeps: ``Faults.draw`` takes the time as an argument)."""

from __future__ import annotations

from collections import Counter

from pipeline.emulator import Faults

OP = "ListImageVersions"


def outcomes(faults: Faults, times: list[float]) -> Counter[str]:
    """What each request at those (monotonic, virtual) times got: "ok" or the error code."""
    result: Counter[str] = Counter()
    for now in times:
        error = faults.draw(OP, now)
        result["ok" if error is None else error.code] += 1
    return result


def evenly(rps: float, seconds: float, offset: float = 0.0) -> list[float]:
    return [offset + k / rps for k in range(round(rps * seconds))]


def test_default_bucket_holds_one_second_of_the_rate() -> None:
    faults = Faults(rate_limit_rps=20)
    assert outcomes(faults, [0.0] * 21) == {"ok": 20, "ThrottlingException": 1}


def test_capacity_one_allows_one_then_throttles() -> None:
    faults = Faults(rate_limit_rps=20, bucket_capacity=1)
    assert outcomes(faults, [0.0, 0.0, 0.01]) == {"ok": 1, "ThrottlingException": 2}
    assert outcomes(faults, [0.07, 0.07]) == {"ok": 1, "ThrottlingException": 1}
    # Evenly spaced at the rate, nothing is throttled.
    assert outcomes(faults, evenly(20, 5, offset=1.0)) == {"ok": 100}


def test_refill_starts_a_full_bucket() -> None:
    faults = Faults(rate_limit_rps=5)
    assert outcomes(faults, [0.0] * 6) == {"ok": 5, "ThrottlingException": 1}
    faults.refill()
    assert outcomes(faults, [0.1] * 5) == {"ok": 5}


def test_a_neighbour_at_8_of_20_leaves_12_a_second() -> None:
    faults = Faults(rate_limit_rps=20, neighbour_rps=8)
    assert outcomes(faults, evenly(12, 60, offset=0.01)) == {"ok": 720}
    assert faults.neighbour_throttled == 0
    assert faults.neighbour_attempts == 8 * 60  # the first at the bucket's start
    assert 59.8 < faults.neighbour_seconds <= 60.0


def test_taking_more_than_the_neighbour_leaves_throttles_someone() -> None:
    # 13 + 8 a second against 20: the bucket's 20 tokens drain at one a second.
    faults = Faults(rate_limit_rps=20, neighbour_rps=8)
    ours = outcomes(faults, evenly(13, 60, offset=0.01))
    throttled = ours["ThrottlingException"] + faults.neighbour_throttled
    assert 30 <= throttled <= 45
    taken = ours["ok"] + faults.neighbour_attempts - faults.neighbour_throttled
    assert taken <= 20 + 20 * 60


def test_neighbour_throttles_are_counted_when_we_take_every_token() -> None:
    faults = Faults(rate_limit_rps=20, neighbour_rps=8)
    ours = outcomes(faults, [k * 0.005 for k in range(2001)])  # 200 a second for 10 s
    assert faults.neighbour_attempts == 81  # at 0, 0.125, ..., 10.0
    assert faults.neighbour_throttled >= 20  # we empty the bucket before many of its turns
    neighbour_ok = faults.neighbour_attempts - faults.neighbour_throttled
    assert 20 * 10 <= ours["ok"] + neighbour_ok <= 20 + 20 * 10


def test_a_new_setting_starts_the_neighbour_again() -> None:
    faults = Faults(rate_limit_rps=20, neighbour_rps=8)
    outcomes(faults, [0.0, 1.0])
    assert faults.neighbour_attempts == 9
    faults.neighbour_rps = 15
    outcomes(faults, [2.0])
    assert (faults.neighbour_attempts, faults.neighbour_seconds) == (1, 0.0)


def test_without_a_limit_there_is_no_neighbour() -> None:
    faults = Faults(neighbour_rps=8)
    assert outcomes(faults, [0.0, 5.0]) == {"ok": 2}
    assert faults.neighbour_attempts == 0
