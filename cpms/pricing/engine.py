"""Price a session: tariff + usage -> charging periods, priced lines, totals. No I/O.

The running cost of an active session and the final cost on its CDR both come from
``price``; only the end of the usage differs. The rules, in the order they are applied:

1. **Periods** (``periods.charging_periods``): per dimension, the first matching element
   is active; ENERGY is priced per kWh, TIME per hour charging, PARKING_TIME per hour not
   charging, a reservation's TIME per hour reserved.
2. **FLAT** is charged once per phase: once for the session, at the first period whose
   active element has a FLAT component, and once for a reservation, likewise.
3. **step_size** (OCPI 2.2.1 section "step_size", the checklist's 4.5) is applied once per
   session, on totals, never per period: for ENERGY, the component active in the last
   period billing energy sets the block (Wh), the session's billed energy is rounded up to
   it, and the extra is priced at that component. For time, TIME and PARKING_TIME count as
   one group: the component active in the last period billing either sets the block
   (seconds) and that dimension's total is rounded up (charging time before parking is not
   rounded). A reservation's TIME is rounded the same way, on its own.
4. **VAT** per line: ``incl_vat = excl_vat * (1 + vat/100)``; no ``vat`` means none applies.
5. **min_price / max_price** bound the total, excl. and incl. VAT each on its own. Where a
   bound gives no ``incl_vat``, the incl. VAT total moves with the excl. VAT one at the
   session's effective VAT rate.
6. **Rounding**, once, to the currency's minor unit (``money.round_money``).

A session that switched tariff mid-way (``TariffSwitch``) is priced period by period with
each period's own tariff (``Period.tariff``). It stays one session: FLAT is still charged
once per phase and step_size still applies once, on totals, at the component active last.
``min_price`` / ``max_price`` bound what each tariff priced (the lines of its periods), since
each tariff states its bounds for what it prices; with one tariff that is the whole total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

from cpms.pricing.money import ZERO, Price
from cpms.pricing.periods import (
    CHARGING,
    PARKING,
    PRECISION,
    RESERVATION,
    Period,
    charging_periods,
)
from cpms.pricing.tariff_plan import PriceComponent, TariffElement, TariffPlan, TariffSwitch
from cpms.pricing.usage import Usage

__all__ = ["CATEGORIES", "Bill", "Line", "price"]

CATEGORIES = ("fixed", "energy", "time", "parking", "reservation")
"""Cost categories, as the CDR's total_fixed/energy/time/parking/reservation_cost."""


@dataclass(frozen=True, slots=True)
class Line:
    """One priced quantity, with everything needed to explain it."""

    period: int
    """Index of the period the amount belongs to."""
    dimension: str
    """ENERGY, TIME, PARKING_TIME or FLAT (the tariff dimension priced)."""
    category: str
    element: int
    restrictions: dict[str, Any] | None
    volume: Decimal
    """kWh, hours, or 1 for FLAT."""
    unit_price: Decimal
    vat: Decimal | None
    cost: Price
    """Exact, unrounded."""
    note: str = ""
    tariff_id: str | None = None
    """The tariff that priced it (a session may switch tariff mid-way)."""

    def describe(self, currency: str, *, name_tariff: bool = False) -> str:
        """A one-line explanation: which component, which restriction, what it cost.

        ``name_tariff`` adds which tariff priced it (for a session priced with several).
        """
        unit = {"ENERGY": "kWh", "FLAT": "", "TIME": "h", "PARKING_TIME": "h"}[self.dimension]
        if self.dimension == "FLAT":
            quantity = "once"
        else:
            quantity = f"{_show(self.volume)} {unit} x {_show(self.unit_price)} {currency}/{unit}"
        where = "no restrictions" if not self.restrictions else _restriction_text(self.restrictions)
        vat = "no VAT" if self.vat is None else f"VAT {_show(self.vat)}%"
        tariff = f"tariff {self.tariff_id}, " if name_tariff and self.tariff_id else ""
        text = (
            f"period {self.period + 1}: {self.dimension} {quantity} "
            f"= {_show(self.cost.excl_vat)} excl. / {_show(self.cost.incl_vat)} incl. VAT "
            f"({vat}; {tariff}element {self.element + 1}, {where})"
        )
        return f"{text}; {self.note}" if self.note else text


