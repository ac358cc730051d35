"""Fixtures of the end-to-end tests: a SageMaker client of the emulator, as a user's boto3
makes it; moto's S3 server on loopback, and a data dir in a bucket of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.backends import LOCK_TTL_ENV
from pipeline.emulator import EmulatorServer
from pipeline.storage import DataDir
from tests.support import S3_LOCK_TTL_S, moto_server


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[Any]:
    made = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    yield made
    made.close()


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3_client(s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The S3 endpoint in the environment (for this process and the CLI), a short lock lease."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
    monkeypatch.setenv(LOCK_TTL_ENV, str(S3_LOCK_TTL_S))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return boto3.client("s3", endpoint_url=s3_url)


@pytest.fixture
def s3_dir(s3_client: Any) -> DataDir:
    bucket = f"iv-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    return DataDir.at(f"s3://{bucket}/datasets/image-versions")
