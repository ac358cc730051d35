"""API records -> rows (`pipeline.schema`): what a record of the wrong shape becomes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.schema import MalformedRecord, details_row
from tests.support import REGION


def test_details_of_the_wrong_json_type_are_rejected_not_coerced() -> None:
    listed = {"account_id": "123456789012", "region": REGION, "image_name": "a", "version": 1}
    described = {"LastModifiedTime": datetime(2026, 1, 1, tzinfo=UTC)}
    for bad, aliases in (
        ({"Horovod": "false"}, []),
        ({"BaseImage": {"a": 1}}, []),
        ({}, [7]),
    ):
        with pytest.raises(MalformedRecord):
            details_row(listed, {**described, **bad}, aliases, observed_at_ms=0)