@dataclass(slots=True)
class Bill:
    """A priced session: periods, lines, exact subtotals and the rounded figures."""

    currency: str
    tariff: TariffPlan | None
    """The tariff the session started with (see ``tariffs`` for a session that switched)."""
    periods: list[Period]
    lines: list[Line] = field(default_factory=list)
    adjustments: list[str] = field(default_factory=list)
    """What min_price / max_price did, in words."""
    exact_total: Price = field(default_factory=Price)
    """Sum of the lines, after min/max price, before rounding."""

    @property
    def tariffs(self) -> list[TariffPlan]:
        """Every tariff that priced a period, in the order they began; else the session's."""
        seen: dict[str, TariffPlan] = {}
        for period in self.periods:
            if period.tariff is not None:
                seen.setdefault(period.tariff.id, period.tariff)
        if not seen and self.tariff is not None:
            return [self.tariff]
        return list(seen.values())

    def subtotal(self, category: str) -> Price:
        """Exact cost of one category (see ``CATEGORIES``)."""
        # At the engine's precision, as the lines were priced: in the default 28 digits a sum
        # of repeating decimals (prices per hour) rounded, and more energy could come out a
        # digit cheaper.
        with localcontext(prec=PRECISION):
            return sum((line.cost for line in self.lines if line.category == category), Price())

    def has(self, category: str) -> bool:
        """True if any line is of ``category``."""
        return any(line.category == category for line in self.lines)

    @property
    def total_cost(self) -> Price:
        """The total, bounded and rounded: what the driver's eMSP is charged."""
        return self.exact_total.rounded(self.currency)

    def cost(self, category: str) -> Price:
        """One category's cost, rounded (CDR ``total_<category>_cost``)."""
        return self.subtotal(category).rounded(self.currency)

    @property
    def energy_kwh(self) -> Decimal:
        """Energy of the session (kWh), exact."""
        return sum((p.energy_wh for p in self.periods), ZERO) / 1000

    def hours(self, *kinds: str) -> Decimal:
        """Hours spent in periods of the given kinds (CHARGING, PARKING, RESERVATION)."""
        return sum((p.seconds for p in self.periods if p.kind in kinds), ZERO) / 3600

    def explain(self) -> list[str]:
        """The bill as text, line by line, ending with rounding and the total."""
        several = len(self.tariffs) > 1
        text = [line.describe(self.currency, name_tariff=several) for line in self.lines]
        text += self.adjustments
        total = self.total_cost
        text.append(
            f"total: {_show(self.exact_total.excl_vat)} excl. / "
            f"{_show(self.exact_total.incl_vat)} incl. VAT exact, rounded once half-up to "
            f"{total.excl_vat} / {total.incl_vat} {self.currency}"
        )
        return text


def _show(value: Decimal) -> str:
    text = format(value.quantize(Decimal("0.000001")).normalize(), "f")
    return text


def _restriction_text(restrictions: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} {','.join(value) if isinstance(value, list) else value}"
        for key, value in restrictions.items()
    )


_CATEGORY = {
    (CHARGING, "ENERGY"): "energy",
    (PARKING, "ENERGY"): "energy",
    (CHARGING, "TIME"): "time",
    (PARKING, "PARKING_TIME"): "parking",
    (RESERVATION, "TIME"): "reservation",
    (RESERVATION, "FLAT"): "reservation",
    (CHARGING, "FLAT"): "fixed",
    (PARKING, "FLAT"): "fixed",
}


def _quantity(period: Period, dimension: str) -> tuple[Decimal, int]:
    """A period's quantity in base units (Wh or seconds) and how many make a billing unit."""
    return (period.energy_wh, 1000) if dimension == "ENERGY" else (period.seconds, 3600)


def _line(
    index: int,
    period: Period,
    dimension: str,
    element: TariffElement,
    component: PriceComponent,
    quantity: Decimal,
    per: int = 1,
    note: str = "",
) -> Line:
    # Multiply before dividing: 9030 s at 3.00/h is exactly 7.525, not 7.52499...
    excl_vat = component.price * quantity / per
    return Line(
        tariff_id=period.tariff.id if period.tariff is not None else None,
        period=index,
        dimension=dimension,
        category=_CATEGORY[(period.kind, dimension)],
        element=element.index,
        restrictions=dict(element.raw_restrictions) if element.raw_restrictions else None,
        volume=quantity / per,
        unit_price=component.price,
        vat=component.vat,
        cost=Price.of(excl_vat, component.vat),
        note=note,
    )


def _flat_lines(periods: list[Period]) -> list[Line]:
    lines = []
    charged: set[bool] = set()
    for index, period in enumerate(periods):
        is_reservation = period.kind == RESERVATION
        if is_reservation in charged or "FLAT" not in period.active:
            continue
        element, component = period.active["FLAT"]
        lines.append(_line(index, period, "FLAT", element, component, Decimal(1)))
        charged.add(is_reservation)
    return lines


