"""`image_versions_as_of`, `image_version_changes` and the example notebook, on real history.

The history is built by real syncs of the emulator. Each sync is bracketed by the wall clock
(the clock `observed_at` comes from) and the test records what the emulator held at it; the
expected answers come from that record alone.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient

from pipeline.emulator import Emulator, EmulatorServer, random_mutations, seed_catalogue
from pipeline.schema import from_ms, to_ms
from pipeline.storage import DataDir
from pipeline.warehouse import refresh_views
from tests.support import REGION, live_rows, run_cli, run_sync, truth

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "image_versions.ipynb"
AS_OF_ROWS = (
    "SELECT region, image_name, version, image_arn, image_version_arn, status, "
    "failure_reason, epoch_ms(creation_time), epoch_ms(last_modified_time) "
    "FROM image_versions_as_of(?)"
)
MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Observed:
    """One sync: the wall-clock bracket of its `observed_at`, and the emulator's state at it."""

    first_ms: datetime
    """The wall clock just before the sync, floored to the millisecond."""
    after: datetime
    """The wall clock just after the sync."""
    live: set[tuple[Any, ...]]
    statuses: dict[tuple[str, int], tuple[str, int]]
    """(image, version) -> (status, LastModifiedTime in ms) of every live version."""


def observed_sync(data_dir: DataDir, server: EmulatorServer, **options: Any) -> Observed:
    # A gap of a few milliseconds keeps the syncs' observed_at instants (ms) apart from
    # the previous bracket, so that each instant between two syncs belongs to exactly one.
    time.sleep(0.01)
    now = datetime.now(UTC)
    first_ms = now.replace(microsecond=now.microsecond // 1000 * 1000)
    report = run_sync(data_dir, server, **options)
    after = datetime.now(UTC)
    assert not report.failures
    emulator = server.emulator
    return Observed(
        first_ms=first_ms,
        after=after,
        live=truth(emulator),
        statuses={
            (v["ImageName"], v["Version"]): (v["ImageVersionStatus"], to_ms(v["LastModifiedTime"]))
            for v in emulator.live_versions(REGION)
        },
    )


def build_history(emulator: Emulator, data_dir: DataDir, server: EmulatorServer) -> list[Observed]:
    """Five syncs over creations, status moves, a same-status update and deletions."""
    emulator.create_image("alpha", region=REGION)
    emulator.create_image_version("alpha", region=REGION, status="CREATING")
    emulator.create_image_version("alpha", region=REGION)
    emulator.create_image_version("alpha", region=REGION)
    emulator.create_image("beta", region=REGION)
    emulator.create_image_version("beta", region=REGION)
    emulator.create_image_version("beta", region=REGION, status="CREATE_FAILED", failure_reason="x")
    syncs = [observed_sync(data_dir, server)]

    emulator.clock.advance(60)
    emulator.update_image_version("alpha", 1, region=REGION, status="CREATED")
    emulator.update_image_version("alpha", 3, region=REGION, status="DELETE_FAILED")
    emulator.create_image_version("beta", region=REGION, status="CREATING")
    syncs.append(observed_sync(data_dir, server))

    emulator.clock.advance(60)
    emulator.update_image_version("alpha", 3, region=REGION, status="CREATED")
    emulator.update_image_version("beta", 3, region=REGION, status="CREATE_FAILED")
    emulator.update_image_version("beta", 2, region=REGION, failure_reason="retried")
    emulator.delete_image_version("alpha", 2, region=REGION)
    syncs.append(observed_sync(data_dir, server, reconcile=True))  # sees the deleted version

    emulator.clock.advance(60)
    emulator.delete_image("beta", region=REGION)
    emulator.create_image("gamma", region=REGION)
    emulator.create_image_version("gamma", region=REGION)
    syncs.append(observed_sync(data_dir, server))

    syncs.append(observed_sync(data_dir, server))  # nothing changed
    return syncs


def as_of(data_dir: DataDir, instant: datetime) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        return connection.execute(AS_OF_ROWS, [instant]).fetchall()


def test_as_of_equals_what_the_source_held_at_each_instant(
    emulator: Emulator, server: EmulatorServer, data_dir: DataDir
) -> None:
    syncs = build_history(emulator, data_dir, server)

    assert as_of(data_dir, syncs[0].first_ms - MS) == []
    for index, observed in enumerate(syncs):
        # From just after this sync to the last millisecond before the next one.
        until = syncs[index + 1].first_ms - MS if index + 1 < len(syncs) else observed.after
        for instant in (observed.after, until):
            rows = as_of(data_dir, instant)
            assert len(rows) == len(set(rows)), f"duplicates as of sync {index}"
            assert set(rows) == observed.live, f"as of sync {index}"
    later = syncs[-1].after + timedelta(days=365)
    assert sorted(as_of(data_dir, later)) == sorted(live_rows(data_dir))
    assert {row[1] for row in syncs[-1].live} == {"alpha", "gamma"}


def expected_transitions(syncs: list[Observed]) -> list[tuple[str, int, str | None, str, int]]:
    """(image, version, from, to, index of the sync that saw it) from the test's record."""
    transitions = []
    last: dict[tuple[str, int], str] = {}
    for index, observed in enumerate(syncs):
        now = {key: status for key, (status, _) in observed.statuses.items()}
        now.update({key: "DELETED" for key in last.keys() - observed.statuses.keys()})
        for key, status in now.items():
            if last.get(key) != status:
                transitions.append((*key, last.get(key), status, index))
        last = now
    return sorted(transitions, key=lambda t: (t[0], t[1], t[4]))


def test_changes_list_every_transition_with_its_duration(
    emulator: Emulator, server: EmulatorServer, data_dir: DataDir
) -> None:
    syncs = build_history(emulator, data_dir, server)
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        rows = connection.execute(
            "SELECT image_name, version, from_status, to_status, changed_at, "
            "time_in_previous_status, epoch_ms(last_modified_time) FROM image_version_changes "
            "ORDER BY image_name, version, changed_at"
        ).fetchall()

    def sync_of(instant: datetime) -> int:
        (index,) = [i for i, s in enumerate(syncs) if s.first_ms <= instant <= s.after]
        return index

    actual = [(image, version, old, new, sync_of(at)) for image, version, old, new, at, *_ in rows]
    expected = expected_transitions(syncs)
    assert actual == expected
    assert ("alpha", 3, "CREATED", "DELETE_FAILED", 1) in expected  # the scenario's own check
    assert ("beta", 2, "CREATE_FAILED", "DELETED", 3) in expected
    assert not any(t[:2] == ("beta", 2) and t[4] == 2 for t in expected)  # same-status update

    # Every row of one sync carries that sync's single observed_at; durations are the gaps
    # between the syncs that saw the version enter each status.
    seen_at: dict[int, set[datetime]] = {}
    for row in rows:
        seen_at.setdefault(sync_of(row[4]), set()).add(row[4])
    assert all(len(instants) == 1 for instants in seen_at.values())
    instants = {index: min(at) for index, at in seen_at.items()}
    entered: dict[tuple[str, int], int] = {}
    for (image, version, _, new, index), row in zip(expected, rows, strict=True):
        previous = entered.get((image, version))
        duration = None if previous is None else instants[index] - instants[previous]
        assert row[5] == duration, (image, version, new)
        entered[(image, version)] = index
        stamp = None if new == "DELETED" else syncs[index].statuses[(image, version)][1]
        assert row[6] == stamp, (image, version, new)


def test_macro_and_views_follow_the_data_dir_through_the_cli(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=5, images=4, region=REGION)
    observed = observed_sync(data_dir, server)
    assert refresh_views(data_dir) is False  # the sync left them current

    moved = DataDir(tmp_path / "moved")
    shutil.move(data_dir.root, moved.root)  # the warehouse still names the old paths
    instant = (observed.after + MS).isoformat()
    result = run_cli(
        "query",
        f"SELECT count(*) AS n FROM image_versions_as_of(TIMESTAMPTZ '{instant}') "
        "UNION ALL SELECT count(*) FROM image_version_changes WHERE from_status IS NULL",
        "--data-dir",
        str(moved.root),
        "--format",
        "json",
    )
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": len(observed.live)}] * 2
    assert refresh_views(moved) is True  # query never writes: the next writer re-binds the views

    before = run_cli(
        "query",
        f"SELECT count(*) AS n FROM image_versions_as_of('{from_ms(0).isoformat()}')",
        "--data-dir",
        str(moved.root),
        "--format",
        "csv",
    )
    assert (before.code, before.stdout) == (0, "n\n0\n")


def test_notebook_runs_headless_on_a_synced_catalogue(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_catalogue(server.emulator, seed=7, images=12, region=REGION)
    run_sync(data_dir, server)
    random_mutations(server.emulator, random.Random(7), 8, region=REGION)
    run_sync(data_dir, server, reconcile=True)
    figure = tmp_path / "versions-per-week.png"
    monkeypatch.setenv("IMAGE_VERSIONS_DATA", str(data_dir.root))
    monkeypatch.setenv("IMAGE_VERSIONS_FIGURE", str(figure))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, kernel_name="python3", timeout=60, resources={"metadata": {"path": tmp_path}}
    ).execute()

    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 2
    assert figure.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = "".join(output.get("text", "") for output in outputs)
    assert f"{len(live_rows(data_dir))} live versions" in text


def test_a_state_seen_again_after_its_tombstone_is_live_again(
    emulator: Emulator, server: EmulatorServer, data_dir: DataDir
) -> None:
    """An image missing from one ListImages answer is tombstoned, then listed again unchanged.

    Its versions come back with the very states they had before the tombstone, which
    `image_version_history` (one row per distinct state) cannot tell from the first sighting.
    """
    emulator.create_image("alpha", region=REGION)
    emulator.create_image_version("alpha", region=REGION)
    first = observed_sync(data_dir, server)

    def hide_alpha(operation: str, body: dict[str, Any]) -> dict[str, Any]:
        if operation != "ListImages":
            return body
        return {**body, "Images": [i for i in body["Images"] if i["ImageName"] != "alpha"]}

    emulator.rewrite_response = hide_alpha
    hidden = observed_sync(data_dir, server)
    emulator.rewrite_response = None
    back = observed_sync(data_dir, server)

    assert sorted(as_of(data_dir, first.after)) == sorted(first.live)
    assert as_of(data_dir, hidden.after) == []
    assert sorted(as_of(data_dir, back.after)) == sorted(back.live) == sorted(first.live)
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        changes = connection.execute(
            "SELECT from_status, to_status FROM image_version_changes ORDER BY changed_at"
        ).fetchall()
    assert changes == [(None, "CREATED"), ("CREATED", "DELETED"), ("DELETED", "CREATED")]
