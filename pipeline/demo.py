"""`image-versions demo`: the product end to end against the bundled emulator, in a minute."""

from __future__ import annotations

import os
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from .config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from .emulator import Clock, Emulator, EmulatorServer, random_mutations, seed_catalogue
from .extract import SyncOptions, SyncReport, sync
from .output import print_table, summary_lines
from .storage import DataDir
from .warehouse import run_query

DEMO_IMAGES = 40
DEMO_REGION = "us-east-1"
DEMO_QUERY = (
    "SELECT image_name, count(*) AS versions, "
    "count(*) FILTER (WHERE status = 'CREATE_FAILED') AS failed, "
    "max(last_modified_time) AS last_change FROM image_versions "
    "GROUP BY image_name ORDER BY versions DESC, image_name LIMIT 8"
)


def _step(out: TextIO, title: str) -> None:
    out.write(f"\n== {title}\n")


def _report(out: TextIO, report: SyncReport) -> None:
    for line in summary_lines(report):
        out.write(line + "\n")
    if report.changes:
        rows = [(c.image_name, c.new, c.changed, c.deleted) for c in report.changes[:12]]
        print_table(["image", "new", "changed", "deleted"], rows, out)


def _deletions(emulator: Emulator) -> list[str]:
    """One deleted version (only a full listing sees it) and one deleted image."""
    versions = emulator.live_versions(DEMO_REGION)
    by_image: dict[str, list[int]] = {}
    for version in versions:
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


def run_demo(data_dir_flag: str | None, out: TextIO) -> int:
    """Seed an emulator, sync, change the catalogue, sync, reconcile, and query the result."""
    root = data_dir_flag or tempfile.mkdtemp(prefix="image-versions-demo-")
    data_dir = DataDir(Path(root))
    # The emulator ignores signatures; dummy keys keep real credentials out of the demo.
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo")
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    emulator = Emulator(clock=Clock(start=datetime(2026, 6, 1, tzinfo=UTC)))
    seed_catalogue(emulator, seed=7, images=DEMO_IMAGES, region=DEMO_REGION)
    with EmulatorServer(emulator) as server:
        source = SourceConfig("demo", regions=(DEMO_REGION,), endpoint_url=server.url)
        targets = build_targets(ProjectConfig(sources=(source,)), AccessSettings())
        out.write(f"emulator at {server.url}; data dir {data_dir.root}\n")

        _step(out, "1. first sync: the whole catalogue")
        _report(out, sync(data_dir, targets, SyncOptions()))

        _step(out, "2. the catalogue changes")
        for line in [
            *random_mutations(emulator, random.Random(7), 8, region=DEMO_REGION),
            *_deletions(emulator),
        ]:
            out.write(f"  - {line}\n")

        _step(out, "3. incremental sync: only what changed since the watermarks")
        second = sync(data_dir, targets, SyncOptions())
        _report(out, second)

        _step(out, "4. reconcile: full listings catch deleted versions")
        third = sync(data_dir, targets, SyncOptions(reconcile=True))
        _report(out, third)

    _step(out, f"5. query: {DEMO_QUERY}")
    result = run_query(data_dir, DEMO_QUERY)
    print_table(result.columns, result.rows, out)
    out.write(
        f"\nTry: image-versions query --data-dir {data_dir.root} "
        '"SELECT status, count(*) FROM image_versions GROUP BY 1"\n'
    )
    return 0 if second.ok and third.ok else 1
