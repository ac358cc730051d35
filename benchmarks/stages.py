"""Where a sync's CPU time goes: API + parse, normalise, write (B4).

`install()` wraps a few functions of the sync's modules and `pipeline.storage` (at page, image
or file granularity, never per row, so the overhead stays in microseconds per page) with
per-thread CPU clocks. A thread waiting for the GIL or for a response uses no CPU, so the
stages add up to the process's CPU time less what runs outside them ("other": the thread pool,
client set-up, committing state in memory).

- api: ListImages, and each ListImageVersions page (request, HTTP, botocore parsing)
- normalise: API record -> row (`version_row`) and `classify`, both measured as an image's
  fetch less its pages (enrichment is off), then `advance_state` and rows -> Arrow
  (`rows_to_table`)
- write: Parquet and state files, compaction and the DuckDB views
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pipeline.committer as committer
import pipeline.extract as extract
import pipeline.target_run as target_run
from pipeline.storage import DataDir

# Functions of the sync's modules (as each names them) -> their stage.
FUNCTION_STAGES = {
    target_run: {
        "_fetch_image": "fetch",
        "list_source_images": "api_images",
        **dict.fromkeys(("advance_state", "rows_to_table"), "normalise"),
    },
    extract: dict.fromkeys(("load_account_state", "keep_previous_state", "refresh_views"), "write"),
    committer: {"rows_to_table": "normalise", "save_state": "write"},
}
PAGE_STAGES = {"list_image_versions": "api_versions"}
WRITE_METHODS = ("write_versions", "write_images", "compact")


class StageClock:
    """Thread-safe CPU seconds per stage."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    def timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(stage, time.thread_time() - start)

        return wrapper

    def timed_pages(
        self, stage: str, function: Callable[..., Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        """A generator function whose every step (one API page) is timed."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            pages = function(*args, **kwargs)
            while True:
                start = time.thread_time()
                try:
                    page = next(pages)
                except StopIteration:
                    return
                finally:
                    self.add(stage, time.thread_time() - start)
                yield page

        return wrapper

    def split(self, total_cpu: float) -> dict[str, float]:
        """CPU seconds of api, normalise, write and other, adding up to `total_cpu`."""
        s = self.seconds
        api = s["api_images"] + s["api_versions"]
        normalise = s["fetch"] - s["api_versions"] + s["normalise"]
        write = s["write"]
        return {
            "api": api,
            "normalise": normalise,
            "write": write,
            "other": total_cpu - api - normalise - write,
        }


def install() -> StageClock:
    """Wrap the stage functions of this process's `pipeline` modules; returns their clock."""
    clock = StageClock()
    for module, stages in FUNCTION_STAGES.items():
        for name, stage in stages.items():
            setattr(module, name, clock.timed(stage, getattr(module, name)))
    for name, stage in PAGE_STAGES.items():
        setattr(target_run, name, clock.timed_pages(stage, getattr(target_run, name)))
    for name in WRITE_METHODS:
        setattr(DataDir, name, clock.timed("write", getattr(DataDir, name)))
    return clock
