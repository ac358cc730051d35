"""The baseline: a sequential extractor written the obvious way.

boto3 paginators at 100 items a page (`PaginationConfig={"PageSize": 100}`), one image after
another, one global cursor (the latest LastModifiedTime seen over every image, passed as
LastModifiedTimeAfter to every image on the next run) and pyarrow writing one Parquet file
per run. It gets the product's default retry settings (standard mode, 10 attempts) and a new
boto3 session per run, as the product does, so neither side gains from its set-up.

Run alone: ``python -m benchmarks.baseline --endpoint-url URL --data-dir DIR`` prints one
JSON line (seconds, rows, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pyarrow as pa
import pyarrow.parquet as pq

CURSOR_FILE = "cursor.json"
PAGINATION = {"PageSize": 100}
RETRIES = {"mode": "standard", "max_attempts": 10}
SCHEMA = pa.schema(
    [
        ("image_name", pa.string()),
        ("version", pa.int32()),
        ("image_arn", pa.string()),
        ("image_version_arn", pa.string()),
        ("status", pa.string()),
        ("failure_reason", pa.string()),
        ("creation_time", pa.timestamp("ms", tz="UTC")),
        ("last_modified_time", pa.timestamp("ms", tz="UTC")),
        ("observed_at", pa.timestamp("ms", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class BaselineRun:
    seconds: float
    rows: int
    file: str


def _load_cursor(data_dir: Path) -> datetime | None:
    path = data_dir / CURSOR_FILE
    if not path.exists():
        return None
    return datetime.fromisoformat(json.loads(path.read_text())["cursor"])


def _save_cursor(data_dir: Path, cursor: datetime | None) -> None:
    if cursor is not None:
        (data_dir / CURSOR_FILE).write_text(json.dumps({"cursor": cursor.isoformat()}))


def _row(image_name: str, version: dict[str, Any], observed_at: datetime) -> dict[str, Any]:
    return {
        "image_name": image_name,
        "version": version["Version"],
        "image_arn": version["ImageArn"],
        "image_version_arn": version["ImageVersionArn"],
        "status": version["ImageVersionStatus"],
        "failure_reason": version.get("FailureReason"),
        "creation_time": version["CreationTime"],
        "last_modified_time": version["LastModifiedTime"],
        "observed_at": observed_at,
    }


def run_baseline(endpoint_url: str, data_dir: Path, region: str = "us-east-1") -> BaselineRun:
    """One run: every image in turn, from the global cursor; one new Parquet file."""
    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    client = boto3.session.Session().client(
        "sagemaker",
        region_name=region,
        endpoint_url=endpoint_url,
        config=botocore.config.Config(retries=RETRIES),
    )
    cursor = _load_cursor(data_dir)
    observed_at = datetime.now(UTC)
    images = [
        image
        for page in client.get_paginator("list_images").paginate(PaginationConfig=PAGINATION)
        for image in page["Images"]
    ]
    versions = client.get_paginator("list_image_versions")
    after = {} if cursor is None else {"LastModifiedTimeAfter": cursor}
    rows = []
    latest = cursor
    for image in images:
        pages = versions.paginate(
            ImageName=image["ImageName"], PaginationConfig=PAGINATION, **after
        )
        for page in pages:
            for version in page["ImageVersions"]:
                rows.append(_row(image["ImageName"], version, observed_at))
                if latest is None or version["LastModifiedTime"] > latest:
                    latest = version["LastModifiedTime"]
    path = data_dir / f"run-{len(list(data_dir.glob('run-*.parquet'))):05d}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    _save_cursor(data_dir, latest)
    return BaselineRun(time.monotonic() - started, len(rows), path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args()
    run = run_baseline(args.endpoint_url, args.data_dir)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**asdict(run), "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
