"""Sessions priced by the pricing engine: what is sealed at start, running cost, final bill.

At start a session seals what its CDR must show as it was then (OCPI: "as at session
start"): the tariff chosen for its connector, that tariff's OCPI document, the CdrLocation,
the Location's time zone and the connector's voltage. From then on it is priced only from
those and its billing timeline (``BilledReading``), so a tariff or address edited mid-session
changes nothing, and the running cost and the final cost come from the same code
(``bill_session``): the running cost is the bill up to the newest reading.

One thing may change the tariff of a running session: the driver's charging preference
(OCPI ChargingPreferences ``profile_type``) accepted mid-session, when it calls for another
tariff type (``PROFILE_CHEAP``/``FAST``/``GREEN``, or ``REGULAR`` back) than the one in
force. ``switch_tariff`` then seals that tariff's document beside the first in ``tariffs``
and records the switch (``tariff_switches``): the session is billed with the old tariff up
to that moment and with the new one from it (``cpms.pricing.TariffSwitch``), its charging
periods carry the ``tariff_id`` of each, and its CDR lists both tariffs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert, select

from cpms.documents import format_datetime, parse_datetime, tariff_to_ocpi
from cpms.driver_sql import DriverStatement
from cpms.model import (
    BilledReading,
    ChargingPeriod,
    Connector,
    Evse,
    Location,
    Reservation,
    Session,
    Tariff,
)
from cpms.pricing import (
    CHARGING,
    RESERVATION,
    Bill,
    MeterPoint,
    Period,
    ReservationSpan,
    TariffPlan,
    TariffSwitch,
    Usage,
    price,
    select_tariff,
)
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "DEFAULT_CURRENCY",
    "apply_bills",
    "bill_session",
    "cdr_location_of",
    "connector_tariffs",
    "current_plan",
    "live_tariffs",
    "period_dimensions",
    "periods_to_ocpi",
    "plan_of",
    "record_billed_reading",
    "refresh_running_cost",
    "refresh_running_costs",
    "seal_session",
    "shorten",
    "store_periods",
    "switch_tariff",
    "tariff_switches_of",
    "tariffs_listed",
]

log = logging.getLogger("cpms.pricing")

DEFAULT_CURRENCY = "EUR"
"""Used when the connector lists no tariff to take a currency from."""
_VOLUME_PLACES = Decimal("0.000001")


def shorten(text: str | None, limit: int) -> str | None:
    """Fit ``text`` into ``limit`` characters, cutting at a word boundary when one is near."""
    if text is None or len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if text[limit] != " " and space >= limit // 2:  # else the cut falls between words
        cut = cut[:space]
    return cut.rstrip(" ,;-")


def cdr_location_of(
    location: Location, evse: Evse | None, connector: Connector | None
) -> dict[str, Any]:
    """The OCPI CdrLocation of a session, within its field limits (address 45, state 20).

    ``#NA`` stands for the EVSE and connector of a reservation that was for none in
    particular (OCPI allows it there).
    """
    document: dict[str, Any] = {
        "id": location.id,
        "name": shorten(location.name, 255),
        "address": shorten(location.address, 45),
        "city": shorten(location.city, 45),
        "postal_code": shorten(location.postal_code, 10),
        "state": shorten(location.state, 20),
        "country": location.country,
        "coordinates": {"latitude": location.latitude, "longitude": location.longitude},
        "evse_uid": evse.uid if evse is not None else "#NA",
        "evse_id": (evse.evse_id if evse is not None else None) or "#NA",
        "connector_id": connector.id if connector is not None else "#NA",
        "connector_standard": connector.standard if connector is not None else "IEC_62196_T2",
        "connector_format": connector.format if connector is not None else "SOCKET",
        "connector_power_type": connector.power_type if connector is not None else "AC_3_PHASE",
    }
    return {key: value for key, value in document.items() if value is not None}


async def connector_tariffs(uow: UnitOfWork, connector: Connector | None) -> list[Tariff]:
    """The live tariffs a connector lists in ``tariff_ids``, in its order."""
    ids = list(connector.tariff_ids or ()) if connector is not None else []
    if not ids:
        return []
    return tariffs_listed(connector, await live_tariffs(uow, ids))


async def live_tariffs(uow: UnitOfWork, ids: Iterable[str]) -> dict[str, Tariff]:
    """The tariffs of ``ids`` not retired, by id (one query, for many connectors at once)."""
    wanted = set(ids)
    if not wanted:
        return {}
    query = select(Tariff).where(Tariff.id.in_(wanted), Tariff.retired_at.is_(None))
    return {t.id: t for t in await uow.session.scalars(query)}


def tariffs_listed(connector: Connector | None, live: Mapping[str, Tariff]) -> list[Tariff]:
    """The tariffs of ``live`` (``live_tariffs``) that ``connector`` lists, in its order."""
    ids = (connector.tariff_ids or ()) if connector is not None else ()
    return [live[i] for i in ids if i in live]


async def seal_session(
    uow: UnitOfWork,
    session: Session,
    location: Location,
    evse: Evse,
    connector: Connector | None,
    *,
    ad_hoc: bool = False,
    profile: str | None = None,
    tariffs: Sequence[Tariff] | None = None,
) -> TariffPlan | None:
    """Choose the session's tariff and seal what its CDR will carry; set its currency.

    ``tariffs`` are the connector's (``connector_tariffs``) when the caller read them already.
    """
    if tariffs is None:
        tariffs = await connector_tariffs(uow, connector)
    documents = {t.id: tariff_to_ocpi(t) for t in tariffs}
    plans = [TariffPlan.from_ocpi(documents[t.id]) for t in tariffs]
    plan = select_tariff(plans, session.start_date_time, ad_hoc=ad_hoc, profile=profile)
    session.tariff_id = plan.id if plan is not None else None
    session.tariffs = [documents[plan.id]] if plan is not None else []
    session.tariff_switches = None
    session.currency = (
        plan.currency if plan is not None else tariffs[0].currency if tariffs else DEFAULT_CURRENCY
    )
    session.cdr_location = cdr_location_of(location, evse, connector)
    session.time_zone = location.time_zone
    session.voltage_v = Decimal(connector.max_voltage) if connector is not None else None
    return plan


def _sealed_plan(session: Session, tariff_id: str | None) -> TariffPlan | None:
    for document in session.tariffs or ():
        if document.get("id") == tariff_id:
            return TariffPlan.from_ocpi(document)
    return None


def plan_of(session: Session) -> TariffPlan | None:
    """The tariff ``session`` started with, ready for pricing (``None``: no tariff applies)."""
    return _sealed_plan(session, session.tariff_id)


def tariff_switches_of(session: Session) -> list[TariffSwitch]:
    """The tariffs ``session`` switched to mid-session, in time order, ready for pricing."""
    switches = []
    for switch in session.tariff_switches or ():
        plan = _sealed_plan(session, switch["tariff_id"])
        if plan is not None:
            switches.append(TariffSwitch(parse_datetime(switch["from"], "from"), plan))
    return switches


def current_plan(session: Session) -> TariffPlan | None:
    """The tariff in force for ``session`` now: the last one switched to, else its first."""
    switches = tariff_switches_of(session)
    return switches[-1].plan if switches else plan_of(session)


async def switch_tariff(
    uow: UnitOfWork, session: Session, connector: Connector | None, profile: str, at: datetime
) -> TariffPlan | None:
    """Bill ``session`` from ``at`` on with the tariff ``profile`` calls for; return it.

    The tariff is chosen as at session start (``select_tariff``, the connector's tariffs
    valid at ``at``). Nothing changes (``None``) when it is the tariff already in force,
    when none applies, when the session started without a tariff (nothing is billed: a
    preference does not start billing), or when it is in another currency (a CDR has one).
    A tariff the session had before is billed as it was sealed then. No commit.
    """
    current = current_plan(session)
    if current is None:
        return None
    tariffs = await connector_tariffs(uow, connector)
    documents = {t.id: tariff_to_ocpi(t) for t in tariffs}
    plans = [TariffPlan.from_ocpi(documents[t.id]) for t in tariffs]
    chosen = select_tariff(plans, at, profile=profile)
    if chosen is None or chosen.id == current.id:
        return None
    if chosen.currency != current.currency:
        log.warning(
            "session %s: preference %s calls for tariff %s in %s, not %s: not switched",
            session.id, profile, chosen.id, chosen.currency, current.currency,
        )  # fmt: skip
        return None
    sealed = _sealed_plan(session, chosen.id)
    if sealed is None:
        session.tariffs = [*(session.tariffs or ()), documents[chosen.id]]
        sealed = chosen
    session.tariff_switches = [
        *(session.tariff_switches or ()),
        {"from": format_datetime(at), "tariff_id": sealed.id},
    ]
    return sealed


def record_billed_reading(
    uow: UnitOfWork, session: Session, at: datetime, current_a: Decimal | None = None
) -> None:
    """Add a point to the session's billing timeline at its current billed energy."""
    uow.session.add(
        BilledReading(
            session_id=session.id, at=at, energy_wh=session.energy_wh, current_a=current_a
        )
    )


