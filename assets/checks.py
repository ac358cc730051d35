"""Asset checks on `image_versions`, each a wrapper of pipeline.quality over the whole dataset.

The two that find bad data block the warehouse refresh when they fail; the watermark check
reports a fault of the core without blocking; the per-source freshness check warns.
"""

from collections.abc import Callable
from datetime import timedelta

import dagster as dg

from pipeline import quality
from pipeline.storage import DataDir

from .resources import DataDirResource

__all__ = ["CHECKED_ASSET", "build_checks"]

CHECKED_ASSET = "image_versions"


def _check(
    name: str,
    description: str,
    run: Callable[[DataDir], quality.CheckOutcome],
    *,
    blocking: bool = False,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=CHECKED_ASSET, name=name, description=description, blocking=blocking)
    def check(data: DataDirResource) -> dg.AssetCheckResult:
        outcome = run(data.data_dir())
        return dg.AssetCheckResult(
            passed=outcome.passed,
            severity=severity,
            description=outcome.description,
            metadata={key: dg.MetadataValue.json(value) for key, value in outcome.details.items()},
        )

    return check


def build_checks(freshness: timedelta) -> list[dg.AssetChecksDefinition]:
    """The four dataset checks; `freshness` is how recent every source's sync must be."""
    return [
        _check(
            "no_duplicate_live_versions",
            "Each (account, region, image, version) has one state at its latest observation.",
            quality.no_duplicate_live_versions,
            blocking=True,
        ),
        _check(
            "values_match_the_api_model",
            "Statuses, ARNs and account ids are valid against SageMaker's API model, and each "
            "row's ARNs name its own image, version, account and region.",
            quality.values_match_the_api_model,
            blocking=True,
        ),
        _check(
            "watermarks_never_decrease",
            "No image's watermark went back between the last two syncs.",
            quality.watermarks_never_decrease,
        ),
        _check(
            "sources_are_fresh",
            f"Every source (partition) was synced within {freshness}; the asset's freshness "
            "policy covers the asset as a whole.",
            lambda data_dir: quality.sources_are_fresh(data_dir, freshness),
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]
