"""The API calls that roles and tags (`tags`) cost, against enrichment alone and neither.

`python -m benchmarks.tags_cost [--images N] [--out FILE]` (not in `run`): the emulator's
seeded catalogue (`seed_catalogue`, N images, default 50; its owner and team tags), each
variant synced into a data dir of its own: a first sync, a no-change sync, a sync after one
image tag and one version tag changed (no stamp moves), and a reconcile. Prints calls per
operation and per image and version, and writes them as JSON. Only the emulator on 127.0.0.1
is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.emulator import Clock, Emulator, EmulatorServer, seed_catalogue
from pipeline.extract import sync
from pipeline.run import SyncOptions
from pipeline.storage import DataDir

REGION = "us-east-1"
START = datetime(2026, 1, 1, tzinfo=UTC)
"""The emulator's frozen clock: the seeded history ends months before a sync runs, so
watermarks move as against a real account (a stamp ahead of the sync's clock never does)."""
VARIANTS = {"off": {}, "enrich": {"enrich": True}, "tags": {"tags": True}}
STEPS = ("first", "no change", "tags changed", "reconcile")


def _sync(server: EmulatorServer, data_dir: DataDir, **options: Any) -> Counter[str]:
    server.emulator.clear_requests()
    source = SourceConfig("default", (REGION,), endpoint_url=server.url)
    targets = build_targets(ProjectConfig(sources=(source,)), AccessSettings())
    report = sync(data_dir, targets, SyncOptions(**options))
    if not report.ok:
        raise SystemExit(f"sync failed: {report.failures}")
    return Counter(op for op, _ in server.emulator.requests())


def measure(images: int) -> dict[str, Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "benchmark")
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    results: dict[str, Any] = {"images": images}
    with tempfile.TemporaryDirectory() as scratch:
        for variant, options in VARIANTS.items():
            with EmulatorServer(Emulator(clock=Clock(start=START))) as server:
                emulator = server.emulator
                seed_catalogue(emulator, seed=7, images=images, region=REGION)
                results["versions"] = len(emulator.live_versions(REGION))
                data_dir = DataDir.at(str(Path(scratch) / variant))
                steps = {"first": _sync(server, data_dir, **options)}
                steps["no change"] = _sync(server, data_dir, **options)
                name = emulator.image_names(REGION)[0]
                emulator.tag_resource(
                    emulator.call("DescribeImage", {"ImageName": name})["ImageArn"],
                    {"team": "moved"},
                )
                version = emulator.live_versions(REGION)[0]["ImageVersionArn"]
                emulator.tag_resource(version, {"team": "moved"})
                steps["tags changed"] = _sync(server, data_dir, **options)
                steps["reconcile"] = _sync(server, data_dir, reconcile=True, **options)
                results[variant] = {step: dict(calls) for step, calls in steps.items()}
    return results


def table(results: dict[str, Any]) -> str:
    images, versions = results["images"], results["versions"]
    lines = [
        f"{images} images, {versions} live versions",
        "| variant | sync | calls | per image | per version | DescribeImage | ListTags |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        for step in STEPS:
            calls = Counter(results[variant][step])
            total = sum(calls.values())
            lines.append(
                f"| {variant} | {step} | {total} | {total / images:.2f} | "
                f"{total / versions:.3f} | {calls['DescribeImage']} | {calls['ListTags']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tags-cost.json"))
    args = parser.parse_args()
    results = measure(args.images)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
