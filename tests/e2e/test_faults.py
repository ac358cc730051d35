"""The fault matrix's quick trials: every row ends with nothing lost and nothing doubled, or
with its documented clear refusal. `python3 dev.py faults` runs the long version."""

from __future__ import annotations

import pytest

from tests.fault_dagster import DAGSTER_MATRIX
from tests.fault_matrix import MATRIX, run_row

pytestmark = pytest.mark.faults


DAGSTER_ROWS = {key for key, *_ in DAGSTER_MATRIX}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(key, marks=[pytest.mark.dagster] if key in DAGSTER_ROWS else [])
        for key, *_ in MATRIX
    ],
)
def test_fault_row_holds(key: str) -> None:
    rows = run_row(key, quick=True)
    assert rows
    for row in rows:
        failing = [t for t in row.trials if t.lost or t.duplicates]
        assert row.ok, (row.fault, failing)
