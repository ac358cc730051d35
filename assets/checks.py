"""Asset checks on `image_versions`, each a wrapper of pipeline.quality or
pipeline.failed_builds over the whole dataset.

The two that find bad data block the warehouse refresh when they fail; the watermark check
reports a fault of the core without blocking; the per-source freshness check warns; the
failed-builds check names the versions whose build (or deletion) failed since its previous
evaluation, and posts them to the user's webhook.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from pipeline import quality
from pipeline.failed_builds import FAILED_STATUSES, failed_builds
from pipeline.storage import DataDir
from pipeline.webhook import DeliveryFailed

from .resources import BuildAlertsResource, DataDirResource

__all__ = ["CHECKED_ASSET", "FAILED_BUILDS_CHECK", "WINDOW_END", "build_checks"]

CHECKED_ASSET = "image_versions"
FAILED_BUILDS_CHECK = "failed_builds_since_last_run"
WINDOW_END = "through"
"""The metadata entry of a failed-builds evaluation that the next one starts after."""
EVALUATIONS_LOOKED_AT = 20
"""Latest executions of the failed-builds check read to find the last completed one: the
newest are this run's planned one and those of runs that stopped before evaluating it."""


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


def _window_start(context: dg.AssetCheckExecutionContext) -> datetime:
    """Where the previous completed evaluation of the failed-builds check stopped (its
    WINDOW_END); without one, the start of this run."""
    key = dg.AssetCheckKey(dg.AssetKey(CHECKED_ASSET), FAILED_BUILDS_CHECK)
    storage = context.instance.event_log_storage
    for record in storage.get_asset_check_execution_history(key, limit=EVALUATIONS_LOOKED_AT):
        event = record.event.dagster_event if record.event else None
        evaluation = event.event_specific_data if event else None  # planned: no metadata
        end = getattr(evaluation, "metadata", {}).get(WINDOW_END)
        if end is not None:
            return datetime.fromisoformat(end.value)
    run = context.instance.get_run_record_by_id(context.run.run_id)
    started = run.start_time if run and run.start_time else datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(started, UTC)


def _deliver(
    context: dg.AssetCheckExecutionContext, alerts: BuildAlertsResource, listing: dict[str, Any]
) -> tuple[str, bool]:
    """Post the listing of the failed builds to the webhook: what happened, in words, and
    whether they count as reported (else the next evaluation lists them again). Never raises
    for a failed delivery: the sync it reports on is done."""
    if not listing["count"]:
        return "nothing to deliver", True
    document = {"check": FAILED_BUILDS_CHECK, "asset": CHECKED_ASSET, "run_id": context.run.run_id}
    try:
        status = alerts.deliver({**document, **listing})
    except DeliveryFailed as exc:
        context.log.warning(f"failed builds not delivered, listed again next time: {exc}")
        return f"failed: {exc}; listed again at the next evaluation", False
    return ("no webhook configured", True) if status is None else (f"HTTP {status}", True)


def _failed_builds_check() -> dg.AssetChecksDefinition:
    statuses = " or ".join(FAILED_STATUSES)

    @dg.asset_check(
        asset=CHECKED_ASSET,
        name=FAILED_BUILDS_CHECK,
        description=f"Versions that entered {statuses} in the syncs recorded since the "
        "previous evaluation (sync_runs), each with its failure reason; posted to the "
        "`alerts` resource's webhook when one is configured.",
    )
    def check(
        context: dg.AssetCheckExecutionContext, data: DataDirResource, alerts: BuildAlertsResource
    ) -> dg.AssetCheckResult:
        listing = failed_builds(data.data_dir(), _window_start(context)).listing(alerts.max_listed)
        delivery, reported = _deliver(context, alerts, listing)
        count = listing["count"]
        metadata: dict[str, Any] = {
            "failed_count": count,
            "failed_versions": dg.MetadataValue.json(listing["versions"]),
            "more": listing["more"],
            "since": listing["since"],
            WINDOW_END: (reported and listing["through"]) or listing["since"],
            "delivery": delivery,
        }
        return dg.AssetCheckResult(
            passed=not count,
            severity=alerts.severity,
            description=f"{count} version(s) entered {statuses} in the syncs recorded after "
            f"{listing['since']}",
            metadata=metadata,
        )

    return check


def build_checks(freshness: timedelta) -> list[dg.AssetChecksDefinition]:
    """The dataset checks and the failed-builds check; `freshness` is how recent every
    source's sync must be."""
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
        _failed_builds_check(),
    ]