def _step_line(
    periods: list[Period], kinds: tuple[str, ...], dimensions: tuple[str, ...]
) -> Line | None:
    """The step_size extra of one group of dimensions, billed at its last component."""
    last: tuple[int, str] | None = None
    for index, period in enumerate(periods):
        if period.kind not in kinds:
            continue
        for dimension in dimensions:
            if dimension in period.active and (dimension != "TIME" or period.kind != PARKING):
                last = (index, dimension)
    if last is None:
        return None
    index, dimension = last
    period = periods[index]
    element, component = period.active[dimension]
    if dimension == "ENERGY":
        quantity = sum((p.energy_wh for p in periods if "ENERGY" in p.active), ZERO)
        unit, per = "Wh", 1000
    else:
        quantity = sum(
            (p.seconds for p in periods if p.kind in kinds and dimension in p.active), ZERO
        )
        unit, per = "s", 3600
    step = component.step
    rounded = (quantity / step).to_integral_value(rounding=ROUND_CEILING) * step
    extra = rounded - quantity
    if extra <= 0:
        return None
    note = (
        f"step_size {step} {unit}: {dimension} total {_show(quantity)} {unit} rounded up to "
        f"{_show(rounded)} {unit}, the extra {_show(extra)} {unit} billed here"
    )
    return _line(index, period, dimension, element, component, extra, per, note)


def _bounded_total(bill: Bill) -> Price:
    """The bill's total, each tariff's lines bounded by its min/max price (one: all lines)."""
    tariffs = bill.tariffs
    if len(tariffs) == 1:
        return _bounded(bill, tariffs[0], list(bill.lines))
    total = Price()
    for plan in tariffs:
        lines = [line for line in bill.lines if line.tariff_id == plan.id]
        total += _bounded(bill, plan, lines, label=f"tariff {plan.id}: ")
    return total


def _bounded(bill: Bill, plan: TariffPlan, lines: Sequence[Line], label: str = "") -> Price:
    total = sum((line.cost for line in lines), Price())
    excl = total.excl_vat
    if plan.min_price is not None:
        excl = max(excl, plan.min_price.excl_vat)
    if plan.max_price is not None:
        excl = min(excl, plan.max_price.excl_vat)
    # Without an incl. VAT bound, incl. VAT follows excl. VAT at the session's VAT rate.
    if excl == total.excl_vat or total.incl_vat == total.excl_vat:
        incl = total.incl_vat if excl == total.excl_vat else excl
    elif total.excl_vat:
        incl = excl * (total.incl_vat / total.excl_vat)
    else:
        incl = excl
    if plan.min_price is not None and plan.incl_vat_bounded[0]:
        incl = max(incl, plan.min_price.incl_vat)
    if plan.max_price is not None and plan.incl_vat_bounded[1]:
        incl = min(incl, plan.max_price.incl_vat)
    if (excl, incl) != (total.excl_vat, total.incl_vat):
        bounds = [
            f"{name} {_show(bound.excl_vat)} excl. / {_show(bound.incl_vat)} incl. VAT"
            for name, bound in (("min_price", plan.min_price), ("max_price", plan.max_price))
            if bound is not None
        ]
        bill.adjustments.append(
            f"{label}{' and '.join(bounds)}: total {_show(total.excl_vat)} / "
            f"{_show(total.incl_vat)} becomes {_show(excl)} / {_show(incl)}"
        )
    return Price(excl, incl)


def price(
    plan: TariffPlan | None,
    usage: Usage,
    *,
    currency: str | None = None,
    switches: Sequence[TariffSwitch] = (),
) -> Bill:
    """Price ``usage`` under ``plan``; without a plan every period is free of charge.

    ``currency`` defaults to the plan's (and to EUR without a plan). ``switches`` price the
    session from their moment on with another tariff (of the same currency).
    """
    for switch in switches:
        if plan is None or switch.plan.currency != plan.currency:
            raise ValueError(
                f"tariff {switch.plan.id} ({switch.plan.currency}) cannot follow "
                f"{'no tariff' if plan is None else f'{plan.id} ({plan.currency})'}"
            )
    with localcontext(prec=PRECISION):
        return _price(plan, usage, currency, switches)


def _price(
    plan: TariffPlan | None,
    usage: Usage,
    currency: str | None,
    switches: Sequence[TariffSwitch],
) -> Bill:
    periods = charging_periods(plan, usage, switches)
    bill = Bill(
        currency=currency or (plan.currency if plan is not None else "EUR"),
        tariff=plan,
        periods=periods,
    )
    lines: list[Line] = []
    for index, period in enumerate(periods):
        for dimension, (element, component) in period.active.items():
            if dimension == "FLAT":
                continue
            lines.append(
                _line(index, period, dimension, element, component, *_quantity(period, dimension))
            )
    lines += _flat_lines(periods)
    for kinds, dimensions in (
        ((CHARGING, PARKING), ("ENERGY",)),
        ((CHARGING, PARKING), ("TIME", "PARKING_TIME")),
        ((RESERVATION,), ("TIME",)),
    ):
        step = _step_line(periods, kinds, dimensions)
        if step is not None:
            lines.append(step)
    lines.sort(key=lambda line: line.period)
    bill.lines = lines
    bill.exact_total = _bounded_total(bill) if plan is not None else Price()
    return bill
