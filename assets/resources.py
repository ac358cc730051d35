"""Dagster resources: SageMaker access settings, the dataset directory, and read-only SQL over
the warehouse views for downstream assets.

No `from __future__ import annotations` here: Dagster reads these annotations at runtime.
"""

from typing import Optional

import dagster as dg

from pipeline.config import AccessSettings, ProjectConfig, load_config, resolve_data_dir
from pipeline.defaults import CALL_DEADLINE_S, CONCURRENCY, MAX_ATTEMPTS, RETRY_MODE
from pipeline.storage import DataDir
from pipeline.warehouse import QueryResult, run_query

__all__ = ["DataDirResource", "SageMakerResource", "WarehouseResource"]


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

    def data_dir_at_load(self) -> DataDir:
        """The dataset as the definitions see it when the code location loads: an `EnvVar`
        read from the environment then (unset: the default, as the CLI's)."""
        path = self.path
        return resolve_data_dir(path.get_value() if isinstance(path, dg.EnvVar) else path)


class WarehouseResource(DataDirResource):
    """Read-only SQL over the warehouse views of the dataset at `path`, for assets downstream
    of `image_versions_warehouse`.

    Each query runs on a private in-memory DuckDB connection holding the same views (never
    the warehouse file, so it takes no lock); it accepts read-only statements only (SELECT,
    PIVOT, DESCRIBE and the like) and reads no file outside the dataset.
    """

    def query(self, sql: str) -> QueryResult:
        """The columns and rows of `sql` (e.g. `SELECT ... FROM image_versions`)."""
        return run_query(self.data_dir(), sql)
