"""Property tests of the pure pricing engine (``cpms.pricing``) under generated tariffs and usages.

Hypothesis builds valid OCPI 2.2.1 Tariff documents (every component type, 2-decimal prices,
optional VAT, ``step_size`` 0..3600, every kind of restriction, optional ``min_price`` /
``max_price``) and sessions (2020-2030, time zones with and without daylight saving, 0..30
meter points with charging, trickle and flat stretches, an optional reservation before it),
and checks what must hold for *every* tariff and session: periods tile the session, bounds
hold, ``step_size`` only ever adds, VAT only ever adds, the cost grows with the session,
rounding is the stated half-up rule, and pricing is deterministic.

Where OCPI's own rules make a naive property false (the ``step_size`` extra is billed at the
*last* component, so a session that grows into a cheaper component can cost less), the
property is narrowed to where it holds, the narrowing is explained beside it, and a
hand-computed example test shows the legitimate decrease. Engine bugs these properties found
stay as plain, hand-computed regression tests beside the property that found them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from cpms.pricing import (
    CATEGORIES,
    PARKING,
    RESERVATION,
    Bill,
    MeterPoint,
    Period,
    Price,
    ReservationSpan,
    TariffPlan,
    Usage,
    charging_periods,
    price,
)
from cpms.pricing.periods import PRECISION

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

ZONES = (
    "UTC",
    "Europe/Amsterdam",
    "America/New_York",
    "Asia/Kolkata",  # +05:30, no daylight saving
    "Australia/Lord_Howe",  # daylight saving shifts by 30 minutes
    "America/Santiago",  # daylight saving switches at local midnight
)
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MINOR_UNITS = {"EUR": 2, "JPY": 0, "KWD": 3}  # ISO 4217
RESTRICTION_KINDS = frozenset(
    {"time", "date", "kwh", "current", "power", "duration", "day_of_week", "reservation"}
)
ZERO = Decimal(0)
NOISE = Decimal("1e-40")
"""Prices per hour are repeating decimals (x/3600) the engine carries to PRECISION digits, so
one bill split differently (more base, less step extra) can differ in the 50th digit. That is
no change of cost: comparisons of two bills allow it, far below any currency's minor unit."""

# Strategies ------------------------------------------------------------------------------


@cache
def _offset_changes(zone: str) -> tuple[datetime, ...]:
    """UTC moments (to 6 h) just before each UTC-offset change of ``zone`` in 2020-2030."""
    tz = ZoneInfo(zone)
    found = []
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(tz).utcoffset()
    while moment.year < 2031:
        following = moment + timedelta(hours=6)
        changed = following.astimezone(tz).utcoffset()
        if changed != offset:
            found.append(moment)
            offset = changed
        moment = following
    return tuple(found) or (datetime(2025, 1, 1, tzinfo=UTC),)


def _json_number(value: Decimal) -> float:
    """A Decimal as the JSON number a peer would send (its shortest float text is the value)."""
    return float(value)


def _money(cents: int) -> float:
    return _json_number(Decimal(cents) / 100)


prices = st.one_of(st.just(0), st.integers(0, 100), st.integers(0, 5000)).map(_money)
vats = st.one_of(st.none(), st.sampled_from([0, 5.5, 7, 9, 19, 20, 21]), st.integers(0, 30))
step_sizes = st.one_of(st.sampled_from([0, 1, 60, 300, 900, 1000, 3600]), st.integers(0, 3600))


@st.composite
def components(draw: st.DrawFn, types: tuple[str, ...], energy_price: float | None) -> dict:
    kind = draw(st.sampled_from(types))
    unit_price = energy_price if kind == "ENERGY" and energy_price is not None else draw(prices)
    component: dict[str, Any] = {
        "type": kind,
        "price": unit_price,
        "step_size": draw(step_sizes),
    }
    vat = draw(vats)
    if vat is not None:
        component["vat"] = vat
    return component


