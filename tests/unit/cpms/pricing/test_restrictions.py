"""TariffRestrictions, field by field: ``periods.holds`` and where sessions are cut.

Each field is tested twice: at its boundary with ``holds`` (inclusive or exclusive as OCPI
2.2.1 says: start_time/start_date/min_* inclusive, end_time/end_date/max_* exclusive), and in
a priced session whose periods must change exactly where the field's answer changes. Local
times are the Location's time zone; ``select_tariff`` picks the tariff by type and validity.
Prices below are without VAT, so excl. and incl. VAT are equal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cpms.pricing import MeterPoint, Price, TariffPlan, Usage, price, select_tariff
from cpms.pricing.periods import charging_periods, holds
from cpms.pricing.tariff_plan import Restrictions

D = Decimal
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MONDAY_NOON = datetime(2024, 3, 4, 12, 0, tzinfo=AMSTERDAM)
VOLTAGE = D(230)


def holds_at(
    raw: dict[str, Any],
    local: datetime = MONDAY_NOON,
    *,
    elapsed: str = "0",
    kwh: str = "0",
    power_kw: str = "0",
    current_a: str | None = None,
) -> bool:
    """Ask ``holds`` about restrictions written as OCPI JSON."""
    return holds(
        Restrictions.from_ocpi(raw),
        local,
        D(elapsed),
        D(kwh),
        D(power_kw),
        None if current_a is None else D(current_a),
    )


def local(day: int, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A wall-clock moment in March 2024, Amsterdam."""
    return datetime(2024, 3, day, hour, minute, second, micro, tzinfo=AMSTERDAM)