async def _usages(uow: UnitOfWork, sessions: Sequence[Session]) -> dict[str, Usage]:
    """What pricing needs of each session, by id: its billing timeline (one SELECT for all).

    A session is priced to its end if it has one, else up to its newest reading.
    """
    ids = {session.id for session in sessions}
    rows = await uow.session.execute(
        select(
            BilledReading.session_id,
            BilledReading.at,
            BilledReading.energy_wh,
            BilledReading.current_a,
        )
        .where(BilledReading.session_id.in_(ids))
        .order_by(BilledReading.session_id, BilledReading.at, BilledReading.id)
    )
    points: dict[str, list[MeterPoint]] = {session_id: [] for session_id in ids}
    for session_id, at, energy, current in rows:
        points[session_id].append(MeterPoint(at, energy, current))
    return {session.id: await _usage(uow, session, points[session.id]) for session in sessions}


async def _usage(uow: UnitOfWork, session: Session, points: list[MeterPoint]) -> Usage:
    end = session.end_date_time
    if end is None:  # running: priced up to the newest reading
        end = max([session.start_date_time, *(p.at for p in points)])
    reservation = None
    start = session.start_date_time
    if session.reservation_id is not None and session.transaction_id is None:
        # Never charged: the whole session is reserved time (see ``cpms.reservations``).
        reservation = ReservationSpan(
            start, end, expired="reservation_expired" in (session.flags or ())
        )
        start = end
    elif session.reservation_id is not None:
        row = await uow.session.get(Reservation, session.reservation_id)
        if row is not None and row.created_at < session.start_date_time:
            reservation = ReservationSpan(row.created_at, session.start_date_time)
    return Usage(
        start=start,
        end=end,
        points=[p for p in points if p.at <= end],
        time_zone=session.time_zone or "UTC",
        voltage_v=session.voltage_v,
        reservation=reservation,
    )


