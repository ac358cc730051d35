"""B6: many small incremental syncs; the file count stays bounded and queries stay fast."""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.storage import AUTO_COMPACT_FILES, DataDir
from pipeline.warehouse import refresh_views, run_query

from .catalogue import CatalogueSpec, image_name
from .emulator_proc import open_emulator
from .harness import Context, Outcome, Row, median, product_sync, seconds_text, verdict

CHANGE_EVERY_S = 3600.0
MAX_CHANGES = 5
QUERY_RUNS = 25
QUERY_LIMIT = 1.5
QUERIES = {
    "status counts": "SELECT status, count(*) FROM image_versions GROUP BY 1",
    "one image's history": (
        "SELECT image_name, version, status, observed_at FROM image_version_history "
        f"WHERE image_name = '{image_name(1)}' ORDER BY version, observed_at"
    ),
}


def _file_counts(data_dir: DataDir) -> tuple[int, int]:
    """(files, the most files in one partition)."""
    per_partition = Counter(path.parent for path in data_dir.version_files())
    return sum(per_partition.values()), max(per_partition.values(), default=0)


def _incremental_syncs(ctx: Context, data_dir: DataDir) -> list[dict[str, Any]]:
    sizes = ctx.sizes
    rng = random.Random(6)
    syncs = []
    with open_emulator() as emulator:
        emulator.fill(CatalogueSpec(sizes.file_images, sizes.file_versions, spread=True))
        product_sync(emulator.url, data_dir.root)
        for index in range(sizes.file_syncs):
            emulator.change(rng.randint(1, MAX_CHANGES), seed=index, advance_s=CHANGE_EVERY_S)
            seconds, report = product_sync(emulator.url, data_dir.root)
            files, widest = _file_counts(data_dir)
            syncs.append(
                {"seconds": seconds, "rows": report.rows_written, "files": files, "widest": widest}
            )
    return syncs


def _query_times(data_dir: DataDir, compacted: DataDir) -> dict[str, dict[str, list[float]]]:
    """Each query QUERY_RUNS times on each dataset, alternating, as `image-versions query`
    runs it (a new in-memory connection with the views each time)."""
    times: dict[str, dict[str, list[float]]] = {
        name: {"as synced": [], "compacted": []} for name in QUERIES
    }
    for _ in range(QUERY_RUNS):
        for name, sql in QUERIES.items():
            for label, target in (("as synced", data_dir), ("compacted", compacted)):
                started = time.perf_counter()
                run_query(target, sql)
                times[name][label].append(time.perf_counter() - started)
    return times


def _compacted_copy(data_dir: DataDir, root: Path) -> DataDir:
    shutil.copytree(data_dir.root, root)
    copy = DataDir(root)
    copy.compact()
    refresh_views(copy)  # the views name absolute paths: re-bind them to the copy
    return copy


def b6(ctx: Context) -> Outcome:
    data_dir = DataDir(ctx.fresh_dir("b6"))
    syncs = _incremental_syncs(ctx, data_dir)
    compacted = _compacted_copy(data_dir, ctx.fresh_dir("b6-compacted"))
    times = _query_times(data_dir, compacted)
    files, _ = _file_counts(data_dir)
    compacted_files, _ = _file_counts(compacted)
    max_widest = max(sync["widest"] for sync in syncs)
    outcome = Outcome(raw={"syncs": syncs, "query_seconds": times})
    outcome.add(
        Row(
            "B6",
            f"{len(syncs)} incremental syncs / files",
            f"{files} files",
            f"{files / compacted_files:.1f}x compacted",
            f"<= {AUTO_COMPACT_FILES} a partition",
            verdict(max_widest <= AUTO_COMPACT_FILES),
            f"most in one partition at any sync: {max_widest}; compacted: {compacted_files} "
            f"files; sync median {seconds_text(median([s['seconds'] for s in syncs]))}",
        )
    )
    for name, runs in times.items():
        synced, fresh = median(runs["as synced"]), median(runs["compacted"])
        outcome.add(
            Row(
                "B6",
                f"query / {name}",
                f"{synced * 1000:.1f} ms",
                f"{synced / fresh:.2f}x compacted",
                f"<= {QUERY_LIMIT}x",
                verdict(synced <= QUERY_LIMIT * fresh),
                f"compacted {fresh * 1000:.1f} ms; median of {QUERY_RUNS}",
            )
        )
    return outcome