@st.composite
def restrictions(draw: st.DrawFn, usage: Usage, kinds: frozenset[str]) -> dict | None:
    """TariffRestrictions whose bounds fall near ``usage``, so they switch during it."""
    raw: dict[str, Any] = {}
    wants = draw(st.sets(st.sampled_from(sorted(kinds))))
    if "time" in wants:
        for field in draw(
            st.sampled_from([("start_time",), ("end_time",), ("start_time", "end_time")])
        ):
            raw[field] = (
                f"{draw(st.integers(0, 23)):02d}:{draw(st.sampled_from([0, 15, 30, 59])):02d}"
            )
    if "date" in wants:
        local = usage.start.astimezone(ZoneInfo(usage.time_zone)).date()
        for field in draw(
            st.sampled_from([("start_date",), ("end_date",), ("start_date", "end_date")])
        ):
            raw[field] = (local + timedelta(days=draw(st.integers(-2, 4)))).isoformat()
    if "kwh" in wants:
        top = int(max((p.energy_wh for p in usage.points), default=ZERO)) + 1000
        for field in draw(st.sampled_from([("min_kwh",), ("max_kwh",), ("min_kwh", "max_kwh")])):
            raw[field] = _json_number(Decimal(draw(st.integers(0, top))) / 1000)
    if "current" in wants:
        for field in draw(st.sampled_from([("min_current",), ("max_current",)])):
            raw[field] = _json_number(Decimal(draw(st.integers(0, 2000))) / 10)
    if "power" in wants:
        for field in draw(
            st.sampled_from([("min_power",), ("max_power",), ("min_power", "max_power")])
        ):
            raw[field] = _json_number(Decimal(draw(st.integers(0, 1500))) / 10)
    if "duration" in wants:
        span = int((usage.end - usage.start).total_seconds()) + 3600
        for field in draw(st.sampled_from([("min_duration",), ("max_duration",)])):
            raw[field] = draw(st.integers(0, span))
    if "day_of_week" in wants:
        raw["day_of_week"] = sorted(
            draw(st.sets(st.sampled_from(DAYS), min_size=1)), key=DAYS.index
        )
    if "reservation" in wants and draw(st.integers(0, 2)) == 0:
        raw["reservation"] = draw(st.sampled_from(["RESERVATION", "RESERVATION_EXPIRES"]))
    return raw or None


@st.composite
def bounds(draw: st.DrawFn) -> dict[str, dict[str, float]]:
    """Optional min_price / max_price with min <= max (excl. and, where both give it, incl.)."""
    out: dict[str, dict[str, float]] = {}
    low = draw(st.integers(0, 3000))
    high = low + draw(st.integers(0, 3000))
    low_incl = low + draw(st.integers(0, 600)) if draw(st.booleans()) else None
    high_incl = None
    if draw(st.booleans()):
        high_incl = max(high, low_incl or 0) + draw(st.integers(0, 600))
    if draw(st.booleans()):
        out["min_price"] = {"excl_vat": _money(low)}
        if low_incl is not None:
            out["min_price"]["incl_vat"] = _money(low_incl)
    if draw(st.booleans()):
        out["max_price"] = {"excl_vat": _money(high)}
        if high_incl is not None:
            out["max_price"]["incl_vat"] = _money(high_incl)
    return out


@st.composite
def tariff_documents(
    draw: st.DrawFn,
    usage: Usage,
    *,
    kinds: frozenset[str] = RESTRICTION_KINDS,
    energy_price: float | None = None,
    with_bounds: bool = True,
) -> dict[str, Any]:
    """A valid OCPI Tariff; ``energy_price`` gives every ENERGY component that one price."""
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        element: dict[str, Any] = {}
        raw = draw(restrictions(usage, kinds)) if draw(st.booleans()) else None
        types = ("ENERGY", "FLAT", "TIME", "PARKING_TIME")
        if raw is not None:
            element["restrictions"] = raw
            if "reservation" in raw:
                types = ("FLAT", "TIME")  # OCPI: reservation elements price time and flat only
        element["price_components"] = draw(
            st.lists(components(types, energy_price), min_size=1, max_size=4)
        )
        elements.append(element)
    document: dict[str, Any] = {
        "country_code": "NL",
        "party_id": "EXA",
        "id": "T1",
        "currency": draw(st.sampled_from(sorted(MINOR_UNITS))),
        "elements": elements,
        "last_updated": "2025-01-01T00:00:00Z",
    }
    if with_bounds:
        document.update(draw(bounds()))
    return document


