"""A tariff as the pricing engine reads it: OCPI 2.2.1 Tariff elements with exact numbers.

``TariffPlan.from_ocpi`` takes an OCPI Tariff document (or the stored ``Tariff`` row's
fields rendered as one) and reads every price, VAT rate and restriction bound as a
``Decimal``. ``select_tariff`` picks, among the tariffs a connector lists, the one that
applies to a session: valid at its start, of the type the session calls for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from cpms.pricing.money import Price, decimal_of

__all__ = [
    "PriceComponent",
    "Restrictions",
    "TariffElement",
    "TariffPlan",
    "TariffSwitch",
    "select_tariff",
    "wanted_tariff_types",
]

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
"""OCPI DayOfWeek in ``datetime.weekday()`` order."""


def _decimal(raw: Mapping[str, Any], field: str) -> Decimal | None:
    value = raw.get(field)
    return None if value is None else decimal_of(value)


def _clock(text: str | None) -> time | None:
    if text is None:
        return None
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True, slots=True)
class PriceComponent:
    """One OCPI PriceComponent: a price per unit of a dimension, excluding VAT."""

    type: str
    """ENERGY (per kWh), FLAT (once), TIME (per hour charging), PARKING_TIME (per hour)."""
    price: Decimal
    vat: Decimal | None
    """VAT in percent; ``None`` means no VAT applies (which is not the same as 0 %)."""
    step_size: int
    """Billing block in Wh (ENERGY) or seconds (TIME, PARKING_TIME); 0 is read as 1."""

    @property
    def step(self) -> int:
        """``step_size`` as a usable block (at least 1)."""
        return max(self.step_size, 1)

    def cost(self, volume: Decimal) -> Price:
        """The exact price of ``volume`` units (kWh, hours, or 1 for FLAT)."""
        return Price.of(volume * self.price, self.vat)


@dataclass(frozen=True, slots=True)
class Restrictions:
    """OCPI TariffRestrictions, every bound exact. All set fields must hold at once."""

    start_time: time | None = None
    end_time: time | None = None
    start_date: str | None = None
    """Local date ``YYYY-MM-DD``, inclusive (ISO text compares in date order)."""
    end_date: str | None = None
    """Local date, exclusive."""
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: frozenset[int] | None = None
    """Weekday numbers (Monday 0) the element is active on."""
    reservation: str | None = None
    """RESERVATION or RESERVATION_EXPIRES: the element prices a reservation, not charging."""

    @classmethod
    def from_ocpi(cls, raw: Mapping[str, Any] | None) -> Restrictions:
        """Read an OCPI TariffRestrictions object (``None`` = no restrictions)."""
        if not raw:
            return cls()
        days = raw.get("day_of_week")
        return cls(
            start_time=_clock(raw.get("start_time")),
            end_time=_clock(raw.get("end_time")),
            start_date=raw.get("start_date"),
            end_date=raw.get("end_date"),
            min_kwh=_decimal(raw, "min_kwh"),
            max_kwh=_decimal(raw, "max_kwh"),
            min_current=_decimal(raw, "min_current"),
            max_current=_decimal(raw, "max_current"),
            min_power=_decimal(raw, "min_power"),
            max_power=_decimal(raw, "max_power"),
            min_duration=raw.get("min_duration"),
            max_duration=raw.get("max_duration"),
            day_of_week=frozenset(DAYS.index(day) for day in days) if days else None,
            reservation=raw.get("reservation"),
        )

    @property
    def uses_power(self) -> bool:
        """True if the element depends on the charging power."""
        return self.min_power is not None or self.max_power is not None

    @property
    def uses_current(self) -> bool:
        """True if the element depends on the charging current."""
        return self.min_current is not None or self.max_current is not None


@dataclass(frozen=True, slots=True)
class TariffElement:
    """One OCPI TariffElement: components that apply together while the restrictions hold."""

    index: int
    """Position in the tariff's ``elements`` (the evaluation order)."""
    components: tuple[PriceComponent, ...]
    restrictions: Restrictions
    raw_restrictions: Mapping[str, Any] | None
    """The restrictions as the tariff wrote them, for explanations."""

    def component(self, dimension: str) -> PriceComponent | None:
        """This element's component for ``dimension`` (the first, if several)."""
        return next((c for c in self.components if c.type == dimension), None)


