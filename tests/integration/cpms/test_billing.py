"""The billing core on a real database: sessions priced as they run, one CDR each, credits.

Covers ``cpms.session_pricing`` (what a session seals at start, its running cost),
``cpms.cdrs`` (one CDR per finished session whatever is replayed or raced, credit CDRs,
signed meter data, CDRs a pricing failure left unissued) and ``cpms.session_closing``
(sessions no station will stop, closed at their last trusted reading, and corrected when
the station's own stop turns up after all). Every amount below is worked out by hand from
the tariff and the readings sent, and checked against ``cpms.pricing.price`` of the same
usage built here from those readings.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from charging_support import start_decided, stop_decided
from sqlalchemy import func, null, select, update
from sqlalchemy.exc import IntegrityError

from cpms import stations
from cpms.admission import AdmissionPolicy, Verdict
from cpms.authorization import Authorizer, Operator
from cpms.cdrs import credit_cdr, issue_cdr, issue_missing_cdrs
from cpms.charging import (
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartOutcome,
    StartRequest,
    StopOutcome,
    StopRequest,
    record_meter_values,
)
from cpms.database import create_engine
from cpms.documents import format_datetime
from cpms.documents.schema import find_problems
from cpms.errors import Conflict
from cpms.locations import DefaultLocation, assign_tariffs, change_location
from cpms.model import Cdr, ChargingPeriod, Session, StationEvent
from cpms.pricing import MeterPoint, Price, TariffPlan, Usage, price
from cpms.session_closing import close_stuck_sessions
from cpms.station_lifecycle import StatusReport, record_status
from cpms.tariffs import import_tariffs, replace_tariff
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT

T = TypeVar("T")

OPERATOR = Operator("NL", "CPM")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # 13:00 in Amsterdam: no local midnight nearby
TAG = "TAG-0001"
VOLTAGE = Decimal(230)  # the connector a station's unknown EVSE is assumed to have

TARIFF: dict[str, Any] = {
    "country_code": "NL",
    "party_id": "CPM",
    "id": "T-EUR",
    "currency": "EUR",
    "elements": [
        {
            "price_components": [
                {"type": "FLAT", "price": 1.00, "vat": 21.0, "step_size": 1},
                {"type": "ENERGY", "price": 0.30, "vat": 21.0, "step_size": 1},
                # Charging time is billed in blocks of 10 minutes, rounded up once.
                {"type": "TIME", "price": 1.20, "vat": 21.0, "step_size": 600},
            ]
        }
    ],
    "last_updated": "2025-01-01T00:00:00Z",
}
"""EUR 1.00 a session, 0.30 per kWh and 1.20 per hour charging, all with 21 % VAT."""


def _tariff(tariff_id: str, currency: str, kwh_price: float, **extra: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPM",
        "id": tariff_id,
        "currency": currency,
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": kwh_price, "step_size": 1}]}
        ],
        "last_updated": "2025-01-01T00:00:00Z",
        **extra,
    }


# Set-up


async def _in_uow(uow: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    async with uow() as unit:
        result = await work(unit)
        await unit.commit()
    return result


async def _station(
    uow: UnitOfWorkFactory, *, evses: tuple[int, ...] = (1,), default: DefaultLocation = DEFAULT
) -> None:
    admission = await stations.admit_station(
        uow(), "CP1", None, policy=AdmissionPolicy.OPEN, default_location=default
    )
    assert admission.verdict is Verdict.ACCEPTED
    for number in evses:  # an EVSE exists once its station reports it
        report = StatusReport(evse_number=number, status="AVAILABLE", received_at=T0)
        await _in_uow(uow, lambda u, r=report: record_status(u, "CP1", r))


async def _priced_station(
    uow: UnitOfWorkFactory,
    *,
    tariffs: tuple[dict[str, Any], ...] = (TARIFF,),
    evses: tuple[int, ...] = (1,),
    bare: tuple[int, ...] = (),
    default: DefaultLocation = DEFAULT,
) -> None:
    """Station CP1 with a token ``TAG``; ``evses`` list ``tariffs``, ``bare`` EVSEs none."""
    await _station(uow, evses=evses + bare, default=default)
    await create_token(uow(), {"uid": TAG}, country_code="NL", party_id="CPM")
    if tariffs:
        await import_tariffs(uow(), list(tariffs))
    for number in evses:
        await assign_tariffs(uow(), default.id, f"CP1-{number}", "1", [t["id"] for t in tariffs])


async def _start(
    uow: UnitOfWorkFactory,
    *,
    evse: int = 1,
    uid: str = TAG,
    meter: str = "1000",
    at: datetime = T0,
) -> StartOutcome:
    request = StartRequest(
        evse_number=evse, uid=uid, meter_start_wh=Decimal(meter), received_at=at, station_time=at
    )
    authorizer = Authorizer(OPERATOR)
    return await _in_uow(uow, lambda u: start_decided(u, "CP1", request, authorizer))


def _energy(value: str, **extra: Any) -> Sample:
    return Sample(ENERGY_REGISTER, Decimal(value), Decimal(value), unit="Wh", **extra)


async def _meter(
    uow: UnitOfWorkFactory,
    transaction_id: str,
    at: datetime,
    *samples: Sample,
    evse: int = 1,
    received_at: datetime | None = None,
) -> None:
    report = MeterReport(
        evse_number=evse,
        received_at=received_at or at,
        meter_values=(MeterValue(at, samples),),
        transaction_id=transaction_id,
    )
    await _in_uow(uow, lambda u: record_meter_values(u, "CP1", report))


async def _stop(
    uow: UnitOfWorkFactory,
    transaction_id: str,
    at: datetime,
    meter: str | None,
    *,
    received_at: datetime | None = None,
    meter_values: tuple[MeterValue, ...] = (),
) -> StopOutcome:
    request = StopRequest(
        transaction_id,
        received_at or at,
        meter_stop_wh=Decimal(meter) if meter is not None else None,
        station_time=at,
        meter_values=meter_values,
    )
    authorizer = Authorizer(OPERATOR)
    return await _in_uow(uow, lambda u: stop_decided(u, "CP1", request, authorizer))


async def _session(uow: UnitOfWorkFactory, session_id: str) -> Session:
    async with uow() as unit:
        return await unit.get(Session, session_id)


async def _cdrs(uow: UnitOfWorkFactory, session_id: str | None = None) -> list[Cdr]:
    """CDRs (of one session), in issue order."""
    async with uow() as unit:
        query = select(Cdr).order_by(Cdr.issued_at, Cdr.credit, Cdr.issue_key)
        if session_id is not None:
            query = query.where(Cdr.session_id == session_id)
        return list(await unit.session.scalars(query))


async def _cdr_count(uow: UnitOfWorkFactory) -> int:
    async with uow() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(Cdr)) or 0)


def _minutes(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _usage(*points: tuple[float, str], end: float) -> Usage:
    """The usage the readings sent describe: (minute, billed Wh since start) points."""
    return Usage(
        start=T0,
        end=_minutes(end),
        points=[MeterPoint(_minutes(m), Decimal(wh)) for m, wh in points],
        time_zone=DEFAULT.time_zone,
        voltage_v=VOLTAGE,
    )


def _ocpi_price(excl: str, incl: str) -> dict[str, float]:
    return {"excl_vat": float(excl), "incl_vat": float(incl)}


def _problems(document: dict[str, Any]) -> list[str]:
    return [str(problem) for problem in find_problems("cdr", document)]


async def _set(uow: UnitOfWorkFactory, session_id: str, **values: Any) -> None:
    """Change stored session columns directly (to stage what a failure or an old version left)."""
    async with uow() as unit:
        await unit.session.execute(update(Session).where(Session.id == session_id).values(**values))
        await unit.commit()


async def _count_events(uow: UnitOfWorkFactory, kind: str) -> int:
    async with uow() as unit:
        query = select(func.count()).select_from(StationEvent).where(StationEvent.kind == kind)
        return int(await unit.session.scalar(query) or 0)


async def _the_usual_session(uow: UnitOfWorkFactory) -> StartOutcome:
    """Start at 1000 Wh, read 4000 Wh at +15 min and 6500 Wh at +30 min, stop at 9000 Wh at +45.

    8 kWh in 45 minutes, always drawing power: EUR 1.00 + 8 x 0.30 + 0.75 h x 1.20 = 4.30,
    plus the TIME step (2700 s rounded up to 3000 s: 300 s x 1.20/h = 0.10) = 4.40 excl.,
    x 1.21 = 5.324, so 5.32 incl. VAT.
    """
    outcome = await _start(uow)
    await _meter(uow, outcome.transaction_id, _minutes(15), _energy("4000"))
    await _meter(uow, outcome.transaction_id, _minutes(30), _energy("6500"))
    await _stop(uow, outcome.transaction_id, _minutes(45), "9000")
    return outcome


USUAL_USAGE = ((0, "0"), (15, "3000"), (30, "5500"), (45, "8000"))


# One CDR per finished session, priced like the engine


async def test_a_finished_session_gets_one_valid_cdr_priced_like_the_engine(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    outcome = await _the_usual_session(uow)

    cdrs = await _cdrs(uow)
    assert len(cdrs) == 1
    cdr = cdrs[0]
    document = cdr.document
    assert _problems(document) == []
    session = await _session(uow, outcome.session_id)
    assert session.cdr_id == cdr.id
    assert cdr.session_id == document["session_id"] == outcome.session_id
    assert cdr.issue_key == f"{outcome.session_id}/0"
    assert document["id"] == cdr.id
    assert cdr.credit is False

    engine = price(TariffPlan.from_ocpi(TARIFF), _usage(*USUAL_USAGE, end=45))
    assert engine.total_cost == Price(Decimal("4.40"), Decimal("5.32"))
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (
        engine.total_cost.excl_vat,
        engine.total_cost.incl_vat,
    )
    assert document["total_cost"] == _ocpi_price("4.40", "5.32")
    assert document["total_fixed_cost"] == _ocpi_price("1.00", "1.21")
    assert document["total_energy_cost"] == _ocpi_price("2.40", "2.90")  # 2.904
    assert document["total_time_cost"] == _ocpi_price("1.00", "1.21")  # 0.90 + 0.10 step
    assert document["total_energy"] == 8.0
    assert document["total_time"] == 0.75
    assert "total_parking_time" not in document
    assert document["currency"] == "EUR"
    assert document["start_date_time"] == "2025-03-01T12:00:00Z"
    assert document["end_date_time"] == "2025-03-01T12:45:00Z"
    assert [t["id"] for t in document["tariffs"]] == ["T-EUR"]
    assert document["tariffs"][0]["elements"] == TARIFF["elements"]
    assert document["cdr_token"]["uid"] == TAG
    assert document["cdr_location"]["evse_uid"] == "CP1-1"
    assert (session.total_cost_excl_vat, session.total_cost_incl_vat) == (
        Decimal("4.40"),
        Decimal("5.32"),
    )

    # One period (always charging under one element), as stored and as on the CDR.
    expected_periods = [
        {
            "start_date_time": "2025-03-01T12:00:00Z",
            "dimensions": [{"type": "ENERGY", "volume": 8.0}, {"type": "TIME", "volume": 0.75}],
            "tariff_id": "T-EUR",
        }
    ]
    assert document["charging_periods"] == expected_periods
    async with uow() as unit:
        rows = list(
            await unit.session.scalars(
                select(ChargingPeriod)
                .where(ChargingPeriod.session_id == outcome.session_id)
                .order_by(ChargingPeriod.start_date_time)
            )
        )
    stored = [
        {
            "start_date_time": format_datetime(row.start_date_time),
            "dimensions": row.dimensions,
            "tariff_id": row.tariff_id,
        }
        for row in rows
    ]
    assert stored == expected_periods
    # The explanation ends with the total it explains.
    assert cdr.explanation[-1].endswith("4.40 / 5.32 EUR")


async def test_the_running_cost_is_the_price_up_to_each_reading(uow: UnitOfWorkFactory) -> None:
    await _priced_station(uow)
    outcome = await _start(uow)
    plan = TariffPlan.from_ocpi(TARIFF)
    readings = [
        # minute, register, billed Wh, hand-computed (excl., incl. VAT)
        # 15 min: 1.00 + 3 x 0.30 + 0.25 h x 1.20 + step (900 s -> 1200 s: 0.10) = 2.30;
        #   x 1.21 = 2.783
        (15, "4000", "3000", ("2.30", "2.78")),
        # 30 min: 1.00 + 5.5 x 0.30 + 0.5 h x 1.20 (1800 s, a whole block) = 3.25;
        #   x 1.21 = 3.9325
        (30, "6500", "5500", ("3.25", "3.93")),
    ]
    points: list[tuple[float, str]] = [(0, "0")]
    for minute, register, billed, (excl, incl) in readings:
        await _meter(uow, outcome.transaction_id, _minutes(minute), _energy(register))
        points.append((minute, billed))
        engine = price(plan, _usage(*points, end=minute)).total_cost
        assert engine == Price(Decimal(excl), Decimal(incl))
        session = await _session(uow, outcome.session_id)
        assert (session.total_cost_excl_vat, session.total_cost_incl_vat) == (
            engine.excl_vat,
            engine.incl_vat,
        )
        assert session.currency == "EUR"

    # The stop at the last reading's moment and register adds nothing: the same figure.
    await _stop(uow, outcome.transaction_id, _minutes(30), "6500")
    session = await _session(uow, outcome.session_id)
    assert (session.total_cost_excl_vat, session.total_cost_incl_vat) == (
        Decimal("3.25"),
        Decimal("3.93"),
    )
    (cdr,) = await _cdrs(uow)
    assert cdr.document["total_cost"] == _ocpi_price("3.25", "3.93")
    assert cdr.document["total_energy"] == 5.5
    assert _problems(cdr.document) == []


async def test_the_running_cost_is_refreshed_once_a_minute_and_the_bill_counts_every_reading(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    outcome = await _start(uow)
    plan = TariffPlan.from_ocpi(TARIFF)
    # Minute 15 opens a new minute: priced. 15.25 and 15.5 stay in it: stored and billed, but
    # the running cost is still the one of minute 15. Minute 16 opens the next: priced again.
    steps = [(15, "4000", 15), (15.25, "4100", 15), (15.5, "4200", 15), (16, "4300", 16)]
    points: list[tuple[float, str]] = [(0, "0")]
    for minute, register, priced_at in steps:
        await _meter(uow, outcome.transaction_id, _minutes(minute), _energy(register))
        points.append((minute, str(int(register) - 1000)))
        priced_points = [p for p in points if p[0] <= priced_at]
        expected = price(plan, _usage(*priced_points, end=priced_at)).total_cost
        session = await _session(uow, outcome.session_id)
        assert (session.total_cost_excl_vat, session.total_cost_incl_vat) == (
            expected.excl_vat,
            expected.incl_vat,
        ), minute
    # Had every reading been priced, minute 15.5 would have shown a different cost.
    assert (
        price(plan, _usage(*points[:4], end=15.5)).total_cost
        != price(plan, _usage(*points[:2], end=15)).total_cost
    )

    await _stop(uow, outcome.transaction_id, _minutes(16.5), "4400")
    (cdr,) = await _cdrs(uow)
    final = price(plan, _usage(*points, (16.5, "3400"), end=16.5)).total_cost
    assert cdr.document["total_cost"] == _ocpi_price(str(final.excl_vat), str(final.incl_vat))
    assert cdr.document["total_energy"] == 3.4


# Exactly one CDR whatever is replayed or raced


async def test_a_duplicate_stop_issues_no_second_cdr(uow: UnitOfWorkFactory) -> None:
    await _priced_station(uow)
    outcome = await _the_usual_session(uow)
    (first,) = await _cdrs(uow)
    replay = await _stop(uow, outcome.transaction_id, _minutes(50), "9500")
    assert replay.replayed is True
    assert [cdr.id for cdr in await _cdrs(uow)] == [first.id]
    assert await _cdr_count(uow) == 1
    assert (await _session(uow, outcome.session_id)).cdr_id == first.id


async def test_a_stop_replayed_after_a_restart_issues_no_second_cdr(
    uow: UnitOfWorkFactory, database_url: str
) -> None:
    await _priced_station(uow)
    outcome = await _the_usual_session(uow)
    (first,) = await _cdrs(uow)
    # A new node (new engine, new unit-of-work factory) on the same database hears it again.
    engine = create_engine(database_url)
    try:
        restarted = UnitOfWorkFactory(engine)
        replay = await _stop(restarted, outcome.transaction_id, _minutes(45), "9000")
        assert replay.replayed is True
        assert await _cdr_count(restarted) == 1
    finally:
        await engine.dispose()
    assert [cdr.id for cdr in await _cdrs(uow)] == [first.id]


async def _completed_without_cdr(uow: UnitOfWorkFactory, *, at: datetime = T0) -> StartOutcome:
    """The usual session (from ``at``), stopped while its pricing fails: no CDR; then repaired.

    The failure is a sealed time zone the zone database does not know. The stop must still
    end the session (COMPLETED, flagged ``pricing_failed``) and leave the CDR to the sweep.
    """
    minutes = (at - T0) / timedelta(minutes=1)
    outcome = await _start(uow, at=at)
    await _meter(uow, outcome.transaction_id, _minutes(minutes + 15), _energy("4000"))
    await _meter(uow, outcome.transaction_id, _minutes(minutes + 30), _energy("6500"))
    await _set(uow, outcome.session_id, time_zone="Nowhere/Atlantis")
    stopped = await _stop(uow, outcome.transaction_id, _minutes(minutes + 45), "9000")
    assert stopped.known is True
    session = await _session(uow, outcome.session_id)
    assert session.status == "COMPLETED"
    assert "pricing_failed" in session.flags
    assert session.cdr_id is None
    assert await _cdrs(uow, outcome.session_id) == []
    await _set(uow, outcome.session_id, time_zone=DEFAULT.time_zone)
    return outcome


async def _issue_in_own_uow(
    uow: UnitOfWorkFactory, session_id: str, both_loaded: asyncio.Barrier | None = None
) -> str | None:
    """Issue the session's CDR in a unit of work: its id, or None if the unique key refused it."""
    async with uow() as unit:
        session = await unit.get(Session, session_id)
        if both_loaded is not None:
            await both_loaded.wait()  # both saw the session without a CDR before either issues
        try:
            cdr = await issue_cdr(unit, session, now=_minutes(60))
            await unit.commit()
        except IntegrityError:
            return None
        return cdr.id if cdr is not None else None