@st.composite
def usages(draw: st.DrawFn, *, reservation: bool = True) -> Usage:
    """A session: charging, trickle (under 10 W) and flat stretches, maybe reserved first.

    Trickle readings are whole micro-Wh (the database's scale 6) or, at times, repeating
    fractions cut at 28 digits, finer than the engine's interpolation quantum.
    """
    zone = draw(st.sampled_from(ZONES))
    start = draw(
        st.one_of(
            st.datetimes(
                min_value=datetime(2020, 1, 1),
                max_value=datetime(2030, 12, 31),
                timezones=st.just(UTC),
            ),
            st.builds(
                lambda moment, back: moment - timedelta(seconds=back),
                st.sampled_from(_offset_changes(zone)),
                st.integers(0, 2 * 86400),
            ),
        )
    )
    moment, energy = start, ZERO
    points = []
    for _ in range(draw(st.integers(0, 30))):
        seconds = draw(st.one_of(st.just(0), st.integers(1, 600), st.integers(1, 14400)))
        moment += timedelta(seconds=seconds)
        state = draw(st.sampled_from(["charging", "charging", "flat", "trickle"]))
        if seconds == 0 and moment == start:
            state = "flat"  # billed energy is 0 at the session start
        if state == "charging":
            watts = draw(st.integers(10, 150_000)) if seconds else draw(st.integers(0, 5000))
            energy += Decimal(round(Decimal(watts) * max(seconds, 1) / 360)) / 10
        elif state == "trickle":  # under 10 W; sometimes finer than the engine's 1e-12 Wh
            if draw(st.booleans()):
                energy += Decimal(draw(st.integers(0, max(seconds * 10**7 // 3600 - 1, 0)))) / 10**6
            else:
                energy += Decimal(draw(st.integers(0, 9))) * seconds / 36000
        current = draw(st.one_of(st.none(), st.integers(0, 2000).map(lambda a: Decimal(a) / 10)))
        points.append(MeterPoint(moment, energy, current))
    end = moment + timedelta(seconds=draw(st.one_of(st.just(0), st.integers(1, 86400))))
    reserved = None
    if reservation and draw(st.integers(0, 4)) == 0:
        reserved = ReservationSpan(
            start - timedelta(seconds=draw(st.integers(0, 7200))), start, draw(st.booleans())
        )
    return Usage(
        start=start,
        end=end,
        points=points,
        time_zone=zone,
        voltage_v=draw(st.sampled_from([None, Decimal(230)])),
        reservation=reserved,
    )


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    kinds: frozenset[str] = RESTRICTION_KINDS,
    one_energy_price: bool = False,
    with_bounds: bool = True,
    reservation: bool = True,
) -> tuple[dict[str, Any], Usage]:
    usage = draw(usages(reservation=reservation))
    energy_price = draw(st.integers(1, 100).map(_money)) if one_energy_price else None
    document = draw(
        tariff_documents(usage, kinds=kinds, energy_price=energy_price, with_bounds=with_bounds)
    )
    return document, usage


# Helpers ---------------------------------------------------------------------------------


def _exact() -> Any:
    """The engine's working precision: test-side sums of its amounts round no more than it."""
    return localcontext(prec=PRECISION)


def _incl_follows_excl(document: dict[str, Any]) -> bool:
    """True if incl. VAT can only grow with excl. VAT: no bound, or one VAT rate throughout.

    A bound that moves the excl. VAT total scales incl. VAT by the session's effective VAT
    rate (engine rule 5), and a different mix (more VAT-free parking) lowers that rate.
    """
    rates = {c.get("vat") for e in document["elements"] for c in e["price_components"]}
    return len(rates) <= 1 or not ("min_price" in document or "max_price" in document)


def _seconds(start: datetime, end: datetime) -> Decimal:
    delta = end - start
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 10**6


def _final_energy(usage: Usage) -> Decimal:
    return max((p.energy_wh for p in usage.points), default=ZERO)


def _bound(document: dict[str, Any], name: str, field: str) -> Decimal | None:
    value = (document.get(name) or {}).get(field)
    return None if value is None else Decimal(str(value))


def _half_up(amount: Decimal, places: int) -> Decimal:
    """Half-up rounding of a non-negative amount, written independently of ``money``."""
    with localcontext(prec=2 * PRECISION):  # no rounding on the way to the decision
        scale = Decimal(10) ** places
        return Decimal(math.floor(amount * scale + Decimal("0.5"))) / scale


def _with_components(document: dict[str, Any], change: Callable[[dict], dict]) -> dict[str, Any]:
    copy = {**document}
    copy["elements"] = [
        {**element, "price_components": [change(dict(c)) for c in element["price_components"]]}
        for element in document["elements"]
    ]
    return copy


def _step_extras(bill: Bill) -> Decimal:
    """The step_size extras of a bill, excl. VAT (the lines whose note explains one)."""
    with _exact():
        return sum((line.cost.excl_vat for line in bill.lines if "step_size" in line.note), ZERO)


def _shape(periods: list[Period]) -> list[tuple[object, ...]]:
    return [(p.start, p.kind, p.signature()) for p in periods]


def _prolonged(usage: Usage, times: int) -> Usage:
    """``usage`` running ``times`` times its last stretch longer, in the same state.

    A session ending after its last reading ends flat: it parks longer. Otherwise the last
    interval (between the last two distinct reading times) repeats at the same power and
    current, read as ``usage.in_time_order`` merges readings at one instant: the highest
    energy, and the current of the highest (energy, current) that has one.
    """
    if not usage.points or max(p.at for p in usage.points) < usage.end:
        last = max([usage.start, *(p.at for p in usage.points)])
        return dataclasses.replace(usage, end=usage.end + (usage.end - last) * times)
    at_end = [p for p in usage.points if p.at == usage.end]
    before = [p for p in usage.points if p.at < usage.end]
    since = max([usage.start, *(p.at for p in before)])
    energy_before = max([ZERO, *(p.energy_wh for p in before if p.at == since)])
    energy = max(p.energy_wh for p in at_end)
    measured = [(p.energy_wh, p.current_a) for p in at_end if p.current_a is not None]
    current = max(measured)[1] if measured else None
    end = usage.end + (usage.end - since) * times
    extra = MeterPoint(end, energy + (energy - energy_before) * times, current)
    return dataclasses.replace(usage, end=end, points=[*usage.points, extra])


# 1. Periods tile the session --------------------------------------------------------------


def _assert_tiles(periods: list[Period], start: datetime, end: datetime) -> None:
    assert periods[0].start == start
    assert periods[-1].end == end
    for before, after in itertools.pairwise(periods):
        assert after.start == before.end
    for period in periods:
        assert period.start < period.end, "zero-length period"
        assert period.seconds == _seconds(period.start, period.end)


@PROPERTY
@given(scenarios(), st.booleans())
def test_charging_periods_tile_the_session_and_add_up_exactly(
    case: tuple[dict[str, Any], Usage], with_tariff: bool
) -> None:
    """Periods tile [start, end] (after the reservation's); energy and seconds add up exactly."""
    document, usage = case
    plan = TariffPlan.from_ocpi(document) if with_tariff else None
    periods = charging_periods(plan, usage)
    reserved = [p for p in periods if p.kind == RESERVATION]
    session = [p for p in periods if p.kind != RESERVATION]
    event(f"session periods: {min(len(session), 5)}{'+' if len(session) >= 5 else ''}")
    assert periods == reserved + session
    reservation = usage.reservation
    with _exact():
        if reservation is not None and reservation.start < reservation.end:
            _assert_tiles(reserved, reservation.start, reservation.end)
            assert sum((p.seconds for p in reserved), ZERO) == _seconds(
                reservation.start, reservation.end
            )
            assert all(p.energy_wh == 0 for p in reserved)
        else:
            assert reserved == []
        if usage.start == usage.end:
            assert session == []
        else:
            _assert_tiles(session, usage.start, usage.end)
        assert sum((p.seconds for p in session), ZERO) == _seconds(usage.start, usage.end)
        assert sum((p.energy_wh for p in session), ZERO) == _final_energy(usage)
        assert all(p.energy_wh >= 0 for p in session), "energy went down inside a period"
        assert price(plan, usage).energy_kwh * 1000 == _final_energy(usage)


# 2. min_price <= total <= max_price --------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_total_lies_within_min_and_max_price(case: tuple[dict[str, Any], Usage]) -> None:
    """The exact total respects every bound the tariff gives, excl. VAT and (if given) incl.,
    and a total already within the bounds is left alone."""
    document, usage = case
    bill = price(TariffPlan.from_ocpi(document), usage)
    total = bill.exact_total
    with _exact():
        lines = sum((line.cost for line in bill.lines), Price())
    low, high = _bound(document, "min_price", "excl_vat"), _bound(document, "max_price", "excl_vat")
    event("min_price raised the total" if low is not None and lines.excl_vat < low else "-")
    event("max_price capped the total" if high is not None and lines.excl_vat > high else "-")
    if low is not None:
        assert total.excl_vat >= low
    if high is not None:
        assert total.excl_vat <= high
    if (low is None or low <= lines.excl_vat) and (high is None or lines.excl_vat <= high):
        assert total.excl_vat == lines.excl_vat, "a bound moved a total that was within it"
    low_incl = _bound(document, "min_price", "incl_vat")
    high_incl = _bound(document, "max_price", "incl_vat")
    if high_incl is not None:
        assert total.incl_vat <= high_incl
    if low_incl is not None:
        assert total.incl_vat >= low_incl
    if low is None and high is None:
        assert total == lines


def test_max_price_without_incl_vat_keeps_the_min_price_incl_vat_bound() -> None:
    """OCPI: a session costs at least min_price, excl. and incl. VAT each on its own.

    FLAT 5.00 without VAT; min_price 1.00 / 1.19, max_price 1.10 (no incl_vat). 1.10 excl. /
    1.19 incl. meets both bounds. Regression: ``engine._bounded`` applied min_price, then
    rescaled incl_vat with the max_price cap to 1.10 / 1.10, below the 1.19 minimum.
    """
    document = {
        "id": "BOUNDS",
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "FLAT", "price": 5.0, "step_size": 0}]}],
        "min_price": {"excl_vat": 1.0, "incl_vat": 1.19},
        "max_price": {"excl_vat": 1.1},
    }
    start = datetime(2025, 1, 6, 10, tzinfo=UTC)
    bill = price(TariffPlan.from_ocpi(document), Usage(start, start + timedelta(hours=1)))
    assert bill.exact_total.excl_vat == Decimal("1.10")
    assert bill.exact_total.incl_vat >= Decimal("1.19")