@dataclass(frozen=True, slots=True)
class TariffPlan:
    """An OCPI Tariff ready for pricing."""

    id: str
    currency: str
    type: str | None
    elements: tuple[TariffElement, ...]
    min_price: Price | None
    max_price: Price | None
    incl_vat_bounded: tuple[bool, bool]
    """Whether ``min_price`` / ``max_price`` gave an ``incl_vat`` bound (it is optional)."""
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None

    @classmethod
    def from_ocpi(cls, document: Mapping[str, Any]) -> TariffPlan:
        """Read an OCPI Tariff document (already validated)."""
        elements = tuple(
            TariffElement(
                index=index,
                components=tuple(
                    PriceComponent(
                        type=raw["type"],
                        price=decimal_of(raw["price"]),
                        vat=_decimal(raw, "vat"),
                        step_size=int(raw.get("step_size") or 0),
                    )
                    for raw in element["price_components"]
                ),
                restrictions=Restrictions.from_ocpi(element.get("restrictions")),
                raw_restrictions=element.get("restrictions"),
            )
            for index, element in enumerate(document["elements"])
        )
        return cls(
            id=document["id"],
            currency=document["currency"],
            type=document.get("type"),
            elements=elements,
            min_price=_bound(document.get("min_price")),
            max_price=_bound(document.get("max_price")),
            incl_vat_bounded=(
                (document.get("min_price") or {}).get("incl_vat") is not None,
                (document.get("max_price") or {}).get("incl_vat") is not None,
            ),
            start_date_time=_moment(document.get("start_date_time")),
            end_date_time=_moment(document.get("end_date_time")),
        )

    def valid_at(self, moment: datetime) -> bool:
        """True if the tariff is in force at ``moment`` (start inclusive, end exclusive)."""
        if self.start_date_time is not None and moment < self.start_date_time:
            return False
        return self.end_date_time is None or moment < self.end_date_time

    @property
    def uses_power(self) -> bool:
        """True if any element depends on power (periods then carry MIN/MAX_POWER)."""
        return any(e.restrictions.uses_power for e in self.elements)

    @property
    def uses_current(self) -> bool:
        """True if any element depends on current (periods then carry MIN/MAX_CURRENT)."""
        return any(e.restrictions.uses_current for e in self.elements)


@dataclass(frozen=True, slots=True)
class TariffSwitch:
    """From ``at`` on, a session is priced with ``plan`` instead of the tariff before it.

    A driver's charging preference accepted mid-session (OCPI ``profile_type``) can call for
    another tariff type: the time, energy and parking from ``at`` on are priced with the
    new tariff. Restrictions keep counting from the session start (``min_duration``,
    ``min_kwh``, ...): the session is one session, only its price changes.
    """

    at: datetime
    plan: TariffPlan


def _bound(raw: Mapping[str, Any] | None) -> Price | None:
    if raw is None:
        return None
    excl = decimal_of(raw["excl_vat"])
    incl = raw.get("incl_vat")
    return Price(excl, excl if incl is None else decimal_of(incl))


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)  # validated as an OCPI DateTime on import
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def wanted_tariff_types(
    *, ad_hoc: bool = False, profile: str | None = None
) -> tuple[str | None, ...]:
    """The tariff types a session calls for, best first.

    An ad hoc payment (no contract) asks for ``AD_HOC_PAYMENT``; a driver's charging
    preference asks for ``PROFILE_<profile>``; everyone else gets ``REGULAR`` or an untyped
    tariff (a tariff without ``type`` is valid for all sessions).
    """
    wanted: list[str | None] = []
    if ad_hoc:
        wanted.append("AD_HOC_PAYMENT")
    if profile is not None and profile != "REGULAR":
        wanted.append(f"PROFILE_{profile}")
    wanted += ["REGULAR", None]
    return tuple(wanted)


def select_tariff(
    candidates: Sequence[TariffPlan],
    at: datetime,
    *,
    ad_hoc: bool = False,
    profile: str | None = None,
) -> TariffPlan | None:
    """Pick the tariff for a session starting at ``at`` among a connector's ``tariff_ids``.

    Only tariffs valid at ``at`` count. The first (in the connector's order) of the best
    wanted type wins. A tariff of a type the session does not call for never applies
    (OCPI: ``PROFILE_GREEN`` is valid only when GREEN is the driver's preference, ad hoc
    prices only for drivers without a contract): then there is no tariff.
    """
    valid = [plan for plan in candidates if plan.valid_at(at)]
    for wanted in wanted_tariff_types(ad_hoc=ad_hoc, profile=profile):
        for plan in valid:
            if plan.type == wanted:
                return plan
    return None
