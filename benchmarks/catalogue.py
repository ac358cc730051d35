"""Deterministic catalogues and changes, applied through the emulator's public Python API.

Versions are created round-robin over the images with the clock set before each one, so the
history spans `HISTORY_DAYS` with one timestamp per version, and consecutive versions of one
image lie far more than the sync's 10-minute lookback apart (as in a real catalogue).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.emulator import Emulator

REGION = "us-east-1"
PAGE_SIZE = 100
HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 360
BUILD_FAILURE_RATE = 0.08
BUILD_FAILURE = "Image size 31.2 GB exceeds the maximum of 30 GB."
NEXT_STATUS = {"CREATED": "DELETE_FAILED", "DELETE_FAILED": "CREATED", "CREATE_FAILED": "CREATED"}


@dataclass(frozen=True)
class CatalogueSpec:
    """How many images, and how many versions each."""

    images: int
    versions: int
    """Versions of an ordinary image: exact, or the mean when `spread`."""
    spread: bool = False
    """Draw ordinary images' counts uniformly from 1 .. 2 * versions - 1."""
    big_every: int = 0
    """Every `big_every`-th image (0: none) has `big_versions` versions: several pages."""
    big_versions: int = 0
    seed: int = 0

    def counts(self) -> list[int]:
        rng = random.Random(self.seed)
        return [
            self.big_versions
            if self.big_every and index % self.big_every == 0
            else (rng.randint(1, 2 * self.versions - 1) if self.spread else self.versions)
            for index in range(self.images)
        ]


def image_name(index: int) -> str:
    return f"bench-image-{index:05d}"


def fill(emulator: Emulator, spec: CatalogueSpec) -> list[int]:
    """Create the spec's images and versions; returns the version count of each image."""
    counts = spec.counts()
    emulator.image_limit = max(emulator.image_limit, spec.images)
    emulator.version_limit = max(emulator.version_limit, max(counts, default=0))
    emulator.clock.set(HISTORY_START - timedelta(days=1))
    for index in range(spec.images):
        emulator.create_image(image_name(index), region=REGION)
    rng = random.Random(spec.seed + 1)
    gap = timedelta(days=HISTORY_DAYS) / max(1, sum(counts))
    event = 0
    for round_ in range(max(counts, default=0)):
        for index, count in enumerate(counts):
            if count > round_:
                emulator.clock.set(HISTORY_START + event * gap)
                failed = rng.random() < BUILD_FAILURE_RATE
                emulator.create_image_version(
                    image_name(index),
                    region=REGION,
                    status="CREATE_FAILED" if failed else "CREATED",
                    failure_reason=BUILD_FAILURE if failed else None,
                )
                event += 1
    return counts


def change(emulator: Emulator, count: int, seed: int, advance_s: float) -> dict[str, int]:
    """Change `count` versions after `advance_s` seconds: half move status, half get a newer
    sibling version. Returns the number of changed or new versions per image."""
    rng = random.Random(seed)
    picked = rng.sample(emulator.live_versions(REGION), count)
    emulator.clock.advance(advance_s)
    changed: Counter[str] = Counter()
    for version in picked:
        emulator.clock.advance(1)
        name = version["ImageName"]
        if rng.random() < 0.5:
            emulator.update_image_version(
                name,
                version["Version"],
                region=REGION,
                status=NEXT_STATUS[version["ImageVersionStatus"]],
            )
        else:
            emulator.create_image_version(name, region=REGION)
        changed[name] += 1
    return dict(changed)


def pages(rows: int) -> int:
    """Calls to list `rows` rows at the maximum page size: at least one."""
    return max(1, math.ceil(rows / PAGE_SIZE))


def floor_calls(images: int, listed_per_image: dict[str, int]) -> dict[str, int]:
    """The fewest calls a sync can make: ListImages pages, then per image the pages of the
    versions it must list (one call for an image with nothing to list)."""
    return {
        "ListImages": pages(images),
        "ListImageVersions": sum(
            pages(listed_per_image.get(image_name(i), 0)) for i in range(images)
        ),
    }