# 3. step_size rounding only adds ------------------------------------------------------------


@PROPERTY
@given(scenarios(with_bounds=False))
def test_step_size_never_lowers_a_category(case: tuple[dict[str, Any], Usage]) -> None:
    """Each category costs at least what it costs with every ``step_size`` set to 1."""
    document, usage = case
    stepped = price(TariffPlan.from_ocpi(document), usage)
    per_unit = price(
        TariffPlan.from_ocpi(_with_components(document, lambda c: {**c, "step_size": 1})), usage
    )
    assert _shape(stepped.periods) == _shape(per_unit.periods)
    with _exact():
        for category in CATEGORIES:
            real, fine = stepped.subtotal(category), per_unit.subtotal(category)
            assert real.excl_vat >= fine.excl_vat, category
            assert real.incl_vat >= fine.incl_vat, category


# 4. VAT only adds ---------------------------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_incl_vat_is_never_below_excl_vat(case: tuple[dict[str, Any], Usage]) -> None:
    """With prices and VAT >= 0 (and bounds with incl >= excl), no amount loses by VAT;
    where no VAT applies at all, incl. VAT is excl. VAT, bounded or not."""
    document, usage = case
    bill = price(TariffPlan.from_ocpi(document), usage)
    for line in bill.lines:
        assert ZERO <= line.cost.excl_vat <= line.cost.incl_vat, line
    assert ZERO <= bill.exact_total.excl_vat <= bill.exact_total.incl_vat
    assert bill.total_cost.excl_vat <= bill.total_cost.incl_vat
    if all(line.cost.incl_vat == line.cost.excl_vat for line in bill.lines) and all(
        bound.get("incl_vat", bound["excl_vat"]) == bound["excl_vat"]
        for bound in (document.get("min_price"), document.get("max_price"))
        if bound is not None
    ):
        assert bill.exact_total.incl_vat == bill.exact_total.excl_vat