# --- holds: one field at a time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "moment", "expected"),
    [
        ({"start_time": "10:00", "end_time": "17:00"}, local(4, 9, 59, 59), False),
        ({"start_time": "10:00", "end_time": "17:00"}, local(4, 10), True),
        ({"start_time": "10:00", "end_time": "17:00"}, local(4, 16, 59, 59, 999999), True),
        ({"start_time": "10:00", "end_time": "17:00"}, local(4, 17), False),
        # end before start: the window wraps past midnight
        ({"start_time": "22:00", "end_time": "06:00"}, local(4, 21, 59, 59), False),
        ({"start_time": "22:00", "end_time": "06:00"}, local(4, 22), True),
        ({"start_time": "22:00", "end_time": "06:00"}, local(4, 23, 59, 59), True),
        ({"start_time": "22:00", "end_time": "06:00"}, local(5, 0), True),
        ({"start_time": "22:00", "end_time": "06:00"}, local(5, 5, 59, 59), True),
        ({"start_time": "22:00", "end_time": "06:00"}, local(5, 6), False),
        ({"start_time": "22:00", "end_time": "06:00"}, local(5, 12), False),
        # "00:00" as an end time is the end of the day
        ({"start_time": "20:00", "end_time": "00:00"}, local(4, 19, 59, 59), False),
        ({"start_time": "20:00", "end_time": "00:00"}, local(4, 20), True),
        ({"start_time": "20:00", "end_time": "00:00"}, local(4, 23, 59, 59, 999999), True),
        ({"start_time": "20:00", "end_time": "00:00"}, local(5, 0), False),
        ({"start_time": "20:00", "end_time": "00:00"}, local(5, 12), False),
        # one side only: from the start to the end of the day, or from midnight to the end
        ({"start_time": "18:00"}, local(4, 17, 59), False),
        ({"start_time": "18:00"}, local(4, 18), True),
        ({"start_time": "18:00"}, local(4, 23, 59), True),
        ({"end_time": "08:00"}, local(4, 0), True),
        ({"end_time": "08:00"}, local(4, 7, 59, 59), True),
        ({"end_time": "08:00"}, local(4, 8), False),
    ],
)
def test_time_of_day_window(raw: dict[str, Any], moment: datetime, expected: bool) -> None:
    assert holds_at(raw, moment) is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 2, 29, 23, 59, 59, tzinfo=AMSTERDAM), False),
        (local(1, 0), True),  # start_date inclusive
        (local(2, 23, 59, 59, 999999), True),
        (local(3, 0), False),  # end_date exclusive
    ],
)
def test_start_date_inclusive_end_date_exclusive(moment: datetime, expected: bool) -> None:
    assert holds_at({"start_date": "2024-03-01", "end_date": "2024-03-03"}, moment) is expected


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ({"min_kwh": 10}, "9.999999", False),
        ({"min_kwh": 10}, "10", True),
        ({"max_kwh": 10}, "9.999999", True),
        ({"max_kwh": 10}, "10", False),
    ],
)
def test_energy_bounds(raw: dict[str, Any], value: str, expected: bool) -> None:
    assert holds_at(raw, kwh=value) is expected


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ({"min_current": 16}, "15.99", False),
        ({"min_current": 16}, "16", True),
        ({"min_current": 16}, None, False),  # unknown current cannot satisfy a bound
        ({"max_current": 16}, "15.99", True),
        ({"max_current": 16}, "16", False),
        ({"max_current": 16}, None, False),
    ],
)
def test_current_bounds(raw: dict[str, Any], value: str | None, expected: bool) -> None:
    assert holds_at(raw, current_a=value) is expected


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ({"min_power": 11}, "10.99", False),
        ({"min_power": 11}, "11", True),
        ({"max_power": 11}, "10.99", True),
        ({"max_power": 11}, "11", False),
    ],
)
def test_power_bounds(raw: dict[str, Any], value: str, expected: bool) -> None:
    assert holds_at(raw, power_kw=value) is expected


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ({"min_duration": 1800}, "1799.999999", False),
        ({"min_duration": 1800}, "1800", True),
        ({"max_duration": 1800}, "1799.999999", True),
        ({"max_duration": 1800}, "1800", False),
    ],
)
def test_duration_bounds(raw: dict[str, Any], value: str, expected: bool) -> None:
    assert holds_at(raw, elapsed=value) is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (MONDAY_NOON, False),
        (local(9, 12), True),  # Saturday
        (local(10, 12), True),  # Sunday
    ],
)
def test_day_of_week(moment: datetime, expected: bool) -> None:
    assert holds_at({"day_of_week": ["SATURDAY", "SUNDAY"]}, moment) is expected


def test_day_of_week_is_read_from_the_local_date_not_utc() -> None:
    instant = datetime(2024, 3, 3, 20, 0, tzinfo=UTC)  # Sunday in UTC
    tokyo = instant.astimezone(ZoneInfo("Asia/Tokyo"))  # Monday 05:00 in Tokyo

    assert holds_at({"day_of_week": ["MONDAY"]}, tokyo)
    assert not holds_at({"day_of_week": ["MONDAY"]}, instant)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [(MONDAY_NOON, False), (local(9, 12), True), (local(9, 19), False)],
)
def test_all_set_restrictions_must_hold_together(moment: datetime, expected: bool) -> None:
    raw = {"start_time": "09:00", "end_time": "18:00", "day_of_week": ["SATURDAY"]}
    assert holds_at(raw, moment) is expected


# --- period cutting ------------------------------------------------------------------------


def tariff(*elements: tuple[list[dict[str, Any]], dict[str, Any] | None]) -> TariffPlan:
    """A EUR tariff from (price components, restrictions) pairs, in order."""
    return TariffPlan.from_ocpi(
        {
            "country_code": "NL",
            "party_id": "CPO",
            "id": "T1",
            "currency": "EUR",
            "elements": [
                {"price_components": components, **({"restrictions": r} if r else {})}
                for components, r in elements
            ],
            "last_updated": "2024-01-01T00:00:00Z",
        }
    )


def per_hour(price_: float, dimension: str = "TIME") -> list[dict[str, Any]]:
    return [{"type": dimension, "price": price_, "step_size": 1}]


