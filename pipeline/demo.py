"""The demo's story, end to end against the bundled emulator, whatever runs the syncs.

`image-versions demo` runs each sync through the Dagster job (assets/demo.py supplies that
runner); the story itself, the catalogue and its changes, lives here.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .emulator import Clock, Emulator, EmulatorServer, random_mutations, seed_catalogue
from .render import print_table, summary_line
from .run import SyncOptions
from .storage import DataDir
from .warehouse import run_query

__all__ = ["SyncOutcome", "SyncRunner", "run_demo"]

DEMO_IMAGES = 40
DEMO_REGION = "us-east-1"
DEMO_QUERY = (
    "SELECT image_name, count(*) AS versions, "
    "count(*) FILTER (WHERE status = 'CREATE_FAILED') AS failed, "
    "max(last_modified_time) AS last_change FROM image_versions "
    "GROUP BY image_name ORDER BY versions DESC, image_name LIMIT 8"
)
TEAMS_QUERY = (
    "SELECT coalesce(d.tags['team'], i.tags['team'], '(untagged)') AS team, "
    "count(*) AS versions FROM image_versions AS v "
    "JOIN images AS i USING (account_id, region, image_name) "
    "LEFT JOIN image_version_details AS d USING (account_id, region, image_name, version) "
    "GROUP BY team ORDER BY versions DESC, team"
)
"""Versions per team tag (docs/enrichment.md): the version's own tag, else its image's."""
CHANGES_SHOWN = 12


@dataclass(frozen=True)
class SyncOutcome:
    """What the demo shows of one sync."""

    figures: Mapping[str, Any]
    """The `report_metadata` figures."""
    changes: Sequence[tuple[str, int, int, int]]
    """(image, new, changed, deleted) for each image that changed."""
    failures: Sequence[str]
    failed_builds: Sequence[str] = ()
    """A line for each version (the first few) that entered CREATE_FAILED or DELETE_FAILED in
    this sync, as the failed-builds check lists them."""
    failed_count: int = 0


SyncRunner = Callable[[SyncOptions], SyncOutcome]
"""Runs one sync of the demo's sources file into the demo's data dir."""


def _step(out: TextIO, title: str) -> None:
    out.write(f"\n== {title}\n")


def _show(out: TextIO, outcome: SyncOutcome) -> None:
    out.write(summary_line(outcome.figures) + "\n")
    for failure in outcome.failures:
        out.write(f"FAILED {failure}\n")
    out.write(f"{outcome.failed_count} version(s) entered a failed status\n")
    for line in outcome.failed_builds[:CHANGES_SHOWN]:
        out.write(f"  ! {line}\n")
    if outcome.changes:
        print_table(["image", "new", "changed", "deleted"], outcome.changes[:CHANGES_SHOWN], out)
        if len(outcome.changes) > CHANGES_SHOWN:
            out.write(f"(and {len(outcome.changes) - CHANGES_SHOWN} more images)\n")


def _deletions(emulator: Emulator) -> list[str]:
    """One deleted version (only a full listing sees it) and one deleted image."""
    by_image: dict[str, list[int]] = {}
    for version in emulator.live_versions(DEMO_REGION):
        by_image.setdefault(version["ImageName"], []).append(version["Version"])
    largest = max(by_image, key=lambda name: len(by_image[name]))
    smallest = min((n for n in by_image if n != largest), key=lambda n: (len(by_image[n]), n))
    doomed = sorted(by_image[largest])[1]
    emulator.delete_image_version(largest, doomed, region=DEMO_REGION)
    emulator.delete_image(smallest, region=DEMO_REGION)
    return [
        f"deleted {largest} version {doomed}",
        f"deleted image {smallest} and its {len(by_image[smallest])} version(s)",
    ]


def run_demo(
    data_dir_flag: str | None,
    out: TextIO,
    make_runner: Callable[[Path, DataDir], SyncRunner],
) -> int:
    """Seed an emulator, sync, change the catalogue, sync, reconcile, and query the result.

    `make_runner(sources_file, data_dir)` gives the function that runs each sync.
    """
    workspace = Path(tempfile.mkdtemp(prefix="image-versions-demo-"))
    data_dir = DataDir(Path(data_dir_flag) if data_dir_flag else workspace / "data")
    # The emulator ignores signatures; dummy keys keep real credentials out of the demo.
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    emulator = Emulator(clock=Clock(start=datetime(2026, 6, 1, tzinfo=UTC)))
    seed_catalogue(emulator, seed=7, images=DEMO_IMAGES, region=DEMO_REGION)
    with EmulatorServer(emulator) as server:
        sources = workspace / "image-versions.toml"
        sources.write_text(
            f'[sources.demo]\nregions = ["{DEMO_REGION}"]\nendpoint_url = "{server.url}"\n'
        )
        run = make_runner(sources, data_dir)
        out.write(f"emulator at {server.url}; data dir {data_dir.root}\n")

        _step(out, "1. first sync: the whole catalogue")
        first = run(SyncOptions())
        _show(out, first)

        _step(out, "2. the catalogue changes")
        changes = random_mutations(emulator, random.Random(7), 8, region=DEMO_REGION)
        for line in [*changes, *_deletions(emulator)]:
            out.write(f"  - {line}\n")

        _step(out, "3. incremental sync, with tags: what changed, and image roles and tags")
        second = run(SyncOptions(tags=True))
        _show(out, second)

        _step(out, "4. reconcile, with tags: deleted versions, and every version's tags")
        third = run(SyncOptions(reconcile=True, tags=True))
        _show(out, third)

    _step(out, f"5. query: {DEMO_QUERY}")
    result = run_query(data_dir, DEMO_QUERY)
    print_table(result.columns, result.rows, out)
    out.write(f"\nversions per team tag: {TEAMS_QUERY}\n")
    teams = run_query(data_dir, TEAMS_QUERY)
    print_table(teams.columns, teams.rows, out)
    out.write(
        f"\nTry: image-versions query --data-dir {data_dir.root} "
        '"SELECT status, count(*) FROM image_versions GROUP BY 1"\n'
    )
    return 0 if not (first.failures or second.failures or third.failures) else 1
