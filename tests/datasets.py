"""Small real data dirs built in process, for the unit tests: API-shaped records through the
product's own normalisation (`version_row`) and `Committer`, then the warehouse views. No
emulator, no socket, no child process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.committer import Committer
from pipeline.model import ImageState, Row, target_key
from pipeline.schema import from_ms, to_ms, version_row
from pipeline.storage import DataDir
from pipeline.warehouse import refresh_views
from tests.support import REGION, START, stored_states

ACCOUNT = "123456789012"
IMAGE = "lab-image"
T0_MS = to_ms(START)
SOURCE = "lab"
TARGET = target_key(SOURCE, REGION)


def image_arn(image: str = IMAGE) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:image/{image}"


def version_record(version: int, modified_ms: int, status: str = "CREATED") -> dict[str, Any]:
    """One ImageVersion of IMAGE as ListImageVersions returns it (after botocore's parsing)."""
    return {
        "ImageArn": image_arn(),
        "ImageVersionArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:image-version/{IMAGE}/{version}",
        "ImageVersionStatus": status,
        "Version": version,
        "CreationTime": from_ms(T0_MS),
        "LastModifiedTime": from_ms(modified_ms),
    }


def version_rows(
    versions: Iterable[int], *, observed_at_ms: int = T0_MS + 1000, status: str = "CREATED"
) -> list[Row]:
    """Rows of IMAGE's `versions`, version v last modified at T0_MS + v."""
    return [
        version_row(
            IMAGE,
            version_record(version, T0_MS + version, status),
            observed_at_ms=observed_at_ms,
            image_account_region=(ACCOUNT, REGION),
        )
        for version in versions
    ]


def image_state(image: str = IMAGE, **fields: Any) -> ImageState:
    return ImageState(SOURCE, ACCOUNT, REGION, image, image_arn(image), **fields)


def synced(data_dir: DataDir, rows: list[Row], *, synced_at_ms: int = T0_MS + 2000) -> None:
    """`rows` committed as one sync of IMAGE commits them (data, then the state whose
    watermark covers them), then the views refreshed."""
    data_dir.prepare()
    committer = Committer(data_dir, TARGET, stored_states(data_dir), flush_rows=10_000)
    watermark = max((row["last_modified_time"] for row in rows), default=None)
    versions = [row["version"] for row in rows]
    state = image_state(
        watermark_ms=watermark, max_version=max(versions, default=0), last_synced_ms=synced_at_ms
    )
    committer.add(rows, state)
    committer.commit()
    refresh_views(data_dir)