def per_kwh(price_: float) -> list[dict[str, Any]]:
    return [{"type": "ENERGY", "price": price_, "step_size": 1}]


def usage(
    start: datetime,
    *legs: tuple[timedelta, str, str | None],
    time_zone: str = "Europe/Amsterdam",
    voltage_v: Decimal | None = VOLTAGE,
) -> Usage:
    """A session from ``start``: each leg is (duration, kWh charged, measured amps or None)."""
    at, energy, points = start, D(0), []
    for duration, kwh, amps in legs:
        at += duration
        energy += D(kwh) * 1000
        points.append(MeterPoint(at, energy, None if amps is None else D(amps)))
    return Usage(start, at, points, time_zone=time_zone, voltage_v=voltage_v)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def cuts(plan: TariffPlan, session: Usage, dimension: str) -> list[tuple[datetime, Decimal]]:
    """Each period's start and the unit price of ``dimension`` in force."""
    return [(p.start, p.active[dimension][1].price) for p in charging_periods(plan, session)]


def total(plan: TariffPlan, session: Usage) -> Price:
    return price(plan, session).total_cost


def euros(amount: str) -> Price:
    return Price(D(amount), D(amount))


@pytest.mark.parametrize(
    ("start", "expected_cuts"),
    [
        # 21:00-22:00 at 2.00, 22:00-23:00 at 0.50: 2.50
        (local(4, 21), [(local(4, 21), D("2")), (local(4, 22), D("0.5"))]),
        # 05:00-06:00 at 0.50 (still night), 06:00-07:00 at 2.00: 2.50
        (local(5, 5), [(local(5, 5), D("0.5")), (local(5, 6), D("2"))]),
    ],
    ids=["into the night", "out of the night"],
)
def test_a_window_wrapping_past_midnight_cuts_at_both_ends(
    start: datetime, expected_cuts: list[tuple[datetime, Decimal]]
) -> None:
    plan = tariff(
        (per_hour(0.5), {"start_time": "22:00", "end_time": "06:00"}), (per_hour(2), None)
    )
    session = usage(start, (hours(2), "14", None))

    assert cuts(plan, session, "TIME") == expected_cuts
    assert total(plan, session) == euros("2.50")


def test_an_end_time_of_midnight_runs_to_the_end_of_the_day() -> None:
    plan = tariff((per_hour(3), {"start_time": "20:00", "end_time": "00:00"}), (per_hour(1), None))
    session = usage(local(4, 19), (hours(6), "42", None))

    assert cuts(plan, session, "TIME") == [
        (local(4, 19), D("1")),
        (local(4, 20), D("3")),
        (local(5, 0), D("1")),
    ]
    # 1 h x 1.00 + 4 h x 3.00 + 1 h x 1.00
    assert total(plan, session) == euros("14.00")


@pytest.mark.parametrize(
    ("restrictions", "prices"),
    [
        ({"start_date": "2024-03-05"}, [D("0.3"), D("0.1")]),  # from local midnight on
        ({"end_date": "2024-03-05"}, [D("0.1"), D("0.3")]),  # until local midnight
    ],
)
def test_dates_change_at_local_midnight(
    restrictions: dict[str, Any], prices: list[Decimal]
) -> None:
    plan = tariff((per_kwh(0.1), restrictions), (per_kwh(0.3), None))
    session = usage(local(4, 23), (hours(2), "2", None))

    # local midnight in Amsterdam (UTC+1 in March) is 23:00Z
    assert cuts(plan, session, "ENERGY") == [
        (local(4, 23), prices[0]),
        (datetime(2024, 3, 4, 23, 0, tzinfo=UTC), prices[1]),
    ]
    # 1 kWh x 0.10 + 1 kWh x 0.30
    assert total(plan, session) == euros("0.40")


ENERGY_BOUNDS = pytest.mark.parametrize(
    "elements",
    [
        [(per_kwh(0.3), {"min_kwh": 10}), (per_kwh(0.1), None)],
        [(per_kwh(0.1), {"max_kwh": 10}), (per_kwh(0.3), None)],
    ],
    ids=["min_kwh", "max_kwh"],
)


