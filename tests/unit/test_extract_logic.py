"""The pure decisions of extraction: listing start, classification, state advance, schema."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipeline.decisions import (
    advance_state,
    classify,
    deleted_image_state,
    latest_per_image,
    listing_filter_ms,
    listing_start_ms,
    on_or_after,
)
from pipeline.model import ImageState, fingerprint
from pipeline.schema import (
    IMAGE_VERSION_SCHEMA,
    MalformedRecord,
    from_ms,
    image_row,
    rows_to_table,
    table_to_rows,
    to_ms,
    version_row,
)

ARN = "arn:aws:sagemaker:us-east-1:012345678901:image/Custom.R-4"
VERSION_ARN = "arn:aws:sagemaker:us-east-1:012345678901:image-version/custom.r-4"
T0 = to_ms(datetime(2026, 3, 1, tzinfo=UTC))
MINUTE = 60_000
NOW = T0 + 1000 * MINUTE


def item(version: int, modified_ms: int, status: str = "CREATED", **extra: object) -> dict:
    return {
        "ImageArn": ARN,
        "ImageVersionArn": f"{VERSION_ARN}/{version}",
        "ImageVersionStatus": status,
        "Version": version,
        "CreationTime": from_ms(T0),
        "LastModifiedTime": from_ms(modified_ms),
        **extra,
    }


def row(version: int, modified_ms: int, status: str = "CREATED") -> dict:
    return version_row(
        "Custom.R-4",
        item(version, modified_ms, status),
        observed_at_ms=T0 + 99 * MINUTE,
        image_account_region=("012345678901", "us-east-1"),
    )


def state(**fields: object) -> ImageState:
    base = ImageState("default", "012345678901", "us-east-1", "Custom.R-4", ARN)
    for name, value in fields.items():
        setattr(base, name, value)
    return base


def test_listing_start_is_watermark_minus_lookback_or_everything() -> None:
    assert listing_start_ms(None, MINUTE, False) is None
    assert listing_start_ms(state(), MINUTE, False) is None
    assert listing_start_ms(state(watermark_ms=T0), MINUTE, False) == T0 - MINUTE
    assert listing_start_ms(state(watermark_ms=T0), MINUTE, True) is None
    assert listing_start_ms(state(watermark_ms=T0, is_deleted=True), MINUTE, False) is None


def test_the_filter_sent_is_the_start_floored_to_the_whole_second() -> None:
    assert listing_filter_ms(T0 + 1_678) == T0 + 1_000
    assert listing_filter_ms(T0 + 2_000) == T0 + 2_000
    assert listing_filter_ms(-1) == -1_000


def test_rows_a_coarser_filter_let_through_are_not_taken_for_changes() -> None:
    first = [row(1, T0 + 100), row(2, T0 + MINUTE + 600)]
    synced = advance_state(state(), first, lookback_ms=MINUTE, full_listing=False, synced_at_ms=NOW)
    start = listing_start_ms(synced, MINUTE, False)
    assert start == T0 + 600 and listing_filter_ms(start) == T0
    # Everything the floored filter returns: version 1 lies before the window.
    assert classify(first, synced, None, observed_at_ms=NOW).changed == 1
    kept = on_or_after(first, start)
    assert kept == [first[1]]
    assert classify(kept, synced, None, observed_at_ms=NOW).to_write == []
    assert on_or_after(first, None) == first


def test_reread_rows_inside_the_window_are_not_written_again() -> None:
    first = [row(1, T0), row(2, T0), row(3, T0 + 5)]
    synced = advance_state(state(), first, lookback_ms=MINUTE, full_listing=False, synced_at_ms=NOW)
    again = classify(first, synced, None, observed_at_ms=2)
    assert again.to_write == [] and (again.new, again.changed) == (0, 0)


def test_ties_at_the_watermark_are_kept_once_each() -> None:
    synced = advance_state(
        state(), [row(1, T0), row(2, T0)], lookback_ms=0, full_listing=False, synced_at_ms=NOW
    )
    assert synced.watermark_ms == T0 and set(synced.window) == {1, 2}
    # Inclusive filter at the watermark re-reads 1 and 2; version 3 arrived with the same stamp.
    later = classify([row(1, T0), row(2, T0), row(3, T0)], synced, None, observed_at_ms=2)
    assert [r["version"] for r in later.to_write] == [3]
    assert (later.new, later.changed) == (1, 0)


def test_a_changed_state_is_written_and_counted_as_changed() -> None:
    synced = advance_state(
        state(), [row(1, T0), row(2, T0)], lookback_ms=MINUTE, full_listing=False, synced_at_ms=NOW
    )
    result = classify([row(2, T0 + 10, "DELETE_FAILED")], synced, None, observed_at_ms=2)
    assert [(r["version"], r["status"]) for r in result.to_write] == [(2, "DELETE_FAILED")]
    assert (result.new, result.changed) == (0, 1)


def test_an_update_to_a_version_outside_the_window_counts_as_changed() -> None:
    synced = advance_state(
        state(),
        [row(1, T0), row(2, T0 + 10 * MINUTE)],
        lookback_ms=MINUTE,
        full_listing=False,
        synced_at_ms=NOW,
    )
    assert set(synced.window) == {2}
    result = classify([row(1, T0 + 11 * MINUTE, "DELETING")], synced, None, observed_at_ms=2)
    assert (result.new, result.changed) == (0, 1)


def test_full_listing_tombstones_vanished_versions_with_their_last_fields() -> None:
    stored = {1: row(1, T0), 2: row(2, T0 + 1)}
    result = classify([row(1, T0)], state(watermark_ms=T0 + 1), stored, observed_at_ms=T0 + 5)
    assert result.deleted == 1 and len(result.to_write) == 1
    tomb = result.to_write[0]
    assert tomb["is_deleted"] and tomb["version"] == 2
    assert tomb["last_modified_time"] == T0 + 1 and tomb["observed_at"] == T0 + 5


def test_watermark_never_decreases_and_window_drops_old_versions() -> None:
    synced = advance_state(
        state(watermark_ms=T0 + 20 * MINUTE, window={9: (T0 + 20 * MINUTE, "x")}),
        [row(1, T0)],
        lookback_ms=MINUTE,
        full_listing=False,
        synced_at_ms=NOW,
    )
    assert synced.watermark_ms == T0 + 20 * MINUTE
    assert set(synced.window) == {9}
    assert synced.max_version == 1


def test_full_listing_window_holds_only_listed_versions() -> None:
    synced = advance_state(
        state(watermark_ms=T0, window={9: (T0, "x")}),
        [row(1, T0)],
        lookback_ms=MINUTE,
        full_listing=True,
        synced_at_ms=NOW,
    )
    assert set(synced.window) == {1}


def test_deleted_image_state_resets_what_a_recreated_image_needs() -> None:
    gone = deleted_image_state(
        state(watermark_ms=T0, max_version=4, window={4: (T0, "x")}), synced_at_ms=7
    )
    assert gone.is_deleted and gone.window == {} and gone.last_synced_ms == 7
    assert listing_start_ms(gone, MINUTE, False) is None
    assert classify([row(1, T0 + 1)], gone, None, observed_at_ms=8).new == 1


def test_version_row_normalises_the_api_record() -> None:
    normal = row(3, T0 + 1234)
    assert normal["account_id"] == "012345678901" and normal["region"] == "us-east-1"
    assert normal["last_modified_time"] == T0 + 1234 and normal["failure_reason"] is None
    assert fingerprint(normal) == fingerprint(dict(normal, observed_at=0))
    assert fingerprint(normal) != fingerprint(dict(normal, status="CREATE_FAILED"))


def test_version_row_keeps_unknown_status_ignores_extra_fields_and_accepts_none_arn() -> None:
    odd = version_row(
        "Custom.R-4",
        item(2, T0, "SOMETHING_NEW", Unexpected={"a": 1}, ImageVersionArn="None"),
        observed_at_ms=0,
        image_account_region=("012345678901", "us-east-1"),
    )
    assert odd["status"] == "SOMETHING_NEW" and odd["image_version_arn"] == "None"
    assert (odd["account_id"], odd["region"]) == ("012345678901", "us-east-1")


@pytest.mark.parametrize("field", ["Version", "ImageArn", "LastModifiedTime", "ImageVersionStatus"])
def test_version_row_rejects_a_missing_required_field(field: str) -> None:
    broken = item(1, T0)
    del broken[field]
    with pytest.raises(MalformedRecord, match=field):
        version_row(
            "Custom.R-4",
            broken,
            observed_at_ms=0,
            image_account_region=("012345678901", "us-east-1"),
        )


OTHER_REGION_ARN = "arn:aws:sagemaker:eu-west-1:012345678901:image"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"ImageArn": f"{ARN[:-10]}other"}, "ImageArn .* does not name image Custom.R-4"),
        ({"ImageArn": f"{ARN}-5"}, "ImageArn .* does not name image Custom.R-4"),
        ({"ImageArn": f"{OTHER_REGION_ARN}/Custom.R-4"}, "ImageArn names account .* eu-west-1"),
        ({"ImageVersionArn": f"{VERSION_ARN[:-10]}other/7"}, "does not name version 7 of"),
        ({"ImageVersionArn": f"{VERSION_ARN}/8"}, "does not name version 7 of"),
        ({"ImageVersionArn": f"{VERSION_ARN}/07"}, "does not name version 7 of"),
        ({"ImageVersionArn": f"{VERSION_ARN}"}, "does not name version 7 of"),
        ({"ImageVersionArn": "garbage"}, "does not name version 7 of"),
        ({"ImageVersionArn": VERSION_ARN.replace("012345678901", "999999999999") + "/7"}, "of"),
        (
            {"ImageVersionArn": f"{OTHER_REGION_ARN}-version/custom.r-4/7"},
            "ImageVersionArn .* does not name version 7 of image Custom.R-4 in account "
            "012345678901 in us-east-1",
        ),
    ],
)
def test_version_row_rejects_arns_that_name_another_image_version_or_place(
    changes: dict[str, str], problem: str
) -> None:
    with pytest.raises(MalformedRecord, match=problem):
        version_row(
            "Custom.R-4",
            item(7, T0, **changes),
            observed_at_ms=0,
            image_account_region=("012345678901", "us-east-1"),
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"ImageArn": ARN.lower()},  # should ImageArn lower-case the name as well
        {"ImageArn": f"{ARN[:-10]}CUSTOM.R-4"},
        {"ImageVersionArn": f"{VERSION_ARN[:-10]}Custom.R-4/7"},  # should it keep the case
        {"ImageVersionArn": "None"},
    ],
)
def test_version_row_accepts_arns_that_differ_from_the_name_only_in_case(
    changes: dict[str, str],
) -> None:
    accepted = version_row(
        "Custom.R-4",
        item(7, T0, **changes),
        observed_at_ms=0,
        image_account_region=("012345678901", "us-east-1"),
    )
    assert accepted["image_name"] == "Custom.R-4"
    assert {accepted["image_arn"], accepted["image_version_arn"]} == {
        changes.get("ImageArn", ARN),
        changes.get("ImageVersionArn", f"{VERSION_ARN}/7"),
    }


@pytest.mark.parametrize(
    ("name", "accepted"), [("Custom.R-4", True), ("custom.r-4", True), ("Custom.R-5", False)]
)
def test_image_row_takes_an_image_whose_arn_names_it_in_any_case(name: str, accepted: bool) -> None:
    record = {
        "ImageName": name,
        "ImageArn": ARN,
        "ImageStatus": "CREATED",
        "CreationTime": from_ms(T0),
        "LastModifiedTime": from_ms(T0),
    }
    if accepted:
        assert image_row(record, observed_at_ms=0, region="us-east-1")["image_name"] == name
    else:
        with pytest.raises(MalformedRecord, match=f"does not name image {name}"):
            image_row(record, observed_at_ms=0, region="us-east-1")


def test_rows_round_trip_through_arrow_exactly() -> None:
    rows = [row(1, T0 + 1), row(2, T0 + 999)]
    table = rows_to_table(rows)
    assert table.schema.equals(IMAGE_VERSION_SCHEMA)
    assert table.column("version").type == pa.int32()
    assert table_to_rows(table) == rows


def test_a_version_listed_twice_in_one_listing_keeps_its_latest_state() -> None:
    result = classify(
        [row(1, T0 + 5, "CREATED"), row(1, T0 + 1, "CREATING")], None, None, observed_at_ms=1
    )
    assert [(r["version"], r["status"]) for r in result.to_write] == [(1, "CREATED")]
    assert result.new == 1


def test_a_timestamp_far_ahead_of_our_clock_does_not_move_the_watermark() -> None:
    future = NOW + 60 * MINUTE
    synced = advance_state(
        state(),
        [row(1, T0), row(2, future)],
        lookback_ms=MINUTE,
        full_listing=False,
        synced_at_ms=NOW,
    )
    assert synced.watermark_ms == T0
    assert set(synced.window) == {1, 2}  # the future row is still recognised when re-read
    later = classify([row(2, future), row(3, T0 + 5)], synced, None, observed_at_ms=NOW + 2)
    assert [r["version"] for r in later.to_write] == [3]


def test_an_image_whose_every_stamp_is_far_ahead_is_not_rewritten_on_each_sync() -> None:
    future = NOW + 60 * MINUTE
    listed = [row(1, future), row(2, future + 1)]
    synced = advance_state(
        state(), listed, lookback_ms=MINUTE, full_listing=False, synced_at_ms=NOW
    )
    assert synced.watermark_ms is None  # no trustworthy stamp: the next listing is full
    again = classify(listed, synced, None, observed_at_ms=NOW + 1)
    assert again.to_write == [] and again.changed == 0 and again.new == 0


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(2026, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC), 1_772_366_400_123),
        (datetime(2026, 3, 1, 12, 0, 0, 123_499, tzinfo=UTC), 1_772_366_400_123),
        (datetime(2026, 3, 1, 12, 0, 0, 123_500, tzinfo=UTC), 1_772_366_400_124),
        (datetime(2026, 3, 1, 12, 0, 0, 999_600, tzinfo=UTC), 1_772_366_401_000),
        (datetime(1969, 12, 31, 23, 59, 59, 999_400, tzinfo=UTC), -1),
        (datetime(1969, 12, 31, 23, 59, 59, 999_600, tzinfo=UTC), 0),
        (datetime(2026, 3, 1, 12, tzinfo=None), 1_772_366_400_000),
    ],
)
def test_to_ms_rounds_half_up_to_the_millisecond(when: datetime, expected: int) -> None:
    assert to_ms(when) == expected


def test_the_catalogue_keeps_one_row_per_image_its_latest() -> None:
    def image(name: str, modified_ms: int, label: str) -> dict:
        return {"image_name": name, "last_modified_time": modified_ms, "label": label}

    rows, repeated = latest_per_image(
        [
            image("a", T0 + 5, "a first"),
            image("b", T0, "b"),
            image("a", T0 + 1, "a older"),
            image("c", T0, "c first"),
            image("a", T0 + 5, "a again, as late"),
            image("c", T0 + 9, "c later"),
        ]
    )
    assert [row["label"] for row in rows] == ["a again, as late", "b", "c later"]
    assert repeated == ["a", "c"]
