"""RATE's table: the issue's targets for the product, the yardsticks as information.

Each row's note says whether the condition was really met: the throttles the emulator counted,
the rate the side achieved against the limit, the neighbour's achieved rate, the accounts that
were served, so that no row can pass by never reaching the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .harness import INFO, Row, median, medians, seconds_text, verdict

SIDE_NAMES = {
    "product": "product",
    "standard": "botocore standard",
    "adaptive": "botocore adaptive",
}
LIMIT_FACTOR = 1.15
THROTTLED_SHARE = 0.02
FIRST_SYNC_ALLOWANCE = 6
"""A first sync may spend this many throttled attempts finding the limit (or 2%)."""
RANDOM_FACTOR = 1.5
NEIGHBOUR_FACTOR = 1.3
NEIGHBOUR_SHARE = 0.03


def _share(part: float, whole: float) -> float:
    return part / max(1.0, whole)


def _common(m: dict[str, float]) -> str:
    """What every row's note says of its run: throttles, failures, the process."""
    own = f", the sync counted {m['own_throttled']:.0f}" if m.get("own_throttled") else ""
    other = f"; {m['other_errors']:.0f} other errors" if m["other_errors"] else ""
    return (
        f"throttled {_share(m['throttled'], m['calls']):.1%} ({m['throttled']:.0f} of "
        f"{m['calls']:.0f} calls, the emulator's count{own}){other}; {m['failed']:.0f} failed "
        f"images; calls span {seconds_text(m['span'])} at the emulator; process wall "
        f"{seconds_text(m['wall'])}; 1-min load {m['load_before']:.1f}"
    )


def _cells(runs: Sequence[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, float]]]:
    """(step, side, the medians of that side's figures at that step) in the table's order."""
    for step in runs[0]["steps"]:
        for side in SIDE_NAMES:
            yield step, side, medians([run["steps"][step][side] for run in runs])


def _row(
    variant: str,
    side: str,
    m: dict[str, float],
    ratio: str,
    target: str,
    ok: bool,
    note: str,
    *,
    judged: bool = True,
) -> Row:
    """A row of one side: the product's is judged (unless not `judged`: a reference), a
    yardstick's is information."""
    product = judged and side == "product"
    return Row(
        "RATE",
        f"{variant} / {SIDE_NAMES[side]}",
        seconds_text(m["seconds"]),
        ratio,
        target if product else "-",
        verdict(ok) if product else INFO,
        note,
    )


def limit_rows(label: str, rps: float, runs: Sequence[dict[str, Any]]) -> list[Row]:
    """Per step and side: seconds against calls / L, and the throttled share."""
    rows = []
    for step, side, m in _cells(runs):
        floor = m["calls"] / rps
        ratio = m["seconds"] / floor
        first = step == "first"
        allowed = THROTTLED_SHARE * m["calls"]
        allowed = max(allowed, FIRST_SYNC_ALLOWANCE) if first else allowed
        ok = ratio <= LIMIT_FACTOR and m["throttled"] <= allowed and m["failed"] == 0
        target = f"<= {LIMIT_FACTOR}x; throttled <= " + (
            f"max(2%, {FIRST_SYNC_ALLOWANCE})" if first else "2%"
        )
        note = (
            f"{m['calls'] / m['seconds']:.1f} calls/s against {rps:g}; calls/L "
            f"{seconds_text(floor)}; span {m['span'] / floor:.2f}x calls/L; {_common(m)}"
        )
        rows.append(_row(f"{label}: {step}", side, m, f"{ratio:.2f}x calls/L", target, ok, note))
    return rows


