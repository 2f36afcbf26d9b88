"""``trusted_time``: which time to believe when a station's clock may lie (FIELD-NOTES 11).

A missing station timestamp is the receive time (and not a lie); one before 2000 (an unset
clock) or more than an hour ahead of the receive time is replaced by the receive time and
reported as replaced; anything else is the station's own time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cpms.station_lifecycle import trusted_time

RECEIVED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_no_station_time_is_the_receive_time_and_not_a_lie() -> None:
    assert trusted_time(None, RECEIVED) == (RECEIVED, False)


@pytest.mark.parametrize(
    "station_time",
    [
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        RECEIVED + timedelta(hours=2),
        RECEIVED + timedelta(hours=1, seconds=1),
        RECEIVED + timedelta(days=365 * 10),
    ],
    ids=["1999-12-31", "1970", "2h-ahead", "just-over-1h-ahead", "10y-ahead"],
)
def test_an_unbelievable_station_time_is_replaced_by_the_receive_time(
    station_time: datetime,
) -> None:
    assert trusted_time(station_time, RECEIVED) == (RECEIVED, True)


@pytest.mark.parametrize(
    "station_time",
    [
        RECEIVED + timedelta(minutes=30),
        RECEIVED + timedelta(hours=1),
        RECEIVED,
        RECEIVED - timedelta(minutes=5),
        RECEIVED - timedelta(days=3),
        datetime(2000, 1, 1, tzinfo=UTC),
    ],
    ids=["30min-ahead", "1h-ahead", "same", "5min-ago", "3d-ago", "2000-01-01"],
)
def test_a_believable_station_time_is_kept(station_time: datetime) -> None:
    assert trusted_time(station_time, RECEIVED) == (station_time, False)


def test_a_station_time_with_an_offset_is_compared_as_the_same_instant() -> None:
    # 13:30+02:00 is 11:30 UTC: half an hour before the receive time, so believable.
    local = datetime(2025, 6, 1, 13, 30, tzinfo=timezone(timedelta(hours=2)))
    believed, replaced = trusted_time(local, RECEIVED)
    assert replaced is False
    assert believed == RECEIVED - timedelta(minutes=30)
