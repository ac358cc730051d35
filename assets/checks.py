"""Asset checks on the whole dataset (unpartitioned), each a wrapper of pipeline.quality."""

from collections.abc import Callable
from datetime import timedelta

import dagster as dg

from pipeline import quality
from pipeline.storage import DataDir

from .resources import DataDirResource

__all__ = ["build_checks"]


def _to_result(outcome: quality.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=outcome.description,
        metadata={key: dg.MetadataValue.json(value) for key, value in outcome.details.items()},
    )


def _check(
    name: str, description: str, run: Callable[[DataDir], quality.CheckOutcome]
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset="image_versions_warehouse", name=name, description=description)
    def check(data: DataDirResource) -> dg.AssetCheckResult:
        return _to_result(run(data.data_dir()))

    return check


def build_checks(freshness: timedelta) -> list[dg.AssetChecksDefinition]:
    """The four dataset checks; `freshness` is two intervals of the sync schedule."""
    return [
        _check(
            "no_duplicate_live_versions",
            "Each (account, region, image, version) appears once in image_versions.",
            quality.no_duplicate_live_versions,
        ),
        _check(
            "watermarks_never_decrease",
            "No image's watermark went back between the last two syncs.",
            quality.watermarks_never_decrease,
        ),
        _check(
            "values_match_the_api_model",
            "Statuses, ARNs and account ids are valid against SageMaker's API model.",
            quality.values_match_the_api_model,
        ),
        _check(
            "sources_are_fresh",
            f"Every source was synced within {freshness} (two schedule intervals).",
            lambda data_dir: quality.sources_are_fresh(data_dir, freshness),
        ),
    ]
