"""B2's yardstick: the product's API calls made with bare boto3, as a whole process.

    python -m benchmarks.bare_boto3 --endpoint-url URL --cursors FILE --workers 16 \
        --lookback-minutes 10 [--retry-mode standard|adaptive]

The same calls as the product's sync: every page of ListImages at MaxResults=100, then, on
`--workers` threads, every page of ListImageVersions of each image with MaxResults=100, sorted
by LAST_MODIFIED_TIME ascending, from the image's cursor less the lookback (everything the
first time). The cursor is the latest LastModifiedTime seen per image, kept in a JSON file.
One boto3 client with the product's retry settings (standard mode, 10 attempts; or botocore's
adaptive mode, its client-side rate limiter, with `--retry-mode adaptive`) and as many
connections as threads; botocore's own response parsing. An image whose listing fails for
good (retries spent) is counted and skipped. Nothing else: no records kept, no Parquet, no
state beyond the cursors, no views. Standard library and boto3 only (the
`benchmarks` package it sits in imports nothing), so nothing of the project is loaded but its
retry defaults (pipeline/defaults.py, standard library only); prints one JSON line (calls,
images, failed images, versions listed, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from botocore.exceptions import ClientError

from pipeline.defaults import MAX_ATTEMPTS, RETRY_MODE, RETRY_MODES

PAGE_SIZE = 100


class Lister:
    """One client, its call count, and the cursors."""

    def __init__(
        self, endpoint_url: str, region: str, workers: int, lookback_s: float, retry_mode: str
    ) -> None:
        retries: Any = {"mode": retry_mode, "total_max_attempts": MAX_ATTEMPTS}
        config = botocore.config.Config(retries=retries, max_pool_connections=workers)
        self.client = boto3.session.Session().client(
            "sagemaker", region_name=region, endpoint_url=endpoint_url, config=config
        )
        self.lookback = timedelta(seconds=lookback_s)
        self.calls = 0
        self._lock = threading.Lock()

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        page: dict[str, Any] = getattr(self.client, operation)(**params)
        return page

    def _every_page(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self._call(operation, MaxResults=PAGE_SIZE, **params)
            items.extend(page[key])
            if not page.get("NextToken"):
                return items
            params["NextToken"] = page["NextToken"]

    def image_names(self) -> list[str]:
        return [image["ImageName"] for image in self._every_page("list_images", "Images")]

    def versions(self, name: str, cursor_ms: int | None) -> list[dict[str, Any]]:
        after = {}
        if cursor_ms is not None:
            cursor = datetime.fromtimestamp(cursor_ms / 1000, UTC)
            after = {"LastModifiedTimeAfter": cursor - self.lookback}
        return self._every_page(
            "list_image_versions",
            "ImageVersions",
            ImageName=name,
            SortBy="LAST_MODIFIED_TIME",
            SortOrder="ASCENDING",
            **after,
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    cursors: dict[str, int] = json.loads(args.cursors.read_text()) if args.cursors.exists() else {}
    lister = Lister(
        args.endpoint_url, args.region, args.workers, args.lookback_minutes * 60, args.retry_mode
    )
    names = lister.image_names()

    def list_one(name: str) -> tuple[str, list[dict[str, Any]] | None]:
        try:
            return name, lister.versions(name, cursors.get(name))
        except ClientError:
            return name, None

    listed = failed = 0
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for name, versions in pool.map(list_one, names):
            if versions is None:
                failed += 1
                continue
            listed += len(versions)
            stamps = [int(v["LastModifiedTime"].timestamp() * 1000) for v in versions]
            if name in cursors:
                stamps.append(cursors[name])
            if stamps:
                cursors[name] = max(stamps)
    args.cursors.write_text(json.dumps(cursors))
    return {
        "calls": lister.calls,
        "images": len(names),
        "failed": failed,
        "versions_listed": listed,
        "seconds": time.perf_counter() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--cursors", required=True, type=Path, help="the cursors' JSON file")
    parser.add_argument("--workers", required=True, type=int)
    parser.add_argument("--lookback-minutes", required=True, type=float)
    parser.add_argument("--retry-mode", choices=RETRY_MODES, default=RETRY_MODE)
    print(json.dumps(run(parser.parse_args())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
