"""Unit tests of ``RequestPacer`` (TOO_OFTEN) and ``active_profile`` in ``cpms.remote_control``.

``RequestPacer``: one request per key per interval; a refused request does not move the
next allowed moment; keys are independent; entries are forgotten once their interval has
passed and never exceed ``max_entries``; without an interval of its own it follows
``PROFILE_REQUEST_INTERVAL``. ``active_profile``: a limit as the ActiveChargingProfile in
force now (checked with ocpi-types), periods counted from now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ocpi_models import check

from cpms import remote_control
from cpms.remote_control import RequestPacer, active_profile
from cpms.station_port import ChargingLimit, LimitPeriod


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_request_per_key_per_interval() -> None:
    clock = Clock()
    pacer = RequestPacer(5.0, clock=clock)

    assert pacer.admit((1, "S-1")) == 0.0
    clock.now += 2.0
    assert pacer.admit((1, "S-1")) == pytest.approx(3.0)
    clock.now += 2.9
    assert pacer.admit((1, "S-1")) == pytest.approx(0.1)  # refusals moved nothing
    assert pacer.admit((2, "S-1")) == 0.0  # another partner
    assert pacer.admit((1, "S-2")) == 0.0  # another session
    clock.now += 0.1
    assert pacer.admit((1, "S-1")) == 0.0


def test_entries_are_forgotten_after_their_interval_and_bounded() -> None:
    clock = Clock()
    pacer = RequestPacer(5.0, clock=clock, max_entries=3)
    for session in ("A", "B"):
        pacer.admit((1, session))
    clock.now += 3.0
    pacer.admit((1, "C"))
    assert len(pacer) == 3

    clock.now += 2.0  # A and B are 5 s old: gone at the next request
    pacer.admit((1, "D"))
    assert len(pacer) == 2
    for session in ("E", "F", "G"):
        pacer.admit((1, session))
    assert len(pacer) == 3  # the oldest give way


def test_the_default_interval_is_the_module_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    pacer = RequestPacer(clock=clock)
    assert pacer.interval == 5.0
    pacer.admit("key")
    assert pacer.admit("key") == pytest.approx(5.0)

    monkeypatch.setattr(remote_control, "PROFILE_REQUEST_INTERVAL", 0.0)
    assert pacer.admit("key") == 0.0


NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
LIMIT = ChargingLimit(
    "W",
    (LimitPeriod(0, Decimal(11000)), LimitPeriod(1800, Decimal("7400.5"))),
    duration=3600,
    min_rate=Decimal(1400),
)


def test_the_active_profile_counts_from_now() -> None:
    active = active_profile(LIMIT, anchor=NOW - timedelta(seconds=600), now=NOW)

    assert active is not None
    check("ActiveChargingProfile", active)
    assert active == {
        "start_date_time": "2025-03-01T10:00:00Z",
        "charging_profile": {
            "charging_rate_unit": "W",
            "duration": 3000,
            "min_charging_rate": 1400.0,
            "charging_profile_period": [
                {"start_period": 0, "limit": 11000.0},
                {"start_period": 1200, "limit": 7400.5},
            ],
        },
    }


def test_periods_over_are_left_out_and_a_limit_over_is_none() -> None:
    later = active_profile(LIMIT, anchor=NOW - timedelta(seconds=2000), now=NOW)
    assert later is not None
    assert later["charging_profile"]["charging_profile_period"] == [
        {"start_period": 0, "limit": 7400.5}
    ]
    assert later["charging_profile"]["duration"] == 1600

    assert active_profile(LIMIT, anchor=NOW - timedelta(seconds=3600), now=NOW) is None


def test_a_limit_that_starts_later_keeps_its_start() -> None:
    start = NOW + timedelta(minutes=10)
    active = active_profile(LIMIT, anchor=start, now=NOW)

    assert active is not None
    check("ActiveChargingProfile", active)
    assert active["start_date_time"] == "2025-03-01T10:10:00Z"
    assert active["charging_profile"]["duration"] == 3600
    assert [p["start_period"] for p in active["charging_profile"]["charging_profile_period"]] == [
        0,
        1800,
    ]