def _priced(session: Session, usage: Usage) -> Bill:
    return price(
        plan_of(session), usage, currency=session.currency, switches=tariff_switches_of(session)
    )


async def bill_session(uow: UnitOfWork, session: Session) -> Bill:
    """Price ``session``: to its end if it has one, else up to its newest reading."""
    return _priced(session, (await _usages(uow, [session]))[session.id])


def _volume(value: Decimal) -> float:
    return float(value.quantize(_VOLUME_PLACES))


def period_dimensions(period: Period, plan: TariffPlan | None) -> list[dict[str, Any]]:
    """A period's OCPI CdrDimensions: kWh and hours, plus power/current where priced by them."""
    dimensions: list[tuple[str, Decimal]] = []
    if period.kind == RESERVATION:
        dimensions.append(("RESERVATION_TIME", period.hours))
    else:
        if period.kind == CHARGING or period.energy_wh:
            dimensions.append(("ENERGY", period.energy_wh / 1000))
        dimensions.append(("TIME" if period.kind == CHARGING else "PARKING_TIME", period.hours))
        if plan is not None and plan.uses_power and period.max_power_kw is not None:
            dimensions.append(("MIN_POWER", period.min_power_kw or Decimal(0)))
            dimensions.append(("MAX_POWER", period.max_power_kw))
        if plan is not None and plan.uses_current and period.max_current_a is not None:
            dimensions.append(("MIN_CURRENT", period.min_current_a or Decimal(0)))
            dimensions.append(("MAX_CURRENT", period.max_current_a))
    return [{"type": kind, "volume": _volume(volume)} for kind, volume in dimensions]