@ENERGY_BOUNDS
def test_an_energy_bound_reached_at_a_reading_starts_the_new_price(
    elements: list[tuple[list[dict[str, Any]], dict[str, Any] | None]],
) -> None:
    plan = tariff(*elements)
    session = usage(local(4, 10), (hours(1), "10", None), (hours(2), "20", None))

    # 10 kWh is reached at the 11:00 reading: min_kwh (inclusive) holds from there on,
    # max_kwh (exclusive) no longer does. (The engine prices all 30 kWh at 0.10: 3.00.)
    assert cuts(plan, session, "ENERGY") == [(local(4, 10), D("0.1")), (local(4, 11), D("0.3"))]
    # 10 kWh x 0.10 + 20 kWh x 0.30
    assert total(plan, session) == euros("7.00")


@ENERGY_BOUNDS
def test_an_energy_bound_reached_inside_an_interval_is_interpolated(
    elements: list[tuple[list[dict[str, Any]], dict[str, Any] | None]],
) -> None:
    plan = tariff(*elements)
    session = usage(local(4, 10), (hours(3), "30", None))  # one reading: 10 kWh an hour

    # Spread evenly, 10 kWh is reached after exactly one hour: a new period starts there.
    assert cuts(plan, session, "ENERGY") == [(local(4, 10), D("0.1")), (local(4, 11), D("0.3"))]
    # 10 kWh x 0.10 + 20 kWh x 0.30
    assert total(plan, session) == euros("7.00")


def test_an_energy_bound_crossed_between_minute_readings_is_interpolated() -> None:
    plan = tariff((per_kwh(0.1), {"max_kwh": 0.1}), (per_kwh(0.3), None))
    session = usage(local(4, 10), (timedelta(seconds=60), "0.3", None))

    # 300 Wh in 60 s: 100 Wh is reached at 20 s; 0.1 x 0.10 + 0.2 x 0.30 = 0.07
    assert cuts(plan, session, "ENERGY") == [
        (local(4, 10), D("0.1")),
        (local(4, 10, 0, 20), D("0.3")),
    ]
    assert total(plan, session) == euros("0.07")


def test_an_interpolated_energy_bound_is_rounded_up_to_the_microsecond() -> None:
    plan = tariff((per_kwh(0.1), {"max_kwh": 1}), (per_kwh(0.3), None))
    start = local(4, 10)
    session = usage(start, (timedelta(seconds=7), "3", None))

    periods = charging_periods(plan, session)

    # 1 kWh of 3 kWh in 7 s is reached at 2.333333.. s: the cut is at 2.333334 s, where the
    # bound has been reached, so max_kwh (exclusive) no longer holds from the cut on.
    assert periods[1].start == start + timedelta(microseconds=2333334)
    assert periods[1].energy_before_wh >= 1000
    assert periods[0].energy_before_wh + periods[0].energy_wh < 1000 + D("0.001")
    assert [p.active["ENERGY"][1].price for p in periods] == [D("0.1"), D("0.3")]


@pytest.mark.parametrize(
    ("restrictions", "wh_per_hour", "amps", "voltage", "expected_price"),
    [
        ({"min_current": 32}, "7.36", None, D(230), D("2")),  # 7360 W / 230 V = 32 A
        ({"min_current": 32}, "7.359", None, D(230), D("1")),  # 31.996 A
        ({"min_current": 32}, "7.36", "31", D(230), D("1")),  # measured beats estimated
        ({"min_current": 32}, "7.36", None, None, D("1")),  # no voltage: current unknown
        ({"max_current": 16}, "3.68", None, D(230), D("1")),  # 16 A is not < 16
        ({"max_current": 16}, "3.679", None, D(230), D("2")),  # 15.996 A
        ({"max_current": 16}, "11", "15", D(230), D("2")),  # measured 15 A, estimate 47.8 A
    ],
)
def test_current_is_measured_or_estimated_from_power_and_voltage(
    restrictions: dict[str, Any],
    wh_per_hour: str,
    amps: str | None,
    voltage: Decimal | None,
    expected_price: Decimal,
) -> None:
    plan = tariff((per_hour(2), restrictions), (per_hour(1), None))
    session = usage(local(4, 10), (hours(1), wh_per_hour, amps), voltage_v=voltage)

    assert cuts(plan, session, "TIME") == [(local(4, 10), expected_price)]