def random_rows(repeats: Sequence[dict[str, dict[str, Any]]]) -> list[Row]:
    """Per throttled share and side: seconds as a ratio to the same side's 0% run."""
    reference = next(iter(repeats[0]))
    rows = []
    for share in repeats[0]:
        for side in SIDE_NAMES:
            m = medians([repeat[share][side] for repeat in repeats])
            ratio = median(
                [
                    repeat[share][side]["seconds"] / repeat[reference][side]["seconds"]
                    for repeat in repeats
                ]
            )
            judged = share != reference
            note = (
                f"{_share(m['throttled'], m['attempts']):.1%} of {m['attempts']:.0f} attempts "
                f"throttled (set: {share}); {_common(m)}"
            )
            rows.append(
                _row(
                    f"random throttles {share}: first",
                    side,
                    m,
                    f"{ratio:.2f}x the 0% run" if judged else "reference",
                    f"<= {RANDOM_FACTOR}x the 0% run",
                    ratio <= RANDOM_FACTOR and m["failed"] == 0,
                    note,
                    judged=judged,
                )
            )
    return rows


def neighbour_rows(
    label: str, rps: float, neighbour_rps: float, runs: Sequence[dict[str, Any]]
) -> list[Row]:
    """Per step and side: the neighbour's throttled share and ours, and our seconds against
    our calls / what the neighbour leaves."""
    ours = rps - neighbour_rps
    rows = []
    for step, side, m in _cells(runs):
        floor = m["calls"] / ours
        ratio = m["seconds"] / floor
        theirs = _share(m["neighbour_throttled"], m["neighbour_attempts"])
        share = _share(m["throttled"], m["calls"])
        ok = ratio <= NEIGHBOUR_FACTOR and max(share, theirs) <= NEIGHBOUR_SHARE
        note = (
            f"neighbour throttled {theirs:.1%} ({m['neighbour_throttled']:.0f} of its "
            f"{m['neighbour_attempts']:.0f} requests over "
            f"{seconds_text(m['neighbour_seconds'])}); ours {m['calls'] / m['seconds']:.1f} "
            f"calls/s; fair floor {seconds_text(floor)} = calls / {ours:g}, span "
            f"{m['span'] / floor:.2f}x; {_common(m)}"
        )
        rows.append(
            _row(
                f"{label}: {step}",
                side,
                m,
                f"{ratio:.2f}x fair floor",
                f"<= {NEIGHBOUR_FACTOR}x; both throttled <= 3%",
                ok and m["failed"] == 0,
                note,
            )
        )
    return rows


def org_rows(rps: float, runs: Sequence[dict[str, Any]]) -> list[Row]:
    """Per step and side: the worst account's throttled share."""
    accounts = runs[0]["accounts"]
    rows = []
    for step, side, m in _cells(runs):
        worst = m["worst_account_share"]
        slowest = m["slowest_account_calls"] / rps
        note = (
            f"{m['accounts_served']:.0f} of {accounts} accounts served; "
            f"{m['seconds'] / slowest:.2f}x the slowest account's calls/L "
            f"({seconds_text(slowest)}); CPU {m['cpu_seconds']:.1f} s; {_common(m)}"
        )
        rows.append(
            _row(
                f"{accounts} accounts x {rps:g}/s: {step}",
                side,
                m,
                f"{worst:.1%} worst account",
                "<= 2% throttled in every account",
                worst <= THROTTLED_SHARE and m["failed"] == 0,
                note,
            )
        )
    return rows


def setup_row(raw: dict[str, Any], repeats: int) -> Row:
    limits = "; ".join(
        f"{label}: {runs[0]['images']} images, {runs[0]['full_calls']} calls a full sync"
        for label, runs in {**raw["limits"], **raw["neighbours"]}.items()
    )
    random = raw["random"][0]["0%"]["product"]
    org = raw["organization"][0]
    return Row(
        "RATE",
        "set-up",
        f"{raw['latency_s'] * 1000:.0f} ms a call",
        "-",
        "-",
        INFO,
        f"default settings, whole processes; {limits}; random throttles: "
        f"{random['calls']} calls a full sync; {org['accounts']} accounts x {org['images']} "
        f"images ({min(org['full_calls'])}-{max(org['full_calls'])} calls a full sync, "
        f"organization made in {org['organization_seconds']:.1f} s); median of {repeats}; "
        "seconds are each run's own (start-up left out)",
    )
