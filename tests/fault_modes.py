"""The fault matrix's row for what AWS leaves open: every emulator `Modes` switch on at once
(whole-second filters, short or empty pages with a token, CREATING and DELETING that last and
sometimes fail, names found in any case, archived versions unlisted), against real
`image-versions` processes syncing with roles and tags. See docs/aws-behaviour.md.

Each trial mutates the catalogue (new versions start CREATING, deletions go through DELETING),
archives a few versions, runs a plain sync, lets some creates and deletes settle, and scores
the data after a reconcile: 0 rows lost, 0 states stored twice (plain syncs included).
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.emulator import Modes
from tests.fault_harness import Harness, Row, harness
from tests.support import REGION


def _archive_and_delete(h: Harness, listed: set[tuple[str, int]]) -> None:
    """Archive or delete four versions (deletes go DELETING, then gone or DELETE_FAILED).

    Only versions a sync has listed are archived: one archived before any listing shows it is
    never stored, a documented limit (docs/aws-behaviour.md#archived-versions)."""
    versions = [
        v
        for v in h.emulator.live_versions(REGION)
        if v["ImageVersionStatus"] != "DELETING" and (v["ImageName"], v["Version"]) in listed
    ]
    for victim in h.rng.sample(versions, min(4, len(versions))):
        h.emulator.clock.advance(h.rng.uniform(0.001, 2))
        name, number = victim["ImageName"], victim["Version"]
        if h.rng.random() < 0.5:
            h.emulator.update_image_version(
                name, number, region=REGION, details={"VendorGuidance": "ARCHIVED"}
            )
        else:
            h.emulator.delete_image_version(name, number, region=REGION)


def open_behaviours(trials: int) -> Row:
    """Every open question answered the other way at once."""
    results = []
    with harness(14) as h:
        h.emulator.modes = Modes.all_on(creating_s=20, deleting_s=20)
        h.seed(images=10)
        h.sync("--tags")  # roles and tags too: DescribeImage and ListTags under every mode
        for _ in range(trials):
            listed = {(v["ImageName"], v["Version"]) for v in h.emulator.live_versions(REGION)}
            h.mutate(6)
            _archive_and_delete(h, listed)
            plain = h.sync("--tags")
            h.emulator.clock.advance(h.rng.uniform(0, 30))
            reconcile = h.sync("--reconcile", "--tags")
            note = f"plain sync exit {plain.code}"
            results.append(h.trial(reconcile, note=note))
        row = Row("open AWS behaviours the other way (all emulator modes)", results)
        row.details["modes"] = h.emulator.modes.describe()
    return row


MODES_MATRIX: list[tuple[str, Callable[[int], Row], int, int]] = [
    # key, factory, quick trials, full trials
    ("aws_modes", open_behaviours, 2, 10),
]