def test_a_vat_free_total_capped_by_max_price_keeps_incl_equal_to_excl() -> None:
    """No VAT applies, so incl. VAT must equal excl. VAT, capped or not.

    FLAT 0.25 and TIME 2.00/h without VAT, capped by max_price 0.125 (no incl_vat).
    Regression: ``engine._bounded`` computed incl as ``incl * 0.125 / excl`` at 50 digits;
    for 1000 s (0.80555...) it got 0.1249999...9, rounded to 0.12 while excl gave 0.13.
    Several lengths are priced, so the example does not hang on one rounding accident.
    """
    document = {
        "id": "CAP",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [
                    {"type": "FLAT", "price": 0.25, "step_size": 0},
                    {"type": "TIME", "price": 2.0, "step_size": 1},
                ]
            }
        ],
        "max_price": {"excl_vat": 0.125},
    }
    plan = TariffPlan.from_ocpi(document)
    start = datetime(2025, 1, 6, 10, tzinfo=UTC)
    for seconds in range(900, 1100):
        end = start + timedelta(seconds=seconds)
        bill = price(plan, Usage(start, end, points=[MeterPoint(end, Decimal(1000))]))
        assert bill.exact_total.excl_vat == Decimal("0.125")
        assert bill.exact_total.incl_vat == bill.exact_total.excl_vat, seconds
        assert bill.total_cost == Price(Decimal("0.13"), Decimal("0.13")), seconds


# 5. The cost grows with the session ---------------------------------------------------------
#
# OCPI bills a session's step_size extra at the step and price of the *last* component of the
# dimension (checklist 4.5). So a session that grows into a different component can owe a
# smaller extra than before, and cost less. That is OCPI, not an engine bug, and it happens:
# - when the prolonged stretch crosses a time-of-day, date, weekday, duration or kWh bound into
#   a cheaper element (test_prolonging_into_a_cheaper_element_can_lower_the_step_extra);
# - when more energy at the same times shifts weight to an earlier, cheaper ENERGY component
#   (test_more_energy_under_two_energy_prices_can_lower_the_step_extra);
# - when parking turns back into charging (or charging into parking): TIME and PARKING_TIME
#   are rounded as one group with the last one's step, so the parking stretch's extra can
#   disappear. We never generate that: prolonging keeps the last state, and scaling energy
#   keeps each stretch's kind (a stretch under 10 W may become charging; such cases are
#   discarded).
# The properties below therefore hold (a) exactly, where the grown session is priced by the
# same elements, and (b) up to the old step extras, always.
# Incl. VAT is compared only where it must follow excl. VAT (see _incl_follows_excl): a bound
# scales it by the session's effective VAT rate, which more VAT-free parking lowers.


