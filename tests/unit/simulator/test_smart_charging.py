"""The power limit charging profiles set (``simulator.smart_charging.limit_w``).

The transaction's profile wins over the default profile, the station maximum caps both, the
highest stack level with a running period decides, the period is the last one started (relative
to the transaction or absolute, and recurring ones wrap), and amperes become watts with the
connector's voltage and the phases both the connector and the period allow (DC: volts x amps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulator.smart_charging import MAX, TX, TX_DEFAULT, Period, Profile, limit_w

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TX_ID = "tx-1"


def profile(
    purpose: str,
    *periods: tuple[float, float],
    profile_id: int = 1,
    stack: int = 0,
    unit: str = "W",
    starts: datetime | None = None,
    transaction_id: str | None = None,
    recurring_s: float | None = None,
    phases: int | None = None,
) -> Profile:
    return Profile(
        id=profile_id,
        purpose=purpose,
        stack_level=stack,
        unit=unit,
        periods=tuple(Period(start, limit, phases) for start, limit in periods),
        starts=starts,
        transaction_id=transaction_id,
        recurring_s=recurring_s,
    )


def limit(
    profiles: list[Profile],
    *,
    transaction_id: str | None = TX_ID,
    started_ago: float | None = 0.0,
    voltage_v: float = 230.0,
    phases: int = 3,
    now: datetime = NOW,
) -> float | None:
    return limit_w(
        profiles,
        now=now,
        voltage_v=voltage_v,
        phases=phases,
        transaction_id=transaction_id,
        tx_started=None if started_ago is None else now - timedelta(seconds=started_ago),
    )


def test_no_profile_no_limit() -> None:
    assert limit([]) is None
    assert limit([], transaction_id=None, started_ago=None) is None


def test_default_profile_limits_without_a_transaction_too() -> None:
    default = profile(TX_DEFAULT, (0, 7_000))
    assert limit([default]) == 7_000
    assert limit([default], transaction_id=None, started_ago=None) == 7_000


def test_transaction_profile_wins_over_the_default_even_when_higher() -> None:
    profiles = [profile(TX_DEFAULT, (0, 7_000), stack=5), profile(TX, (0, 11_000), profile_id=2)]
    assert limit(profiles) == 11_000


def test_transaction_profile_needs_a_transaction() -> None:
    profiles = [profile(TX_DEFAULT, (0, 7_000)), profile(TX, (0, 3_000), profile_id=2)]
    assert limit(profiles, transaction_id=None, started_ago=None) == 7_000
    assert limit([profile(TX, (0, 3_000))], transaction_id=None, started_ago=None) is None


def test_transaction_profile_of_another_transaction_does_not_apply() -> None:
    profiles = [
        profile(TX_DEFAULT, (0, 7_000)),
        profile(TX, (0, 3_000), profile_id=2, transaction_id="other"),
    ]
    assert limit(profiles) == 7_000
    profiles.append(profile(TX, (0, 4_000), profile_id=3, transaction_id=TX_ID))
    assert limit(profiles) == 4_000


def test_station_maximum_caps_whatever_was_chosen() -> None:
    cap = profile(MAX, (0, 5_000), profile_id=9)
    assert limit([cap]) == 5_000
    assert limit([cap, profile(TX, (0, 11_000))]) == 5_000
    assert limit([cap, profile(TX_DEFAULT, (0, 11_000))]) == 5_000
    assert limit([cap, profile(TX, (0, 2_000))]) == 2_000


def test_highest_stack_level_decides_whatever_its_limit() -> None:
    profiles = [
        profile(TX_DEFAULT, (0, 3_000), profile_id=1, stack=1),
        profile(TX_DEFAULT, (0, 9_000), profile_id=2, stack=4),
        profile(TX_DEFAULT, (0, 6_000), profile_id=3, stack=2),
    ]
    assert limit(profiles) == 9_000
    caps = [profile(MAX, (0, 20_000), stack=0), profile(MAX, (0, 15_000), profile_id=2, stack=3)]
    assert limit(caps) == 15_000


def test_a_higher_stack_without_a_running_period_leaves_it_to_the_next() -> None:
    profiles = [
        profile(TX, (600, 2_000), profile_id=1, stack=3),
        profile(TX, (0, 8_000), profile_id=2, stack=1),
    ]
    assert limit(profiles, started_ago=60) == 8_000
    assert limit(profiles, started_ago=601) == 2_000


def test_period_is_the_last_one_started_counted_from_the_transaction_start() -> None:
    tx = profile(TX, (0, 11_000), (60, 7_000), (3600, 3_000))
    assert limit([tx], started_ago=0) == 11_000
    assert limit([tx], started_ago=59.9) == 11_000
    assert limit([tx], started_ago=60) == 7_000
    assert limit([tx], started_ago=3599) == 7_000
    assert limit([tx], started_ago=7200) == 3_000


def test_periods_need_not_be_listed_in_order() -> None:
    tx = profile(TX, (3600, 3_000), (0, 11_000), (60, 7_000))
    assert limit([tx], started_ago=100) == 7_000


def test_default_profile_without_a_transaction_counts_from_now() -> None:
    default = profile(TX_DEFAULT, (0, 5_000), (60, 1_000))
    assert limit([default], transaction_id=None, started_ago=None) == 5_000


def test_absolute_schedule_counts_from_its_start() -> None:
    default = profile(TX_DEFAULT, (0, 5_000), (1800, 1_000), starts=NOW - timedelta(hours=1))
    assert limit([default], started_ago=0) == 1_000
    later = profile(TX_DEFAULT, (0, 5_000), starts=NOW + timedelta(minutes=5))
    assert limit([later]) is None  # not begun yet


def test_recurring_schedule_wraps_around_its_period() -> None:
    day = 86_400.0
    # Daily: 11 kW from midnight, 3.7 kW from 17:00; started two days ago at midnight.
    daily = profile(
        TX_DEFAULT,
        (0, 11_000),
        (17 * 3600, 3_700),
        starts=datetime(2025, 2, 27, tzinfo=UTC),
        recurring_s=day,
    )
    assert limit([daily], now=datetime(2025, 3, 1, 12, 0, tzinfo=UTC)) == 11_000
    assert limit([daily], now=datetime(2025, 3, 1, 18, 0, tzinfo=UTC)) == 3_700
    assert limit([daily], now=datetime(2025, 3, 2, 0, 30, tzinfo=UTC)) == 11_000


def test_amperes_become_watts_per_phase_in_use() -> None:
    amps = [profile(TX, (0, 16), unit="A")]
    assert limit(amps, voltage_v=230, phases=3) == pytest.approx(16 * 230 * 3)
    assert limit(amps, voltage_v=230, phases=1) == pytest.approx(16 * 230)


def test_a_period_limited_to_fewer_phases_counts_only_those() -> None:
    one_phase = [profile(TX, (0, 16), unit="A", phases=1)]
    assert limit(one_phase, voltage_v=230, phases=3) == pytest.approx(16 * 230)
    # A period allowing more phases than the connector has does not add any.
    three = [profile(TX, (0, 16), unit="A", phases=3)]
    assert limit(three, voltage_v=230, phases=1) == pytest.approx(16 * 230)


def test_dc_amperes_are_volts_times_amps() -> None:
    assert limit([profile(TX, (0, 100), unit="A")], voltage_v=400, phases=0) == pytest.approx(
        40_000
    )


def test_watts_are_taken_as_they_are() -> None:
    assert limit([profile(TX, (0, 4_321))], voltage_v=400, phases=0) == 4_321
    assert limit([profile(TX, (0, 4_321))], voltage_v=230, phases=1) == 4_321


def test_units_mix_between_the_chosen_profile_and_the_cap() -> None:
    profiles = [
        profile(TX, (0, 11_000)),
        profile(
            MAX,
            (
                0,
                10,
            ),
            profile_id=2,
            unit="A",
        ),
    ]
    assert limit(profiles, voltage_v=230, phases=3) == pytest.approx(6_900)