def test_a_current_change_between_readings_cuts_the_session() -> None:
    plan = tariff((per_hour(2), {"min_current": 32}), (per_hour(1), None))
    session = usage(local(4, 10), (hours(0.5), "1.84", "16"), (hours(0.5), "4.6", "40"))

    assert cuts(plan, session, "TIME") == [(local(4, 10), D("1")), (local(4, 10, 30), D("2"))]
    # 0.5 h x 1.00 + 0.5 h x 2.00
    assert total(plan, session) == euros("1.50")


@pytest.mark.parametrize(
    "elements",
    [
        [(per_kwh(0.5), {"min_power": 11}), (per_kwh(0.2), None)],
        [(per_kwh(0.2), {"max_power": 11}), (per_kwh(0.5), None)],
    ],
    ids=["min_power", "max_power"],
)
def test_a_power_change_between_readings_cuts_the_session(
    elements: list[tuple[list[dict[str, Any]], dict[str, Any] | None]],
) -> None:
    plan = tariff(*elements)
    # 30 min at 3.6 kW (1.8 kWh), then 30 min at exactly 11 kW (5.5 kWh)
    session = usage(local(4, 10), (hours(0.5), "1.8", None), (hours(0.5), "5.5", None))

    assert cuts(plan, session, "ENERGY") == [
        (local(4, 10), D("0.2")),
        (local(4, 10, 30), D("0.5")),
    ]
    # 1.8 x 0.20 + 5.5 x 0.50 = 0.36 + 2.75
    assert total(plan, session) == euros("3.11")


@pytest.mark.parametrize(
    "elements",
    [
        [(per_hour(3), {"min_duration": 3600}), (per_hour(1), None)],
        [(per_hour(1), {"max_duration": 3600}), (per_hour(3), None)],
    ],
    ids=["min_duration", "max_duration"],
)
def test_a_duration_bound_cuts_the_session_at_that_age(
    elements: list[tuple[list[dict[str, Any]], dict[str, Any] | None]],
) -> None:
    plan = tariff(*elements)
    session = usage(local(4, 10), (hours(1.5), "11", None))

    assert cuts(plan, session, "TIME") == [(local(4, 10), D("1")), (local(4, 11), D("3"))]
    # 1 h x 1.00 + 0.5 h x 3.00
    assert total(plan, session) == euros("2.50")


@pytest.mark.parametrize(
    ("time_zone", "expected"),
    [("Asia/Tokyo", "5.00"), ("UTC", "1.00")],
)
def test_day_of_week_is_evaluated_in_the_location_time_zone(time_zone: str, expected: str) -> None:
    plan = tariff((per_hour(5), {"day_of_week": ["MONDAY"]}), (per_hour(1), None))
    # 2024-03-03 20:00-21:00Z: Sunday in UTC, Monday 05:00-06:00 in Tokyo
    session = usage(
        datetime(2024, 3, 3, 20, 0, tzinfo=UTC), (hours(1), "7", None), time_zone=time_zone
    )

    assert total(plan, session) == euros(expected)