def _assert_no_less(
    after: Bill, before: Bill, *, allow: Decimal = ZERO, incl: bool = False
) -> None:
    """``after`` costs at least ``before`` less ``allow`` (exact excl. VAT, and rounded;
    incl. VAT too if ``incl``), up to NOISE."""
    with _exact():
        assert after.exact_total.excl_vat >= before.exact_total.excl_vat - allow - NOISE
        if not allow:
            assert after.total_cost.excl_vat >= before.total_cost.excl_vat
        if incl:
            assert after.exact_total.incl_vat >= before.exact_total.incl_vat - allow - NOISE


@PROPERTY
@given(scenarios(), st.integers(1, 3))
def test_prolonging_the_last_state_never_lowers_the_cost(
    case: tuple[dict[str, Any], Usage], times: int
) -> None:
    """Prolonged at the same power (or parking longer), the session costs at least as much.

    Exactly so while the prolonged stretch keeps the elements of the last period; whatever
    elements it reaches, it never costs less than before minus the old step_size extras.
    """
    document, usage = case
    assume(usage.start < usage.end)
    plan = TariffPlan.from_ocpi(document)
    before, after = price(plan, usage), price(plan, _prolonged(usage, times))
    assert _shape(after.periods)[: len(before.periods) - 1] == _shape(before.periods)[:-1]
    assert after.periods[-1].kind == before.periods[-1].kind
    same = _shape(after.periods) == _shape(before.periods)
    event(f"prolonged {before.periods[-1].kind}, {'same' if same else 'other'} elements")
    _assert_no_less(after, before, allow=_step_extras(before))
    if same:
        _assert_no_less(after, before, incl=_incl_follows_excl(document))


@PROPERTY
@given(scenarios(), st.integers(1, 3 * 86400))
def test_more_parking_at_the_end_never_lowers_the_cost(
    case: tuple[dict[str, Any], Usage], seconds: int
) -> None:
    """A session that ends parking, parked any number of seconds longer, costs no less.

    Exactly so while the parking stays with the elements of the last period (see above).
    """
    document, usage = case
    plan = TariffPlan.from_ocpi(document)
    before = price(plan, usage)
    assume(before.periods and before.periods[-1].kind == PARKING)
    longer = dataclasses.replace(usage, end=usage.end + timedelta(seconds=seconds))
    after = price(plan, longer)
    assert after.periods[-1].kind == PARKING
    same = _shape(after.periods) == _shape(before.periods)
    event(f"parked longer, {'same' if same else 'other'} elements")
    _assert_no_less(after, before, allow=_step_extras(before))
    if same:
        _assert_no_less(after, before, incl=_incl_follows_excl(document))


@PROPERTY
@given(
    scenarios(
        kinds=RESTRICTION_KINDS - {"kwh", "power", "current"},
        one_energy_price=True,
        reservation=False,
    ),
    st.integers(100, 500).map(lambda n: Decimal(n) / 100),
)
def test_more_energy_at_the_same_times_never_lowers_the_cost(
    case: tuple[dict[str, Any], Usage], factor: Decimal
) -> None:
    """Every reading's energy times ``factor`` >= 1 costs at least as much.

    Only for tariffs without power, current or kWh restrictions: OCPI lets an element for
    higher power, higher current or past a kWh bound be cheaper, so more energy may
    legitimately cost less there. And only with one ENERGY price across the tariff: the
    step_size extra is billed at the last ENERGY component, so more energy under an earlier,
    cheaper component can shrink an extra billed at a dearer one
    (test_more_energy_under_two_energy_prices_can_lower_the_step_extra).
    """
    document, usage = case
    plan = TariffPlan.from_ocpi(document)
    more = dataclasses.replace(
        usage,
        points=[dataclasses.replace(p, energy_wh=p.energy_wh * factor) for p in usage.points],
    )
    before, after = price(plan, usage), price(plan, more)
    assume(
        [(p.start, p.kind) for p in before.periods] == [(p.start, p.kind) for p in after.periods]
    )
    event("energy priced" if before.subtotal("energy").excl_vat else "energy free")
    _assert_no_less(after, before, incl=_incl_follows_excl(document))
    assert after.subtotal("energy").excl_vat >= before.subtotal("energy").excl_vat - NOISE


def _two_time_windows(unit: str, until_17: tuple[float, int], from_17: tuple[float, int]) -> dict:
    """One ``unit`` component (price, step_size) until 17:00 UTC and another from 17:00."""
    return {
        "id": "SWITCH",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [
                    {"type": unit, "price": until_17[0], "step_size": until_17[1]}
                ],
                "restrictions": {"end_time": "17:00"},
            },
            {"price_components": [{"type": unit, "price": from_17[0], "step_size": from_17[1]}]},
        ],
    }


