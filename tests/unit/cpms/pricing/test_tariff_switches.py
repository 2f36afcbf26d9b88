"""A session that switches tariff mid-way (``TariffSwitch``): each period at its own tariff.

A driver's charging preference accepted mid-session can call for another tariff: from that
moment the session is priced with it. Checked here on the pure engine: the switch cuts a
period at its exact moment, energy and time on each side go to their own tariff, the total
is the sum of the two parts, restrictions keep counting from the session start, step_size
applies once on totals, each tariff's min_price bounds its own part, a switch back to the
first tariff is priced with it, and a switch to another currency is refused. Prices are
without VAT unless said, so excl. and incl. VAT are equal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cpms.pricing import MeterPoint, Price, TariffPlan, TariffSwitch, Usage, price

D = Decimal
START = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def plan(tariff_id: str, *elements: dict[str, Any], **fields: Any) -> TariffPlan:
    return TariffPlan.from_ocpi(
        {"id": tariff_id, "currency": fields.pop("currency", "EUR"), "elements": list(elements)}
        | fields
    )


def energy(price_per_kwh: str, step_size: int = 1, **restrictions: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "price_components": [{"type": "ENERGY", "price": price_per_kwh, "step_size": step_size}]
    }
    if restrictions:
        element["restrictions"] = restrictions
    return element


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def steady(minutes: int, kwh_per_hour: int) -> Usage:
    """Charging at a steady rate, a reading every 10 minutes."""
    points = [
        MeterPoint(at(m), D(kwh_per_hour * 1000 * m) / 60) for m in range(10, minutes + 1, 10)
    ]
    return Usage(start=START, end=at(minutes), points=points)


REGULAR = plan("REG", energy("0.40"))
CHEAP = plan("CHEAP", energy("0.20"))


def test_a_switch_cuts_at_its_moment_and_prices_each_side_with_its_tariff() -> None:
    usage = steady(60, 12)  # 12 kWh in an hour

    bill = price(REGULAR, usage, switches=[TariffSwitch(at(25), CHEAP)])

    assert [(p.start, p.end, p.tariff.id if p.tariff else None) for p in bill.periods] == [
        (at(0), at(25), "REG"),
        (at(25), at(60), "CHEAP"),
    ]
    assert [p.energy_wh for p in bill.periods] == [D(5000), D(7000)]
    assert [line.tariff_id for line in bill.lines] == ["REG", "CHEAP"]
    assert bill.total_cost == Price(D("3.40"), D("3.40"))  # 5 x 0.40 + 7 x 0.20
    assert bill.tariffs == [REGULAR, CHEAP]
    assert bill.tariff == REGULAR  # the one it started with


def test_inside_an_interval_the_energy_is_split_at_the_switch_and_totals_add_up() -> None:
    usage = steady(60, 12)

    bill = price(REGULAR, usage, switches=[TariffSwitch(at(37.5), CHEAP)])

    # Between the readings at 30 and 40 minutes: 1.5 kWh before the switch, 0.5 after.
    assert [p.energy_wh for p in bill.periods] == [D(7500), D(4500)]
    by_tariff = {
        tariff_id: sum(line.cost.excl_vat for line in bill.lines if line.tariff_id == tariff_id)
        for tariff_id in ("REG", "CHEAP")
    }
    assert by_tariff == {"REG": D("7.5") * D("0.40"), "CHEAP": D("4.5") * D("0.20")}
    assert bill.exact_total.excl_vat == by_tariff["REG"] + by_tariff["CHEAP"]


def test_without_switches_nothing_changes() -> None:
    usage = steady(60, 12)

    assert price(REGULAR, usage, switches=[]).total_cost == price(REGULAR, usage).total_cost
    assert [p.tariff for p in price(REGULAR, usage).periods] == [REGULAR]


def test_restrictions_of_the_new_tariff_count_from_the_session_start() -> None:
    # CHEAP only from the 40th minute of the session (min_duration), dear before.
    tiered = plan("TIERED", energy("0.10", min_duration=2400), energy("0.30"))
    usage = steady(60, 12)

    bill = price(REGULAR, usage, switches=[TariffSwitch(at(30), tiered)])

    assert [(p.start, p.tariff.id if p.tariff else None) for p in bill.periods] == [
        (at(0), "REG"),
        (at(30), "TIERED"),
        (at(40), "TIERED"),
    ]
    assert bill.exact_total.excl_vat == D(6) * D("0.40") + D(2) * D("0.30") + D(4) * D("0.10")


def test_a_switch_back_prices_the_last_part_with_the_first_tariff_again() -> None:
    usage = steady(60, 12)

    bill = price(
        REGULAR,
        usage,
        switches=[TariffSwitch(at(50), REGULAR), TariffSwitch(at(20), CHEAP)],  # any order
    )

    assert [p.tariff.id if p.tariff else None for p in bill.periods] == ["REG", "CHEAP", "REG"]
    assert bill.exact_total.excl_vat == D(4) * D("0.40") + D(6) * D("0.20") + D(2) * D("0.40")


def test_step_size_applies_once_on_totals_at_the_component_active_last() -> None:
    stepped = plan("STEP", energy("0.20", step_size=1000))  # whole kWh
    usage = Usage(
        start=START, end=at(60), points=[MeterPoint(at(30), D(2500)), MeterPoint(at(60), D(4300))]
    )

    bill = price(REGULAR, usage, switches=[TariffSwitch(at(30), stepped)])

    # 4.3 kWh rounded up to 5: the extra 0.7 kWh at the last component (STEP's 0.20).
    extra = D("0.7") * D("0.20")
    assert bill.exact_total.excl_vat == D("2.5") * D("0.40") + D("1.8") * D("0.20") + extra
    assert bill.lines[-1].tariff_id == "STEP"


def test_each_tariffs_min_price_bounds_its_own_part() -> None:
    floored = plan("FLOOR", energy("0.40"), min_price={"excl_vat": 5.0})
    usage = steady(60, 12)

    bill = price(floored, usage, switches=[TariffSwitch(at(10), CHEAP)])

    # FLOOR priced 2 kWh (0.80), raised to its min_price 5.00; CHEAP 10 kWh (2.00).
    assert bill.exact_total.excl_vat == D("5.00") + D("2.00")
    assert bill.adjustments[0].startswith("tariff FLOOR: min_price 5")
    assert any("tariff CHEAP" in line for line in bill.explain())


def test_a_switch_to_another_currency_or_from_no_tariff_is_refused() -> None:
    usage = steady(60, 12)
    francs = plan("CHF", energy("0.30"), currency="CHF")

    with pytest.raises(ValueError, match="CHF"):
        price(REGULAR, usage, switches=[TariffSwitch(at(30), francs)])
    with pytest.raises(ValueError, match="no tariff"):
        price(None, usage, switches=[TariffSwitch(at(30), CHEAP)])