def test_a_weekday_restriction_changes_at_local_midnight() -> None:
    plan = tariff((per_hour(2), {"day_of_week": ["SATURDAY"]}), (per_hour(1), None))
    session = usage(datetime(2024, 3, 8, 23, 30, tzinfo=AMSTERDAM), (hours(1), "7", None))

    assert cuts(plan, session, "TIME") == [
        (datetime(2024, 3, 8, 23, 30, tzinfo=AMSTERDAM), D("1")),
        (datetime(2024, 3, 8, 23, 0, tzinfo=UTC), D("2")),  # Saturday 00:00 local
    ]
    # Friday 0.5 h x 1.00 + Saturday 0.5 h x 2.00
    assert total(plan, session) == euros("1.50")


# --- daylight saving time ------------------------------------------------------------------

DAY_AND_EVENING = (
    (per_hour(1), {"start_time": "00:00", "end_time": "17:00"}),
    (per_hour(2), {"start_time": "17:00", "end_time": "00:00"}),
)


def test_on_the_23_hour_day_17_00_local_is_still_the_boundary() -> None:
    plan = tariff(*DAY_AND_EVENING)
    # 2024-03-31 in Amsterdam: 00:00 CET = 23:00Z the day before; clocks jump 02:00 -> 03:00;
    # 17:00 CEST = 15:00Z; the next midnight is 22:00Z: a 23-hour day.
    session = usage(datetime(2024, 3, 30, 23, 0, tzinfo=UTC), (hours(23), "100", None))

    assert cuts(plan, session, "TIME") == [
        (datetime(2024, 3, 30, 23, 0, tzinfo=UTC), D("1")),
        (datetime(2024, 3, 31, 15, 0, tzinfo=UTC), D("2")),
    ]
    # 16 h x 1.00 + 7 h x 2.00 (a fixed UTC+1 would give 17 h + 6 h = 29.00)
    assert total(plan, session) == euros("30.00")


def test_on_the_25_hour_day_17_00_local_is_still_the_boundary() -> None:
    plan = tariff(*DAY_AND_EVENING)
    # 2024-10-27: 00:00 CEST = 22:00Z the day before; 17:00 CET = 16:00Z; midnight 23:00Z.
    session = usage(datetime(2024, 10, 26, 22, 0, tzinfo=UTC), (hours(25), "100", None))

    assert cuts(plan, session, "TIME") == [
        (datetime(2024, 10, 26, 22, 0, tzinfo=UTC), D("1")),
        (datetime(2024, 10, 27, 16, 0, tzinfo=UTC), D("2")),
    ]
    # 18 h x 1.00 + 7 h x 2.00
    assert total(plan, session) == euros("32.00")


def test_the_repeated_hour_of_the_25_hour_day_is_in_its_window_twice() -> None:
    plan = tariff((per_hour(10), {"start_time": "02:00", "end_time": "03:00"}), (per_hour(1), None))
    # 02:00-03:00 local happens at 00:00-01:00Z (CEST) and again at 01:00-02:00Z (CET)
    session = usage(datetime(2024, 10, 26, 23, 0, tzinfo=UTC), (hours(4), "28", None))

    assert cuts(plan, session, "TIME") == [
        (datetime(2024, 10, 26, 23, 0, tzinfo=UTC), D("1")),
        (datetime(2024, 10, 27, 0, 0, tzinfo=UTC), D("10")),
        (datetime(2024, 10, 27, 2, 0, tzinfo=UTC), D("1")),
    ]
    # 1 h x 1.00 + 2 h x 10.00 + 1 h x 1.00
    assert total(plan, session) == euros("22.00")


def test_the_skipped_hour_of_the_23_hour_day_is_never_in_its_window() -> None:
    plan = tariff((per_hour(10), {"start_time": "02:00", "end_time": "03:00"}), (per_hour(1), None))
    # 00:00-02:00Z on 2024-03-31 is 01:00 CET .. 04:00 CEST: there is no 02:xx local
    session = usage(datetime(2024, 3, 31, 0, 0, tzinfo=UTC), (hours(2), "14", None))

    assert total(plan, session) == euros("2.00")


# --- which tariff applies ------------------------------------------------------------------