def periods_to_ocpi(bill: Bill) -> list[dict[str, Any]]:
    """The bill's periods as OCPI ChargingPeriods."""
    out = []
    for period in bill.periods:
        plan = period.tariff or bill.tariff  # each period's own, once a session switched
        document: dict[str, Any] = {
            "start_date_time": format_datetime(period.start),
            "dimensions": period_dimensions(period, plan),
        }
        if plan is not None and period.active:
            document["tariff_id"] = plan.id
        out.append(document)
    return out


_PERIOD = ChargingPeriod.__table__
_PERIOD_INSERT = DriverStatement(
    insert(_PERIOD), ("session_id", "start_date_time", "dimensions", "tariff_id")
)


async def store_periods(uow: UnitOfWork, billed: Sequence[tuple[Session, Bill]]) -> None:
    """Replace each session's stored charging periods with its bill's: one DELETE for all,
    one executemany of the new rows (through the ORM, one INSERT a period on SQLite).
    """
    if not billed:
        return
    ids = [session.id for session, _ in billed]
    await uow.session.execute(delete(ChargingPeriod).where(ChargingPeriod.session_id.in_(ids)))
    await _PERIOD_INSERT.execute_many(
        await uow.session.connection(),
        [
            (session.id, period.start, document["dimensions"], document.get("tariff_id"))
            for session, bill in billed
            for period, document in zip(bill.periods, periods_to_ocpi(bill), strict=True)
        ],
    )


async def refresh_running_cost(uow: UnitOfWork, session: Session) -> Bill | None:
    """Re-price ``session`` and store its periods and cost; ``None`` if pricing failed.

    A pricing failure must never fail the station's message: it is logged and flagged on
    the session, and the CDR sweep tries again later.
    """
    return (await refresh_running_costs(uow, [session]))[session.id]


async def refresh_running_costs(
    uow: UnitOfWork, sessions: Sequence[Session]
) -> dict[str, Bill | None]:
    """``refresh_running_cost`` for many sessions, by id: their timelines read with one
    SELECT, their periods replaced with one DELETE and one INSERT.
    """
    if not sessions:
        return {}
    usages = await _usages(uow, sessions)
    bills: dict[str, Bill | None] = {}
    for session in sessions:
        try:
            bills[session.id] = _priced(session, usages[session.id])
        except Exception:
            log.exception("session %s: pricing failed", session.id)
            if "pricing_failed" not in session.flags:
                session.flags = [*session.flags, "pricing_failed"]
            bills[session.id] = None
    await apply_bills(
        uow, [(session, bill) for session in sessions if (bill := bills[session.id]) is not None]
    )
    return bills


async def apply_bills(uow: UnitOfWork, billed: Sequence[tuple[Session, Bill]]) -> None:
    """Store bills on their sessions: charging periods, and total cost when a tariff applies."""
    await store_periods(uow, billed)
    for session, bill in billed:
        if session.tariff_id is not None:
            total = bill.total_cost
            session.total_cost_excl_vat = total.excl_vat
            session.total_cost_incl_vat = total.incl_vat