def test_prolonging_into_a_cheaper_element_can_lower_the_step_extra() -> None:
    """OCPI, not a bug: the last component's step decides, so crossing 17:00 cuts the extra.

    TIME 10.00/h in 1 h steps until 17:00, free in 1 s steps after. 16:30-16:59 charging is
    29 min, rounded up to 1 h: 10.00. Prolonged to 17:00:30, the free component is last:
    30 min at 10.00/h = 5.00, and no extra.
    """
    plan = TariffPlan.from_ocpi(_two_time_windows("TIME", (10.0, 3600), (0.0, 1)))
    start = datetime(2025, 1, 6, 16, 30, tzinfo=UTC)

    def charging_until(end: datetime) -> Usage:
        return Usage(start, end, points=[MeterPoint(end, Decimal(5000))])

    before = price(plan, charging_until(datetime(2025, 1, 6, 16, 59, tzinfo=UTC)))
    after = price(plan, charging_until(datetime(2025, 1, 6, 17, 0, 30, tzinfo=UTC)))
    assert before.total_cost.excl_vat == Decimal("10.00")
    assert after.total_cost.excl_vat == Decimal("5.00")


def test_more_energy_under_two_energy_prices_can_lower_the_step_extra() -> None:
    """OCPI, not a bug: more energy in the free window shrinks the extra billed at 10.00.

    ENERGY free until 17:00, 10.00/kWh in 1000 Wh steps after. 100 Wh before 17:00 and 1 Wh
    after: 101 Wh round up to 1000 Wh, the extra 899 Wh billed at 10.00/kWh; 0.01 + 8.99 =
    9.00. Twice the energy: 202 Wh round up to 1000 Wh; 0.02 + 7.98 = 8.00.
    """
    plan = TariffPlan.from_ocpi(_two_time_windows("ENERGY", (0.0, 1), (10.0, 1000)))
    start = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)

    def with_factor(factor: int) -> Usage:
        return Usage(
            start,
            start + timedelta(minutes=61),
            points=[
                MeterPoint(start + timedelta(hours=1), Decimal(100 * factor)),
                MeterPoint(start + timedelta(minutes=61), Decimal(101 * factor)),
            ],
        )

    assert price(plan, with_factor(1)).total_cost.excl_vat == Decimal("9.00")
    assert price(plan, with_factor(2)).total_cost.excl_vat == Decimal("8.00")


# 6. Rounding -----------------------------------------------------------------------------


@st.composite
def ties(draw: st.DrawFn) -> tuple[dict[str, Any], Usage]:
    """A session whose exact total is an odd number of half minor units: a rounding tie.

    1.00 per kWh (in the currency's units) with (2n + 1) * 5 / 10**(places - 2) Wh costs
    (2n + 1) half minor units, where half-up and half-even rounding differ.
    """
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    halves = 2 * draw(st.integers(0, 2000)) + 1
    energy = Decimal(halves) * 5 * Decimal(10) ** (2 - MINOR_UNITS[currency])
    usage = draw(usages(reservation=False))
    end = usage.start + timedelta(hours=1)
    document = {
        "id": "TIE",
        "currency": currency,
        "elements": [{"price_components": [{"type": "ENERGY", "price": 1.0, "step_size": 1}]}],
    }
    usage = dataclasses.replace(usage, end=end, points=[MeterPoint(end, energy)])
    return document, usage


@PROPERTY
@given(st.one_of(scenarios(), ties()))
def test_total_cost_is_the_exact_total_rounded_half_up_once(
    case: tuple[dict[str, Any], Usage],
) -> None:
    """total_cost (and each category's cost) is its exact amount rounded half-up to the
    currency's minor unit: 2 decimals for EUR, 0 for JPY, 3 for KWD."""
    document, usage = case
    bill = price(TariffPlan.from_ocpi(document), usage)
    places = MINOR_UNITS[document["currency"]]
    with localcontext(prec=2 * PRECISION):
        tie = (bill.exact_total.excl_vat * 10**places * 2) % 2 == 1
    event("exact total is a rounding tie" if tie else "-")
    assert bill.currency == document["currency"]
    for exact, rounded in [
        (bill.exact_total, bill.total_cost),
        *((bill.subtotal(c), bill.cost(c)) for c in CATEGORIES),
    ]:
        for amount, shown in (
            (exact.excl_vat, rounded.excl_vat),
            (exact.incl_vat, rounded.incl_vat),
        ):
            assert shown == _half_up(amount, places)
            assert shown.as_tuple().exponent == -places  # "12.30", never "12.3" or "12.300"


