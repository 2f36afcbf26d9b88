"""Reservations as sessions (OCPI RESERVATION status) and what they cost, on a real database.

A reservation's session is RESERVATION until its token charges (then the same session
becomes ACTIVE and its reserved time is billed before the charging) or until it ends unused
(COMPLETED, with a reservation-only CDR). The official reservation tariffs 16, 17 and 18 are
priced by hand below.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from charging_support import start_decided, stop_decided
from sqlalchemy import select

from cpms import stations
from cpms.admission import AdmissionPolicy
from cpms.authorization import Authorizer, Operator
from cpms.charging import (
    ENERGY_REGISTER,
    MeterReport,
    MeterValue,
    Sample,
    StartRequest,
    StopRequest,
    record_meter_values,
)
from cpms.documents.schema import find_problems
from cpms.locations import assign_tariffs
from cpms.model import Cdr, Reservation, Session
from cpms.reservations import end_reservation, open_reservation_session
from cpms.station_lifecycle import StatusReport, record_status
from cpms.tariffs import import_tariffs
from cpms.tokens import create_token
from cpms.unit_of_work import UnitOfWorkFactory

from support import DEFAULT_LOCATION as DEFAULT
from support import EXAMPLES

OPERATOR = Operator("NL", "CPM")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAG = "TAG-0001"


def _example(name: str) -> dict[str, Any]:
    document = json.loads((EXAMPLES / name).read_text())
    return document.get("data", document)


async def _reserved(uow: UnitOfWorkFactory, tariff_file: str, created_at: datetime) -> Session:
    """A station with EVSE 1 priced by ``tariff_file`` and an accepted reservation on it."""
    await stations.admit_station(
        uow(), "CP1", None, policy=AdmissionPolicy.OPEN, default_location=DEFAULT
    )
    token = await create_token(uow(), {"uid": TAG}, country_code="NL", party_id="CPM")
    async with uow() as unit:
        await record_status(unit, "CP1", StatusReport(1, "AVAILABLE", received_at=T0))
        await unit.commit()
    tariff = _example(tariff_file)
    await import_tariffs(uow(), [tariff])
    await assign_tariffs(uow(), DEFAULT.id, "CP1-1", "1", [tariff["id"]])
    async with uow() as unit:
        reservation = Reservation(
            location_id=DEFAULT.id,
            evse_uid="CP1-1",
            station_id="CP1",
            connector_id="1",
            token={
                "country_code": "NL",
                "party_id": "CPM",
                "uid": TAG,
                "type": "RFID",
                "contract_id": token.contract_id,
            },
            expiry_date=created_at + timedelta(minutes=25),
            status="REQUESTED",
            created_at=created_at,
        )
        unit.session.add(reservation)
        await unit.session.flush()
        session = await open_reservation_session(
            unit, reservation.id, now=created_at, country_code="NL", party_id="CPM"
        )
        await unit.commit()
    return session


async def _cdr(uow: UnitOfWorkFactory) -> Cdr:
    async with uow() as unit:
        cdrs = list(await unit.session.scalars(select(Cdr)))
    assert len(cdrs) == 1
    assert find_problems("cdr", cdrs[0].document) == []
    return cdrs[0]


async def test_a_reservation_opens_a_reservation_session_once(uow: UnitOfWorkFactory) -> None:
    session = await _reserved(uow, "tariff_16_reservation_2_euro_fee_5_euro_per_hour.json", T0)
    assert session.status == "RESERVATION"
    assert session.auth_method == "COMMAND"
    async with uow() as unit:
        again = await open_reservation_session(
            unit, session.reservation_id or 0, now=T0, country_code="NL", party_id="CPM"
        )
        assert again.id == session.id
        count = len(list(await unit.session.scalars(select(Session))))
    assert count == 1


async def test_charging_on_a_reservation_activates_its_session_and_bills_the_reserved_time(
    uow: UnitOfWorkFactory,
) -> None:
    # Tariff 16: reservation FLAT 2.00 + TIME 5.00/h (step 300 s), both 20 % VAT; charging
    # FLAT 0.50 (20 %) + ENERGY 0.25/kWh (10 %).
    # Reserved 12:00-12:20 = 1200 s, a multiple of 300: 1/3 h x 5 = 1.666667 + 2.00 fee
    #   = 3.666667 excl., x 1.2 = 4.40 incl.
    # Charging 12:20-13:20, 10 kWh: 0.50 + 2.50 = 3.00 excl.; 0.60 + 2.75 = 3.35 incl.
    # Total 6.666667 -> 6.67 excl., 7.75 incl.
    reserved = await _reserved(uow, "tariff_16_reservation_2_euro_fee_5_euro_per_hour.json", T0)
    start = T0 + timedelta(minutes=20)
    authorizer = Authorizer(OPERATOR)
    request = StartRequest(
        evse_number=1,
        uid=TAG,
        meter_start_wh=Decimal(5000),
        received_at=start,
        station_time=start,
        reservation_id=reserved.reservation_id,
    )
    async with uow() as unit:
        outcome = await start_decided(unit, "CP1", request, authorizer)
        await unit.commit()
    assert outcome.session_id == reserved.id
    async with uow() as unit:
        session = await unit.get(Session, reserved.id)
        assert session.status == "ACTIVE"
        assert session.start_date_time == start
    end = start + timedelta(hours=1)
    energy = Sample(ENERGY_REGISTER, Decimal(15000), Decimal(15000), unit="Wh")
    async with uow() as unit:
        report = MeterReport(1, end, (MeterValue(end, (energy,)),), outcome.transaction_id)
        await record_meter_values(unit, "CP1", report)
        await unit.commit()
    async with uow() as unit:
        stop = StopRequest(outcome.transaction_id, end, Decimal(15000), end)
        await stop_decided(unit, "CP1", stop, authorizer)
        await unit.commit()
    cdr = await _cdr(uow)
    document = cdr.document
    assert document["session_id"] == reserved.id
    assert document["start_date_time"] == "2025-03-01T12:00:00Z"  # the reservation's start
    assert document["total_cost"] == {"excl_vat": 6.67, "incl_vat": 7.75}
    assert document["total_reservation_cost"] == {"excl_vat": 3.67, "incl_vat": 4.4}
    assert document["total_fixed_cost"] == {"excl_vat": 0.5, "incl_vat": 0.6}
    assert document["total_energy_cost"] == {"excl_vat": 2.5, "incl_vat": 2.75}
    assert document["total_energy"] == 10.0
    assert document["total_time"] == 1.0  # charging time only: reservation time is not in it
    kinds = [[d["type"] for d in p["dimensions"]] for p in document["charging_periods"]]
    assert kinds == [["RESERVATION_TIME"], ["ENERGY", "TIME"]]


async def test_an_expired_reservation_costs_its_expiry_fee_and_reserved_time(
    uow: UnitOfWorkFactory,
) -> None:
    # Tariff 17: RESERVATION_EXPIRES FLAT 4.00; RESERVATION TIME 2.00/h step 600 s; 20 % VAT.
    # Reserved 12:00 until expiry 12:25 (ended at 12:30, but it expired at 12:25): 1500 s,
    # rounded up to 1800 s = 0.5 h x 2.00 = 1.00; + 4.00 = 5.00 excl., 6.00 incl.
    reserved = await _reserved(uow, "tariff_17_reservation_with_expire_fee.json", T0)
    async with uow() as unit:
        await end_reservation(
            unit, reserved.reservation_id or 0, now=T0 + timedelta(minutes=30), expired=True
        )
        await unit.commit()
    cdr = await _cdr(uow)
    assert cdr.document["end_date_time"] == "2025-03-01T12:25:00Z"
    assert cdr.document["total_cost"] == {"excl_vat": 5.0, "incl_vat": 6.0}
    assert cdr.document["total_reservation_cost"] == {"excl_vat": 5.0, "incl_vat": 6.0}
    assert cdr.document["total_energy"] == 0.0
    async with uow() as unit:
        session = await unit.get(Session, reserved.id)
        reservation = await unit.get(Reservation, reserved.reservation_id)
    assert (session.status, reservation.status) == ("COMPLETED", "EXPIRED")


async def test_reservation_expires_time_wins_over_reservation_time(
    uow: UnitOfWorkFactory,
) -> None:
    # Tariff 18: RESERVATION_EXPIRES TIME 6.00/h beats RESERVATION TIME 3.00/h when it
    # expires; both step 600 s, 20 % VAT: 1500 s -> 1800 s = 0.5 h x 6.00 = 3.00 / 3.60.
    reserved = await _reserved(uow, "tariff_18_reservation_with_expire_time.json", T0)
    async with uow() as unit:
        await end_reservation(
            unit, reserved.reservation_id or 0, now=T0 + timedelta(minutes=25), expired=True
        )
        await unit.commit()
    cdr = await _cdr(uow)
    assert cdr.document["total_cost"] == {"excl_vat": 3.0, "incl_vat": 3.6}


async def test_a_cancelled_reservation_is_priced_as_reserved_time_only(
    uow: UnitOfWorkFactory,
) -> None:
    # Tariff 18 cancelled after 10 min: RESERVATION TIME 3.00/h (expiry price not due),
    # 600 s is one step: 1/6 h x 3.00 = 0.50 excl., 0.60 incl.
    reserved = await _reserved(uow, "tariff_18_reservation_with_expire_time.json", T0)
    async with uow() as unit:
        await end_reservation(
            unit, reserved.reservation_id or 0, now=T0 + timedelta(minutes=10), expired=False
        )
        await unit.commit()
    cdr = await _cdr(uow)
    assert cdr.document["total_cost"] == {"excl_vat": 0.5, "incl_vat": 0.6}
