"""Dagster resources: SageMaker access settings, the dataset directory, and read-only SQL over
the warehouse views for downstream assets.

No `from __future__ import annotations` here: Dagster reads these annotations at runtime.
"""

from typing import Any, Optional

import dagster as dg
import pyarrow as pa
from pydantic import BaseModel, Field, create_model

from pipeline.config import AccessSettings, ProjectConfig, load_config, resolve_data_dir
from pipeline.settings import Group, options_of
from pipeline.storage import DataDir
from pipeline.warehouse import QueryResult, query_arrow, run_query
from pipeline.webhook import post_json

__all__ = [
    "BuildAlertsResource",
    "DataDirResource",
    "SageMakerResource",
    "WarehouseResource",
    "option_fields",
    "option_values",
]


def option_fields(group: Group) -> dict[str, Any]:
    """Dagster config fields (pydantic's `create_model` definitions) of the options of `group`:
    their names, types, defaults and descriptions, as settings.OPTIONS declares them. Values
    are checked where the core builds its options from them (`option_values`)."""
    fields: dict[str, Any] = {}
    for option in options_of(group):
        kind: Any = option.kind
        if option.repeated:
            field = Field(default_factory=list, description=option.description)
            kind = list[kind]
        else:
            field = Field(default=option.dagster_default, description=option.description)
        if option.optional:
            kind = Optional[kind]  # noqa: UP045 - Dagster's config schema needs Optional
        fields[option.dagster_name] = (kind, field)
    return fields


def option_values(config: BaseModel, group: Group) -> dict[str, Any]:
    """The values of the options of `group` in Dagster config built by `option_fields`, by the
    names of SyncOptions and AccessSettings."""
    return {option.name: getattr(config, option.dagster_name) for option in options_of(group)}


_AccessConfig: Any = create_model(
    "AccessConfig", __base__=dg.ConfigurableResource, **option_fields("access")
)


class SageMakerResource(_AccessConfig):  # type: ignore[misc]
    """How syncs reach SageMaker: the sources file, retries, request rate and parallelism (the
    options of group `access` in settings.OPTIONS: retry_mode, max_attempts, max_rps,
    concurrency, call_deadline_s).

    Credentials, regions and endpoints come from the sources file (or boto3's standard chain).
    """

    config_path: Optional[str] = None  # noqa: UP045 - Dagster's config schema needs Optional

    def access(self) -> AccessSettings:
        return AccessSettings(**option_values(self, "access"))

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

    def arrow(self, sql: str) -> pa.Table:
        """The result of `sql` as an Arrow table, DuckDB's types kept: `.to_pandas()` makes a
        pandas DataFrame of it, `polars.from_arrow(...)` a polars one."""
        return query_arrow(self.data_dir(), sql)


class BuildAlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How the check `failed_builds_since_last_run` reports versions that entered
    CREATE_FAILED or DELETE_FAILED: its severity, how many versions it lists, and the webhook
    it posts them to (none by default; bind `webhook_url` with EnvVar, as `defs` does from
    IMAGE_VERSIONS_ALERT_WEBHOOK_URL: the URL may hold a token, and is never logged)."""

    webhook_url: Optional[str] = Field(  # noqa: UP045 - Dagster's config schema needs Optional
        default=None, description="http(s) URL that receives one JSON POST per alert"
    )
    severity: dg.AssetCheckSeverity = Field(
        default=dg.AssetCheckSeverity.WARN, description="WARN, or ERROR to fail the check"
    )
    max_listed: int = Field(default=50, ge=1, description="versions listed in full, at most")
    timeout_s: float = Field(default=10.0, gt=0, description="the webhook's socket timeout")

    def deliver(self, document: dict[str, Any]) -> int | None:
        """POST `document` to the webhook: its HTTP status, or None when none is configured.
        Raises pipeline.webhook.DeliveryFailed (a message without the URL)."""
        if not self.webhook_url:
            return None
        return post_json(self.webhook_url, document, timeout_s=self.timeout_s)