async def test_a_second_issuer_after_the_first_finds_the_standing_cdr(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    outcome = await _completed_without_cdr(uow)
    first = await _issue_in_own_uow(uow, outcome.session_id)
    second = await _issue_in_own_uow(uow, outcome.session_id)
    assert first is not None
    assert second == first
    assert await _cdr_count(uow) == 1
    (cdr,) = await _cdrs(uow)
    assert cdr.document["total_cost"] == _ocpi_price("4.40", "5.32")


async def test_two_racing_issuers_give_one_cdr(uow: UnitOfWorkFactory) -> None:
    await _priced_station(uow)
    outcome = await _completed_without_cdr(uow)
    barrier = asyncio.Barrier(2)
    results = await asyncio.gather(
        _issue_in_own_uow(uow, outcome.session_id, barrier),
        _issue_in_own_uow(uow, outcome.session_id, barrier),
    )
    cdrs = await _cdrs(uow)
    assert await _cdr_count(uow) == 1
    assert len({r for r in results if r is not None}) == 1, "the loser fails or finds the winner"
    assert (await _session(uow, outcome.session_id)).cdr_id == cdrs[0].id


async def test_an_invalid_session_gets_no_cdr(uow: UnitOfWorkFactory) -> None:
    await _priced_station(uow)
    outcome = await _start(uow, uid="NOBODY")
    await _meter(uow, outcome.transaction_id, _minutes(15), _energy("4000"))
    await _stop(uow, outcome.transaction_id, _minutes(30), "6500")
    session = await _session(uow, outcome.session_id)
    assert session.status == "INVALID"
    assert session.end_date_time == _minutes(30)
    assert session.cdr_id is None
    async with uow() as unit:
        loaded = await unit.get(Session, outcome.session_id)
        assert await issue_cdr(unit, loaded, now=_minutes(60)) is None
        assert await issue_missing_cdrs(unit, now=_minutes(60)) == []
        await unit.commit()
    assert await _cdr_count(uow) == 0


# Sealed at start: later edits change nothing


DOUBLED = {
    **TARIFF,
    "elements": [
        {
            "price_components": [
                {"type": "FLAT", "price": 2.00, "vat": 21.0, "step_size": 1},
                {"type": "ENERGY", "price": 0.60, "vat": 21.0, "step_size": 1},
                {"type": "TIME", "price": 2.40, "vat": 21.0, "step_size": 600},
            ]
        }
    ],
}


async def test_a_tariff_replaced_and_a_location_renamed_mid_session_change_nothing(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    outcome = await _start(uow)
    await _meter(uow, outcome.transaction_id, _minutes(15), _energy("4000"))
    await replace_tariff(uow(), "T-EUR", DOUBLED)
    await change_location(uow(), DEFAULT.id, {"name": "Renamed depot", "address": "New road 9"})
    await _meter(uow, outcome.transaction_id, _minutes(30), _energy("6500"))
    session = await _session(uow, outcome.session_id)
    # Still the start's tariff: 3.25 / 3.93 at 30 minutes (6.50 / 7.87 at the new prices).
    assert (session.total_cost_excl_vat, session.total_cost_incl_vat) == (
        Decimal("3.25"),
        Decimal("3.93"),
    )
    await _stop(uow, outcome.transaction_id, _minutes(45), "9000")

    (cdr,) = await _cdrs(uow)
    document = cdr.document
    assert _problems(document) == []
    assert document["total_cost"] == _ocpi_price("4.40", "5.32")
    assert document["tariffs"][0]["elements"] == TARIFF["elements"]
    assert document["cdr_location"]["name"] == "Depot"
    assert document["cdr_location"]["address"] == "Street 1"
    # The edits did happen: a session started now is sealed with them.
    later = await _start(uow, at=_minutes(60), meter="9000")
    sealed = await _session(uow, later.session_id)
    assert sealed.tariffs is not None
    assert sealed.tariffs[0]["elements"] == DOUBLED["elements"]
    assert sealed.cdr_location is not None
    assert sealed.cdr_location["name"] == "Renamed depot"
    assert sealed.cdr_location["address"] == "New road 9"


async def test_a_long_address_is_cut_to_45_characters_at_a_word_boundary(
    uow: UnitOfWorkFactory,
) -> None:
    address = "Burgemeester van Walsumweg 101, Industrieterrein Zuidoost B7"
    assert len(address) == 60
    default = dataclasses.replace(DEFAULT, address=address)
    await _priced_station(uow, default=default)
    outcome = await _the_usual_session(uow)
    session = await _session(uow, outcome.session_id)
    assert session.cdr_location is not None
    # The 45th character falls inside "Industrieterrein": cut before it, trailing comma off.
    assert session.cdr_location["address"] == "Burgemeester van Walsumweg 101"
    (cdr,) = await _cdrs(uow)
    assert cdr.document["cdr_location"]["address"] == "Burgemeester van Walsumweg 101"
    assert len(cdr.document["cdr_location"]["address"]) <= 45
    assert _problems(cdr.document) == []


async def test_a_word_ending_exactly_at_45_characters_is_kept(uow: UnitOfWorkFactory) -> None:
    address = "Burgemeester van Walsumweg 101, Bedrijvenpark Zuidoost Hal B"
    assert len(address) == 60
    assert address[45] == " "
    default = dataclasses.replace(DEFAULT, address=address)
    await _priced_station(uow, default=default)
    outcome = await _start(uow)
    session = await _session(uow, outcome.session_id)
    assert session.cdr_location is not None
    assert session.cdr_location["address"] == "Burgemeester van Walsumweg 101, Bedrijvenpark"


# Signed meter values on the CDR

OCMF_BEGIN = 'OCMF|{"RD":[{"TM":"2025-03-01T13:00:00,000+0100 S","RV":1.0}]}|{"SD":"30AB"}'
OCMF_END = 'OCMF|{"RD":[{"TM":"2025-03-01T13:45:00,000+0100 S","RV":9.0}]}|{"SD":"30CD"}'


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _signed(raw: dict[str, Any], context: str) -> Sample:
    # As the gateway reads a signed sampled value: no number, the blob kept verbatim.
    return Sample(
        ENERGY_REGISTER, Decimal(0), Decimal(0), unit="Wh", context=context, signed_data=raw
    )


async def _signed_session(
    uow: UnitOfWorkFactory, begin: dict[str, Any], end: dict[str, Any]
) -> Cdr:
    await _priced_station(uow)
    outcome = await _start(uow)
    await _meter(uow, outcome.transaction_id, T0, _signed(begin, "Transaction.Begin"))
    await _meter(uow, outcome.transaction_id, _minutes(15), _energy("4000"))
    await _meter(uow, outcome.transaction_id, _minutes(30), _energy("6500"))
    closing = MeterValue(_minutes(45), (_signed(end, "Transaction.End"),))
    await _stop(uow, outcome.transaction_id, _minutes(45), "9000", meter_values=(closing,))
    (cdr,) = await _cdrs(uow)
    assert _problems(cdr.document) == []
    # Signed values are evidence, never billed: the price is the usual session's.
    assert cdr.document["total_cost"] == _ocpi_price("4.40", "5.32")
    return cdr


async def test_ocpp_16_signed_values_become_the_cdrs_signed_data(uow: UnitOfWorkFactory) -> None:
    cdr = await _signed_session(
        uow,
        {"format": "SignedData", "value": OCMF_BEGIN},
        {"format": "SignedData", "value": OCMF_END},
    )
    assert cdr.document["signed_data"] == {
        "encoding_method": "OCMF",
        "signed_values": [
            {"nature": "Start", "plain_data": OCMF_BEGIN, "signed_data": _b64(OCMF_BEGIN)},
            {"nature": "End", "plain_data": OCMF_END, "signed_data": _b64(OCMF_END)},
        ],
    }


async def test_ocpp_201_signed_values_carry_their_public_key(uow: UnitOfWorkFactory) -> None:
    key = "3059301306072A8648CE3D020106082A8648CE3D03010703420004ABCDEF"
    cdr = await _signed_session(
        uow,
        {"signedMeterData": _b64(OCMF_BEGIN), "encodingMethod": "OCMF", "publicKey": key},
        {"signedMeterData": _b64(OCMF_END), "encodingMethod": "OCMF", "publicKey": key},
    )
    assert cdr.document["signed_data"] == {
        "encoding_method": "OCMF",
        "public_key": key,
        "signed_values": [
            {"nature": "Start", "plain_data": OCMF_BEGIN, "signed_data": _b64(OCMF_BEGIN)},
            {"nature": "End", "plain_data": OCMF_END, "signed_data": _b64(OCMF_END)},
        ],
    }


async def test_a_session_without_signed_values_has_no_signed_data(uow: UnitOfWorkFactory) -> None:
    await _priced_station(uow)
    await _the_usual_session(uow)
    (cdr,) = await _cdrs(uow)
    assert "signed_data" not in cdr.document


# Credit CDRs


async def _credit(
    uow: UnitOfWorkFactory, cdr_id: str, *, at: datetime, reissue: bool = True
) -> tuple[Cdr, Cdr | None]:
    return await _in_uow(
        uow,
        lambda u: credit_cdr(u, cdr_id, reason="tariff applied wrongly", now=at, reissue=reissue),
    )


async def test_a_credit_negates_every_amount_and_a_reissue_replaces_the_cdr(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    outcome = await _the_usual_session(uow)
    (original,) = await _cdrs(uow)

    credit, replacement = await _credit(uow, original.id, at=_minutes(60))
    assert credit.id == f"{original.id}-C"
    assert credit.credit is True
    assert credit.credit_reference_id == original.id
    assert credit.session_id == outcome.session_id
    assert (credit.total_cost_excl_vat, credit.total_cost_incl_vat) == (
        Decimal("-4.40"),
        Decimal("-5.32"),
    )
    document = credit.document
    assert _problems(document) == []
    assert document["id"] == credit.id
    assert document["credit"] is True
    assert document["credit_reference_id"] == original.id
    assert document["remark"] == "tariff applied wrongly"
    assert document["total_cost"] == _ocpi_price("-4.40", "-5.32")
    assert document["total_fixed_cost"] == _ocpi_price("-1.00", "-1.21")
    assert document["total_energy_cost"] == _ocpi_price("-2.40", "-2.90")
    assert document["total_time_cost"] == _ocpi_price("-1.00", "-1.21")
    # Volumes are what was delivered, not amounts: they stay as they were.
    assert document["total_energy"] == 8.0
    assert document["charging_periods"] == original.document["charging_periods"]

    assert replacement is not None
    assert replacement.id not in (original.id, credit.id)
    assert replacement.session_id == outcome.session_id
    assert replacement.issue_key == f"{outcome.session_id}/1"
    assert replacement.document["total_cost"] == _ocpi_price("4.40", "5.32")
    assert _problems(replacement.document) == []
    assert (await _session(uow, outcome.session_id)).cdr_id == replacement.id

    with pytest.raises(Conflict):
        await _credit(uow, original.id, at=_minutes(70))
    with pytest.raises(Conflict):
        await _credit(uow, credit.id, at=_minutes(70))

    # A second correction: the replacement is credited and replaced in turn.
    second_credit, third = await _credit(uow, replacement.id, at=_minutes(80))
    assert second_credit.id == f"{replacement.id}-C"
    assert second_credit.credit_reference_id == replacement.id
    assert third is not None
    assert third.issue_key == f"{outcome.session_id}/2"
    assert (await _session(uow, outcome.session_id)).cdr_id == third.id
    keys = sorted(cdr.issue_key for cdr in await _cdrs(uow, outcome.session_id))
    assert keys == sorted(
        [
            f"{outcome.session_id}/0",
            f"{outcome.session_id}/1",
            f"{outcome.session_id}/2",
            f"credit/{original.id}",
            f"credit/{replacement.id}",
        ]
    )
    assert await _cdr_count(uow) == 5


async def test_a_credit_without_reissue_leaves_the_session_without_a_standing_cdr(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    outcome = await _the_usual_session(uow)
    (original,) = await _cdrs(uow)
    credit, replacement = await _credit(uow, original.id, at=_minutes(60), reissue=False)
    assert replacement is None
    assert credit.credit_reference_id == original.id
    assert (await _session(uow, outcome.session_id)).cdr_id is None
    # Nor does the sweep bill it again behind the operator's back.
    assert await _in_uow(uow, lambda u: issue_missing_cdrs(u, now=_minutes(70))) == []
    assert await _cdr_count(uow) == 2


# Sessions no station will stop


async def test_stuck_sessions_close_at_their_last_reading_and_a_late_stop_corrects_the_cdr(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow, evses=(1,), bare=(2, 3))
    # EVSE 1: the usual readings up to +30 min, then silence.
    stuck = await _start(uow)
    await _meter(uow, stuck.transaction_id, _minutes(15), _energy("4000"))
    await _meter(uow, stuck.transaction_id, _minutes(30), _energy("6500"))
    # EVSE 2: heard from 20 minutes before the sweep.
    talking = await _start(uow, evse=2, at=_minutes(5))
    await _meter(uow, talking.transaction_id, _minutes(100), _energy("2000"), evse=2)
    # EVSE 3: a session that never got past PENDING.
    pending = await _start(uow, evse=3)
    await _set(uow, pending.session_id, status="PENDING")

    now = _minutes(120)
    closed = await close_stuck_sessions(uow, now=now, after=timedelta(minutes=30))
    assert sorted(closed) == sorted([stuck.session_id, pending.session_id])

    session = await _session(uow, stuck.session_id)
    assert session.status == "COMPLETED"
    assert session.end_date_time == _minutes(30), "at the last trusted reading, not at now"
    assert "closed_by_rule" in session.flags
    assert session.stop_reason == "ClosedByRule"
    assert session.energy_wh == Decimal(5500)
    (rule_cdr,) = await _cdrs(uow, stuck.session_id)
    assert session.cdr_id == rule_cdr.id
    assert _problems(rule_cdr.document) == []
    assert "closed by the CPMS" in rule_cdr.document["remark"]
    assert rule_cdr.document["total_energy"] == 5.5
    assert rule_cdr.document["end_date_time"] == "2025-03-01T12:30:00Z"
    # 1.00 + 5.5 x 0.30 + 0.5 h x 1.20 = 3.25; x 1.21 = 3.9325.
    assert rule_cdr.document["total_cost"] == _ocpi_price("3.25", "3.93")

    async with uow() as unit:
        events = list(
            await unit.session.scalars(
                select(StationEvent)
                .where(StationEvent.kind == "session_closed")
                .order_by(StationEvent.id)
            )
        )
    by_session = {event.details["session_id"]: event for event in events if event.details}
    assert sorted(by_session) == sorted([stuck.session_id, pending.session_id])
    stuck_event = by_session[stuck.session_id]
    assert stuck_event.station_id == "CP1"
    assert stuck_event.received_at == now
    assert stuck_event.details is not None
    assert stuck_event.details["ended_at"] == _minutes(30).isoformat()
    assert Decimal(stuck_event.details["energy_wh"]) == Decimal(5500)

    unbilled = await _session(uow, pending.session_id)
    assert unbilled.status == "INVALID"
    assert "closed_by_rule" in unbilled.flags
    assert await _cdrs(uow, pending.session_id) == []
    still = await _session(uow, talking.session_id)
    assert (still.status, still.end_date_time) == ("ACTIVE", None)

    # The station's own stop turns up: 9000 Wh at +40 min, heard at +125 min.
    late = await _stop(uow, stuck.transaction_id, _minutes(40), "9000", received_at=_minutes(125))
    assert late.known is True
    assert late.replayed is False
    session = await _session(uow, stuck.session_id)
    assert "late_stop" in session.flags
    assert session.energy_wh == Decimal(8000)
    assert session.end_date_time == _minutes(40)
    cdrs = {cdr.id: cdr for cdr in await _cdrs(uow, stuck.session_id)}
    assert len(cdrs) == 3
    credit = cdrs[f"{rule_cdr.id}-C"]
    assert credit.credit is True
    assert credit.document["total_cost"] == _ocpi_price("-3.25", "-3.93")
    assert session.cdr_id is not None
    new = cdrs[session.cdr_id]
    assert new.id not in (rule_cdr.id, credit.id)
    assert new.issue_key == f"{stuck.session_id}/1"
    assert _problems(new.document) == []
    assert new.document["total_energy"] == 8.0
    assert new.document["end_date_time"] == "2025-03-01T12:40:00Z"
    # 1.00 + 8 x 0.30 + (2/3) h x 1.20 (2400 s: whole blocks) = 4.20; x 1.21 = 5.082.
    engine = price(
        TariffPlan.from_ocpi(TARIFF),
        _usage((0, "0"), (15, "3000"), (30, "5500"), (40, "8000"), end=40),
    )
    assert engine.total_cost == Price(Decimal("4.20"), Decimal("5.08"))
    assert new.document["total_cost"] == _ocpi_price("4.20", "5.08")
    assert await _count_events(uow, "late_stop") == 1

    # The station replays that stop: nothing changes.
    again = await _stop(uow, stuck.transaction_id, _minutes(40), "9000", received_at=_minutes(130))
    assert again.replayed is True
    assert len(await _cdrs(uow, stuck.session_id)) == 3
    replayed = await _session(uow, stuck.session_id)
    assert (replayed.energy_wh, replayed.cdr_id, replayed.end_date_time) == (
        Decimal(8000),
        new.id,
        _minutes(40),
    )
    assert await _count_events(uow, "late_stop") == 1


# The sweep: CDRs a pricing failure left unissued


async def test_missing_cdrs_are_issued_only_for_sealed_completed_sessions_without_one(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow)
    billed = await _start(uow)
    await _stop(uow, billed.transaction_id, _minutes(10), "2000")
    (standing,) = await _cdrs(uow)
    missing = await _completed_without_cdr(uow, at=_minutes(60))
    unsealed = await _completed_without_cdr(uow, at=_minutes(120))
    # As a session that ended before billing existed: nothing sealed (SQL NULL).
    await _set(uow, unsealed.session_id, tariffs=null())
    invalid = await _start(uow, uid="NOBODY", at=_minutes(180))
    await _stop(uow, invalid.transaction_id, _minutes(190), "2000")
    running = await _start(uow, at=_minutes(200))
    await _meter(uow, running.transaction_id, _minutes(210), _energy("2000"))

    issued = await _in_uow(uow, lambda u: issue_missing_cdrs(u, now=_minutes(240)))
    assert len(issued) == 1
    (cdr,) = await _cdrs(uow, missing.session_id)
    assert issued == [cdr.id]
    assert (await _session(uow, missing.session_id)).cdr_id == cdr.id
    assert _problems(cdr.document) == []
    # The usual session priced at last: 4.40 / 5.32.
    assert cdr.document["total_cost"] == _ocpi_price("4.40", "5.32")
    for session_id in (unsealed.session_id, invalid.session_id, running.session_id):
        assert await _cdrs(uow, session_id) == []
    assert [c.id for c in await _cdrs(uow, billed.session_id)] == [standing.id]
    # Run again: nothing left to issue.
    assert await _in_uow(uow, lambda u: issue_missing_cdrs(u, now=_minutes(250))) == []
    assert await _cdr_count(uow) == 2


# Tariff choice and currency


async def test_a_session_without_a_tariff_gets_a_free_cdr_that_says_why(
    uow: UnitOfWorkFactory,
) -> None:
    await _priced_station(uow, tariffs=(), evses=(), bare=(1,))
    outcome = await _start(uow)
    await _meter(uow, outcome.transaction_id, _minutes(15), _energy("4000"))
    await _stop(uow, outcome.transaction_id, _minutes(30), "6500")
    session = await _session(uow, outcome.session_id)
    assert session.tariff_id is None
    assert session.currency == "EUR"
    (cdr,) = await _cdrs(uow)
    document = cdr.document
    assert _problems(document) == []
    assert document["total_cost"] == _ocpi_price("0", "0")
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (Decimal(0), Decimal(0))
    assert document["tariffs"] == []
    assert document["total_energy"] == 5.5
    assert document["currency"] == "EUR"
    assert "no tariff applies" in cdr.explanation[0]


async def test_the_currency_is_the_chosen_tariffs_and_ad_hoc_prices_only_ad_hoc_users(
    uow: UnitOfWorkFactory,
) -> None:
    ad_hoc = _tariff("ADHOC-GBP", "GBP", 0.50, type="AD_HOC_PAYMENT")
    regular = _tariff("REG-CHF", "CHF", 0.25, type="REGULAR")
    # The ad hoc tariff is listed first: an RFID card must still not get it.
    await _priced_station(uow, tariffs=(ad_hoc, regular))
    await create_token(
        uow(), {"uid": "WEB-1", "type": "AD_HOC_USER"}, country_code="NL", party_id="CPM"
    )
    card = await _start(uow)
    await _stop(uow, card.transaction_id, _minutes(30), "3000")
    web = await _start(uow, uid="WEB-1", at=_minutes(60), meter="3000")
    await _stop(uow, web.transaction_id, _minutes(90), "5000")

    card_session = await _session(uow, card.session_id)
    web_session = await _session(uow, web.session_id)
    assert (card_session.tariff_id, card_session.currency) == ("REG-CHF", "CHF")
    assert (web_session.tariff_id, web_session.currency) == ("ADHOC-GBP", "GBP")
    (card_cdr,) = await _cdrs(uow, card.session_id)
    (web_cdr,) = await _cdrs(uow, web.session_id)
    # 2 kWh each, no VAT: 2 x 0.25 CHF and 2 x 0.50 GBP.
    assert card_cdr.document["currency"] == "CHF"
    assert card_cdr.document["total_cost"] == _ocpi_price("0.50", "0.50")
    assert [t["id"] for t in card_cdr.document["tariffs"]] == ["REG-CHF"]
    assert web_cdr.document["currency"] == "GBP"
    assert web_cdr.document["total_cost"] == _ocpi_price("1.00", "1.00")
    assert [t["id"] for t in web_cdr.document["tariffs"]] == ["ADHOC-GBP"]
    assert web_cdr.document["cdr_token"]["type"] == "AD_HOC_USER"
    for cdr in (card_cdr, web_cdr):
        assert _problems(cdr.document) == []