# 7. Determinism and point order -------------------------------------------------------------


def _bill_facts(bill: Bill) -> tuple[object, ...]:
    return (bill.periods, bill.lines, bill.adjustments, bill.exact_total, bill.total_cost)


@PROPERTY
@given(scenarios(), st.randoms(use_true_random=False))
def test_pricing_is_deterministic_and_ignores_the_order_of_readings(
    case: tuple[dict[str, Any], Usage], random: Any
) -> None:
    """Pricing twice, from a freshly read tariff, or with the readings in any other order
    (readings at one instant included), gives the same bill."""
    document, usage = case
    first = price(TariffPlan.from_ocpi(document), usage)
    again = price(TariffPlan.from_ocpi(document), usage)
    assert _bill_facts(first) == _bill_facts(again)
    shuffled = list(usage.points)
    random.shuffle(shuffled)
    reordered = price(TariffPlan.from_ocpi(document), dataclasses.replace(usage, points=shuffled))
    assert _bill_facts(reordered) == _bill_facts(first)


T0 = datetime(2025, 1, 6, 10, tzinfo=UTC)
ENERGY_TARIFF = {
    "id": "ENERGY",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
}


def test_readings_finer_than_the_energy_quantum_never_go_negative() -> None:
    """A reading of 1.0000000000007 Wh at 11:30, then nothing until 12:30; the tariff cuts at
    12:00. Energy never decreases, so no period may have less than none. Regression:
    ``periods._energies_at`` rounded the energy at 12:00 to 1.000000000001 Wh (its 1e-12
    quantum), above the reading: 12:00-12:30 got -3e-13 Wh and a negative ENERGY line."""
    document = {
        "id": "NOON",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": "ENERGY", "price": 1.0, "step_size": 1}],
                "restrictions": {"start_time": "12:00"},
            },
            {"price_components": [{"type": "PARKING_TIME", "price": 0.0, "step_size": 1}]},
        ],
    }
    start = datetime(2025, 1, 6, 11, tzinfo=UTC)
    reading = MeterPoint(start + timedelta(minutes=30), Decimal("1.0000000000007"))
    usage = Usage(start, start + timedelta(minutes=90), points=[reading])
    bill = price(TariffPlan.from_ocpi(document), usage)
    assert min(p.energy_wh for p in bill.periods) >= 0
    assert all(line.cost.excl_vat >= 0 for line in bill.lines)


def test_readings_at_one_instant_are_priced_whatever_their_order() -> None:
    """TIME 5.00/h below 16 A, 1.00/h otherwise; two readings at 11:00, same energy, 10 A and
    32 A. Regression: ``periods._intervals`` kept the current given last, so one order cost
    5.00 and the other 1.00."""
    document = {
        "id": "CURRENT",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": "TIME", "price": 5.0, "step_size": 1}],
                "restrictions": {"max_current": 16},
            },
            {"price_components": [{"type": "TIME", "price": 1.0, "step_size": 1}]},
        ],
    }
    plan = TariffPlan.from_ocpi(document)
    end = T0 + timedelta(hours=1)
    readings = [
        MeterPoint(end, Decimal(10000), Decimal(10)),
        MeterPoint(end, Decimal(10000), Decimal(32)),
    ]
    one = price(plan, Usage(T0, end, points=readings))
    other = price(plan, Usage(T0, end, points=readings[::-1]))
    assert one.total_cost == other.total_cost


def test_readings_out_of_time_order_are_priced_as_sorted() -> None:
    """1000 Wh at 11:00 and 2000 Wh at 12:00, listed latest first: energy never went down.
    Regression: ``Usage.__post_init__`` checked list order and refused them."""
    readings = [
        MeterPoint(T0 + timedelta(hours=2), Decimal(2000)),
        MeterPoint(T0 + timedelta(hours=1), Decimal(1000)),
    ]
    plan = TariffPlan.from_ocpi(ENERGY_TARIFF)
    end = T0 + timedelta(hours=2)
    shuffled = price(plan, Usage(T0, end, points=readings))
    ordered = price(plan, Usage(T0, end, points=readings[::-1]))
    assert _bill_facts(shuffled) == _bill_facts(ordered)


def test_energy_going_down_over_time_is_refused() -> None:
    """2000 Wh at 11:00 and 1000 Wh at 12:00, listed latest first. Regression: ``Usage``
    checked list order, let them pass, and the engine priced a PARKING period of -1000 Wh."""
    readings = [
        MeterPoint(T0 + timedelta(hours=2), Decimal(1000)),
        MeterPoint(T0 + timedelta(hours=1), Decimal(2000)),
    ]
    with pytest.raises(ValueError, match="went down"):
        Usage(T0, T0 + timedelta(hours=2), points=readings)
