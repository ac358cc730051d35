"""Dagster resources: SageMaker access settings and the dataset directory.

No `from __future__ import annotations` here: Dagster reads these annotations at runtime.
"""

from typing import Optional

import dagster as dg

from pipeline.config import AccessSettings, ProjectConfig, load_config, resolve_data_dir
from pipeline.defaults import CALL_DEADLINE_S, CONCURRENCY, MAX_ATTEMPTS, RETRY_MODE
from pipeline.storage import DataDir

__all__ = ["DataDirResource", "SageMakerResource"]


class SageMakerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How syncs reach SageMaker: the sources file, retries, request rate and parallelism.

    Credentials, regions and endpoints come from the sources file (or boto3's standard chain).
    """

    config_path: Optional[str] = None  # noqa: UP045 - Dagster's config schema needs Optional
    retry_mode: str = RETRY_MODE
    max_attempts: int = MAX_ATTEMPTS
    max_rps: Optional[float] = None  # noqa: UP045
    concurrency: int = CONCURRENCY
    call_deadline_s: float = CALL_DEADLINE_S

    def access(self) -> AccessSettings:
        return AccessSettings(
            retry_mode=self.retry_mode,
            max_attempts=self.max_attempts,
            max_rps=self.max_rps,
            concurrency=self.concurrency,
            call_deadline_s=self.call_deadline_s,
        )

    def project(self) -> ProjectConfig:
        return load_config(self.config_path)


class DataDirResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The dataset: a local directory or s3://BUCKET/PREFIX (bind it to IMAGE_VERSIONS_DATA_DIR
    with EnvVar)."""

    path: str

    def data_dir(self) -> DataDir:
        return resolve_data_dir(self.path)
