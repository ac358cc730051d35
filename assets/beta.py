"""Dagster's beta APIs that the code location uses on purpose, in one place."""

import contextlib
import warnings
from collections.abc import Iterator

import dagster as dg

__all__ = ["using_beta_apis"]


@contextlib.contextmanager
def using_beta_apis() -> Iterator[None]:
    """Silences BetaWarning around deliberate uses of beta APIs (a backfill policy on a single
    @asset, code references); anywhere else it still surfaces (tests turn it into an error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        yield
