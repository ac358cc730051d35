"""The extractor under the other answer to each question AWS leaves open (docs/aws-behaviour.md):
real syncs through unmodified boto3 against the emulator with one of its `Modes` on. Each ends
with the data equal to the source after a reconcile, and no state stored twice."""

from __future__ import annotations

import random
from datetime import timedelta

from pipeline.emulator import EmulatorServer, random_mutations, seed_catalogue
from pipeline.storage import DataDir
from tests.support import assert_converged, history_duplicates, run_sync


def test_whole_second_filters_store_no_state_twice(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """botocore before its mid-2026 change sends LastModifiedTimeAfter as whole seconds: the
    listing re-reads rows stamped up to a second before the window, which must not be taken
    for changes."""
    emulator = server.emulator
    emulator.modes.whole_second_filters = True
    emulator.clock.advance(0.1)
    emulator.create_image("edge")
    emulator.create_image_version("edge")  # stamped .100
    emulator.clock.advance(600.5)  # the default lookback, and half a second
    emulator.create_image_version("edge")  # stamped .600: the window starts at .600
    assert run_sync(data_dir, server).ok
    emulator.clock.advance(1)
    report = run_sync(data_dir, server)
    assert report.ok, report.failures
    assert (report.new, report.changed, report.rows_written) == (0, 0, 0)
    assert history_duplicates(data_dir) == 0
    assert_converged(data_dir, emulator)


def test_whole_second_filters_through_mutations_and_ties(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    emulator = server.emulator
    emulator.modes.whole_second_filters = True
    seed_catalogue(emulator, seed=5, images=6)
    rng = random.Random(5)
    run_sync(data_dir, server, lookback=timedelta(seconds=3))
    for _ in range(5):
        random_mutations(emulator, rng, 8)
        emulator.clock.advance(rng.uniform(0.001, 2))
        assert run_sync(data_dir, server, lookback=timedelta(seconds=3)).ok
        assert history_duplicates(data_dir) == 0
    assert run_sync(data_dir, server, reconcile=True).ok
    assert_converged(data_dir, emulator)