def typed(tariff_id: str, kind: str | None, **fields: str) -> TariffPlan:
    document: dict[str, Any] = {
        "country_code": "NL",
        "party_id": "CPO",
        "id": tariff_id,
        "currency": "EUR",
        "elements": [{"price_components": per_hour(1)}],
        "last_updated": "2024-01-01T00:00:00Z",
        **fields,
    }
    if kind is not None:
        document["type"] = kind
    return TariffPlan.from_ocpi(document)


AD_HOC = typed("adhoc", "AD_HOC_PAYMENT")
GREEN = typed("green", "PROFILE_GREEN")
REGULAR = typed("regular", "REGULAR")
UNTYPED = typed("untyped", None)
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("candidates", "kwargs", "expected"),
    [
        ([REGULAR, GREEN, AD_HOC], {"ad_hoc": True}, AD_HOC),
        ([REGULAR, GREEN, AD_HOC], {"profile": "GREEN"}, GREEN),
        ([REGULAR, GREEN, AD_HOC], {}, REGULAR),
        ([AD_HOC, GREEN, REGULAR], {"profile": "REGULAR"}, REGULAR),
        ([AD_HOC, GREEN, REGULAR], {"profile": "FAST"}, REGULAR),  # no FAST tariff listed
        ([AD_HOC, UNTYPED], {}, UNTYPED),  # untyped: valid for all sessions
        ([UNTYPED], {"ad_hoc": True}, UNTYPED),
        ([UNTYPED], {"profile": "GREEN"}, UNTYPED),
        ([AD_HOC], {}, None),  # ad hoc prices are only for ad hoc payment
        ([AD_HOC], {"profile": "GREEN"}, None),
    ],
    ids=[
        "ad hoc",
        "green profile",
        "contract",
        "regular profile",
        "fast profile falls back",
        "untyped for contract",
        "untyped for ad hoc",
        "untyped for profile",
        "ad hoc only, contract",
        "ad hoc only, profile",
    ],
)
def test_tariff_type_follows_the_kind_of_session(
    candidates: list[TariffPlan], kwargs: dict[str, Any], expected: TariffPlan | None
) -> None:
    assert select_tariff(candidates, NOW, **kwargs) is expected


def test_a_profile_tariff_is_not_for_sessions_without_that_profile() -> None:
    # OCPI TariffType: PROFILE_GREEN "is valid when Charging Preference GREEN is set for the
    # session"; a plain RFID session has none, so no listed tariff applies to it.
    assert select_tariff([GREEN], NOW) is None


def test_the_first_tariff_of_the_wanted_type_wins_in_connector_order() -> None:
    other = typed("regular-2", "REGULAR")

    assert select_tariff([other, REGULAR], NOW) is other
    assert select_tariff([REGULAR, other], NOW) is REGULAR


@pytest.mark.parametrize(
    ("at", "valid"),
    [
        (datetime(2024, 3, 1, tzinfo=UTC) - timedelta(microseconds=1), False),
        (datetime(2024, 3, 1, tzinfo=UTC), True),  # start inclusive
        (datetime(2024, 4, 1, tzinfo=UTC) - timedelta(microseconds=1), True),
        (datetime(2024, 4, 1, tzinfo=UTC), False),  # end exclusive
    ],
)
def test_validity_window_start_inclusive_end_exclusive(at: datetime, valid: bool) -> None:
    march = typed(
        "march",
        "REGULAR",
        start_date_time="2024-03-01T00:00:00Z",
        end_date_time="2024-04-01T00:00:00Z",
    )

    assert (select_tariff([march], at) is march) is valid


def test_a_scheduled_tariff_change_hands_over_at_the_boundary() -> None:
    old = typed("old", "REGULAR", end_date_time="2024-03-01T00:00:00Z")
    new = typed("new", "REGULAR", start_date_time="2024-03-01T00:00:00Z")

    assert select_tariff([old, new], datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)) is old
    assert select_tariff([old, new], datetime(2024, 3, 1, tzinfo=UTC)) is new
