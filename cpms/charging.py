"""Charging sessions as stations report them: start, meter values, stop. Idempotent throughout.

Protocol-neutral: the gateway turns OCPP StartTransaction / MeterValues / StopTransaction
(and, later, 2.0.1 TransactionEvent) into the requests below. Like ``station_lifecycle``,
each function is work for ``GroupCommitter``: it takes an entered unit of work, no commit.

The rules real stations make necessary (FIELD-NOTES 7, 8, 10, 11):

- A start is identified by (station, EVSE, token, station timestamp, meter start). The same
  start again (a replay after reconnect) returns the same transaction id, never a second
  session. Transaction ids are integers from one system-wide table (``TransactionNumber``).
- A stop for a session already ended changes nothing; a stop for an unknown id is recorded
  in the station log and its readings kept, and the caller still answers normally.
- Readings arrive normalised to SI by the gateway (Wh, W, A, V). Energy billed is the sum of
  believable steps of the energy register: the total register when the station sends one,
  else the sum of its per-phase registers. A step backwards, or one that would need more
  power than the connector can give, is flagged on the sample and the session and not
  billed; the next step counts from the new reading (never bill an odometer).
- Timestamps before 2000 or far ahead of our clock are replaced by the receive time and
  flagged (``station_lifecycle.trusted_time``); a session never ends before it started.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Join, Select, String, bindparam, column, insert, select, update, values
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.util import identity_key

from cpms.authorization import Authorization, Operator, unknown_cdr_token
from cpms.cdrs import FinalBill, credit_cdr, issue_cdrs
from cpms.driver_sql import DriverStatement, padded, padded_size
from cpms.events import SessionEnded, SessionStarted, SessionUpdated
from cpms.model import (
    BilledReading,
    ChargingStation,
    Connector,
    Evse,
    MeterSample,
    Reservation,
    Session,
    TransactionNumber,
)
from cpms.session_pricing import (
    DEFAULT_CURRENCY,
    live_tariffs,
    record_billed_reading,
    refresh_running_cost,
    refresh_running_costs,
    seal_session,
    tariff_switches_of,
    tariffs_listed,
)
from cpms.station_lifecycle import (
    evse_for,
    known_evses,
    load_station,
    log_station_event,
    trusted_time,
)
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "ENERGY_REGISTER",
    "LATE_STOP",
    "MeterReport",
    "MeterValue",
    "Sample",
    "StartOutcome",
    "StartRequest",
    "StationMeterReport",
    "StationStart",
    "StationStop",
    "StopOutcome",
    "StopRequest",
    "energy_reading",
    "evse_of",
    "finish_billing",
    "finish_billings",
    "max_power_w",
    "record_meter_reports",
    "record_meter_values",
    "session_of",
    "session_power_w",
    "start_transaction",
    "start_transactions",
    "stop_transaction",
    "stop_transactions",
]

ENERGY_REGISTER = "Energy.Active.Import.Register"
"""The measurand billing follows (OCPP's default when a station names none)."""
CURRENT_IMPORT = "Current.Import"
_PHASES = frozenset({"L1", "L2", "L3", "L1-N", "L2-N", "L3-N"})
FALLBACK_MAX_POWER_W = Decimal(1_000_000)
"""Plausibility ceiling for an EVSE whose connector power is unknown."""
POWER_MARGIN = Decimal("1.5")
"""A step may imply up to this times the connector's power before it is called a jump."""
STEP_SLACK_WH = Decimal(100)
"""Rounding and sample-timing slack allowed on every step."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled value, with the unit it was reported in and its SI equivalent."""

    measurand: str
    value: Decimal
    value_si: Decimal
    unit: str | None = None
    """As reported (``kWh``); ``value_si`` is in the SI unit (Wh, W, A, V, %...)."""
    phase: str | None = None
    location: str | None = None
    context: str | None = None
    """Sample.Periodic, Transaction.Begin, Transaction.End, ... (kept as sent)."""
    signed_data: dict[str, Any] | None = None
    """A signed reading (OCMF, EDL...) exactly as the station sent it, for CDR signed data."""


@dataclass(frozen=True, slots=True)
class MeterValue:
    """Samples a station took at one moment (its clock)."""

    station_time: datetime | None
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class MeterReport:
    """Meter values for an EVSE, of a transaction or of no transaction."""

    evse_number: int
    received_at: datetime
    meter_values: tuple[MeterValue, ...]
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A station started charging for a token (or, 2.0.1, before anyone presented one)."""

    evse_number: int
    uid: str | None
    """None: nobody identified yet (a 2.0.1 cable plugged in first); the session is PENDING."""
    meter_start_wh: Decimal | None
    """None: no start reading; the first register reading becomes the baseline."""
    received_at: datetime
    station_time: datetime | None = None
    connector_number: int | None = None
    reservation_id: int | None = None
    transaction_id: str | None = None
    """The station's own transaction id (2.0.1); None: we issue one (1.6)."""


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """The session a start opened (or, for a replay, had opened)."""

    transaction_id: str
    session_id: str
    authorization: Authorization | None
    """None when the request named no token."""
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class StopRequest:
    """A station stopped a transaction, with the readings it took meanwhile."""

    transaction_id: str
    received_at: datetime
    meter_stop_wh: Decimal | None = None
    station_time: datetime | None = None
    uid: str | None = None
    reason: str | None = None
    meter_values: tuple[MeterValue, ...] = ()


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """What a stop did."""

    known: bool
    """False for a transaction id nobody issued (recorded in the station log)."""
    replayed: bool = False
    """True when the session had already ended: nothing changed."""
    authorization: Authorization | None = None
    session_id: str | None = None
    flags: tuple[str, ...] = field(default=())


def _start_key(request: StartRequest, station_time: datetime | None) -> str:
    if request.transaction_id is not None:
        # The station names its transaction: that name is the key.
        return hashlib.sha256(f"id|{request.transaction_id}".encode()).hexdigest()
    stamp = station_time.isoformat() if station_time is not None else "-"
    meter = request.meter_start_wh.normalize() if request.meter_start_wh is not None else "-"
    text = f"{request.evse_number}|{request.uid}|{stamp}|{meter}"
    return hashlib.sha256(text.encode()).hexdigest()


def _flag(session: Session, flag: str) -> None:
    if flag not in session.flags:
        session.flags = [*session.flags, flag]  # reassigned: JSON columns miss in-place edits


def max_power_w(evse: Evse | None) -> Decimal:
    """The most power an EVSE can give: what a believable energy step is measured against."""
    if evse is None or not evse.connectors:
        return FALLBACK_MAX_POWER_W
    first = evse.connectors[0]
    return _connector_power_w(
        first.max_electric_power, first.power_type, first.max_voltage, first.max_amperage
    )


def _connector_power_w(
    max_electric_power: int | None, power_type: str, max_voltage: int, max_amperage: int
) -> Decimal:
    if max_electric_power:
        return Decimal(max_electric_power)
    phases = 3 if power_type == "AC_3_PHASE" else 1
    return Decimal(max_voltage * max_amperage * phases) or FALLBACK_MAX_POWER_W


_CONNECTOR = Connector.__table__
# Built once: the meter-values hot path reads only these four numbers of the EVSE.
_POWER_COLUMNS = (
    _CONNECTOR.c.max_electric_power,
    _CONNECTOR.c.power_type,
    _CONNECTOR.c.max_voltage,
    _CONNECTOR.c.max_amperage,
)
"""What ``_connector_power_w`` needs of a connector, in its argument order."""
_FIRST_CONNECTOR_POWER = (
    select(*_POWER_COLUMNS)
    .where(_CONNECTOR.c.evse_uid == bindparam("evse_uid"))
    .order_by(_CONNECTOR.c.position)
    .limit(1)
)


async def session_power_w(uow: UnitOfWork, session: Session | None) -> Decimal:
    """``max_power_w`` of the EVSE ``session`` charges on, in one Core query (no objects)."""
    if session is None or session.evse_uid is None:
        return FALLBACK_MAX_POWER_W
    connection = await uow.session.connection()
    query = {"evse_uid": session.evse_uid}
    first = (await connection.execute(_FIRST_CONNECTOR_POWER, query)).first()
    return FALLBACK_MAX_POWER_W if first is None else _connector_power_w(*first)


async def start_transaction(
    uow: UnitOfWork,
    station_id: str,
    request: StartRequest,
    *,
    authorization: Authorization | None,
    operator: Operator,
) -> StartOutcome:
    """Open a session for a station's start, or find the one a replayed start opened.

    ``authorization`` is the decision about ``request.uid`` (None when it names no token),
    made before this write: see ``ocpp_gateway.handler_base``. ``operator`` issues the
    CdrToken of a session no token is known for yet.
    """
    station = await load_station(uow, station_id)
    key = _start_key(request, request.station_time)
    existing = await uow.session.scalar(
        select(Session).where(Session.station_id == station_id, Session.start_key == key)
    )
    if existing is not None and existing.transaction_id is not None:
        return StartOutcome(existing.transaction_id, existing.id, authorization, replayed=True)

    evse = await evse_for(uow, station, request.evse_number, at=request.received_at)
    session_id = str(uuid.uuid4())
    number = None
    transaction_id = request.transaction_id
    if transaction_id is None:
        number = TransactionNumber(session_id=session_id, issued_at=request.received_at)
        uow.session.add(number)
        await uow.session.flush()
        transaction_id = str(number.id)
    else:
        await uow.session.flush()  # an EVSE evse_for just added goes in before its session
    start = StationStart(station_id, request, authorization, operator)
    session = _opened_session(start, station, evse, key, session_id, transaction_id)
    connector = _first_connector(evse)
    await seal_session(uow, session, evse.location, evse, connector, ad_hoc=_ad_hoc(session))
    reserved = None
    if request.reservation_id is not None:
        reservation = await uow.session.get(Reservation, request.reservation_id)
        if reservation is not None and reservation.station_id == station_id:
            session.reservation_id = reservation.id
            reservation.status = "USED"
            reserved = await uow.session.scalar(
                select(Session).where(
                    Session.reservation_id == reservation.id, Session.status == "RESERVATION"
                )
            )
    if reserved is not None:
        # OCPI: the reservation's session itself becomes ACTIVE (same id, already known to
        # the eMSP), starting now; its reservation time stays priced before it.
        if number is not None:
            number.session_id = reserved.id
        session = _activate(reserved, session)
    else:
        uow.session.add(session)
    await uow.session.flush()  # samples point at it, and no relationship orders the inserts
    writes = _MeterWrites()
    _record_start(uow, writes, start, session)
    await writes.send(uow)
    return StartOutcome(transaction_id, session.id, authorization)


@dataclass(frozen=True, slots=True)
class StationStart:
    """A start with the station that sent it and the decisions made before its write."""

    station_id: str
    request: StartRequest
    authorization: Authorization | None
    operator: Operator


async def start_transactions(uow: UnitOfWork, starts: Sequence[StationStart]) -> list[StartOutcome]:
    """``start_transaction`` for many starts, with a few statements for all of them.

    Written for ``GroupCommitter.run_grouped``, like ``record_meter_reports``: the stations,
    their EVSEs (with location and connectors), the sessions their start keys already opened
    and the connectors' tariffs are read once for the batch; the transaction numbers and the
    sessions are inserted by one flush each, what follows them by the next. The rare cases
    go through ``start_transaction`` after the others: a start naming a reservation, an EVSE
    nobody has described, an unknown station, a start key found without a transaction, and
    every start of a station after its first in the batch (so its starts keep their order).
    """
    # Changes earlier works in this transaction left pending must reach the database first.
    await uow.session.flush()
    keys = [_start_key(start.request, start.request.station_time) for start in starts]
    station_ids = {start.station_id for start in starts}
    stations = await _stations_by_id(uow, station_ids)
    evses = await known_evses(uow, station_ids)
    opened = await _opened_by_key(uow, station_ids, set(keys))
    results: dict[int, StartOutcome] = {}
    fresh: list[tuple[int, str, Evse]] = []
    later: list[int] = []
    seen: set[str] = set()
    for index, (start, key) in enumerate(zip(starts, keys, strict=True)):
        evse = evses.get((start.station_id, start.request.evse_number))
        found = opened.get((start.station_id, key))
        if (
            start.station_id in seen
            or start.station_id not in stations
            or start.request.reservation_id is not None
            or (found is not None and found[0] is None)
            or (found is None and evse is None)
        ):
            later.append(index)
        elif found is not None:
            transaction_id, session_id = found
            assert transaction_id is not None
            results[index] = StartOutcome(
                transaction_id, session_id, start.authorization, replayed=True
            )
        else:
            assert evse is not None
            fresh.append((index, key, evse))
        seen.add(start.station_id)
    if fresh:
        await _open_sessions(uow, starts, fresh, stations, results)
    for index in later:
        start = starts[index]
        results[index] = await start_transaction(
            uow,
            start.station_id,
            start.request,
            authorization=start.authorization,
            operator=start.operator,
        )
    return [results[index] for index in range(len(starts))]


async def _open_sessions(
    uow: UnitOfWork,
    starts: Sequence[StationStart],
    fresh: list[tuple[int, str, Evse]],
    stations: dict[str, ChargingStation],
    results: dict[int, StartOutcome],
) -> None:
    """``start_transaction``'s new sessions for ``starts[index]`` of ``fresh``, all at once."""
    connectors = {index: _first_connector(evse) for index, _, evse in fresh}
    live = await live_tariffs(
        uow, (i for c in connectors.values() if c is not None for i in c.tariff_ids or ())
    )
    session_ids = {index: str(uuid.uuid4()) for index, _, _ in fresh}
    numbers = await _transaction_numbers(
        uow,
        {
            session_ids[index]: starts[index].request.received_at
            for index, _, _ in fresh
            if starts[index].request.transaction_id is None
        },
    )
    opened: list[tuple[StationStart, Session]] = []
    for index, key, evse in fresh:
        start = starts[index]
        number = numbers.get(session_ids[index])
        transaction_id = str(number) if number is not None else start.request.transaction_id
        assert transaction_id is not None
        station = stations[start.station_id]
        session = _opened_session(start, station, evse, key, session_ids[index], transaction_id)
        connector = connectors[index]
        await seal_session(
            uow,
            session,
            evse.location,
            evse,
            connector,
            ad_hoc=_ad_hoc(session),
            tariffs=tariffs_listed(connector, live),
        )
        opened.append((start, session))
        results[index] = StartOutcome(transaction_id, session.id, start.authorization)
    uow.session.add_all(session for _, session in opened)
    await uow.session.flush()  # samples point at them, and no relationship orders the inserts
    writes = _MeterWrites()
    for start, session in opened:
        _record_start(uow, writes, start, session)
    await writes.send(uow)


_NUMBER = TransactionNumber.__table__
_NUMBERS_INSERT = insert(_NUMBER).returning(_NUMBER.c.id, _NUMBER.c.session_id)


async def _transaction_numbers(uow: UnitOfWork, issued: dict[str, datetime]) -> dict[str, int]:
    """New transaction numbers for these sessions (issued at), by session id.

    One INSERT for all. Through the ORM each would be an INSERT of its own on SQLite, which
    cannot tell which generated key belongs to which row of a many-row INSERT; the session id
    (unique) tells it here.
    """
    if not issued:
        return {}
    connection = await uow.session.connection()
    rows = [{"session_id": session_id, "issued_at": at} for session_id, at in issued.items()]
    issued_numbers = await connection.execute(_NUMBERS_INSERT, rows)
    return {session_id: number for number, session_id in issued_numbers}


def _first_connector(evse: Evse) -> Connector | None:
    """The connector a session on ``evse`` is opened on (EVSEs report no connector id)."""
    return evse.connectors[0] if evse.connectors else None


async def _stations_by_id(uow: UnitOfWork, ids: set[str]) -> dict[str, ChargingStation]:
    query = select(ChargingStation).where(ChargingStation.id.in_(ids))
    return {station.id: station for station in await uow.session.scalars(query)}


async def _opened_by_key(
    uow: UnitOfWork, station_ids: set[str], keys: set[str]
) -> dict[tuple[str, str], tuple[str | None, str]]:
    """(transaction id, session id) of the sessions these start keys opened, by (station, key)."""
    query = select(Session.station_id, Session.start_key, Session.transaction_id, Session.id).where(
        Session.station_id.in_(station_ids), Session.start_key.in_(keys)
    )
    return {
        (station_id, key): (transaction_id, session_id)
        for station_id, key, transaction_id, session_id in await uow.session.execute(query)
        if key is not None
    }


def _opened_session(
    start: StationStart,
    station: ChargingStation,
    evse: Evse,
    key: str,
    session_id: str,
    transaction_id: str,
) -> Session:
    """The session ``start`` opens on ``evse``, not yet sealed (``seal_session``) nor added."""
    request, authorization, operator = start.request, start.authorization, start.operator
    started_at, clock_wrong = trusted_time(request.station_time, request.received_at)
    connector = _first_connector(evse)
    if authorization is not None:
        status = "ACTIVE" if authorization.allowed else "INVALID"
        cdr_token = authorization.cdr_token
    else:
        status, cdr_token = "PENDING", unknown_cdr_token("", operator)
    return Session(
        id=session_id,
        country_code=operator.country_code,
        party_id=operator.party_id,
        transaction_id=transaction_id,
        start_key=key,
        station_id=station.id,
        location_id=evse.location.id,
        evse_uid=evse.uid,
        connector_id=connector.id if connector is not None else None,
        status=status,
        start_date_time=started_at,
        cdr_token=cdr_token,
        auth_method=authorization.auth_method if authorization is not None else "WHITELIST",
        authorization_reference=(
            authorization.authorization_reference if authorization is not None else None
        ),
        meter_id=station.meter_serial_number,
        meter_start_wh=request.meter_start_wh,
        energy_wh=Decimal(0),
        currency=DEFAULT_CURRENCY,
        partner_id=authorization.partner_id if authorization is not None else None,
        flags=["station_clock"] if clock_wrong else [],
        last_meter_wh=request.meter_start_wh,
        last_meter_at=started_at,
        heard_at=request.received_at,
        last_updated=request.received_at,
    )


def _ad_hoc(session: Session) -> bool:
    return session.cdr_token.get("type") == "AD_HOC_USER"


def _record_start(
    uow: UnitOfWork, writes: _MeterWrites, start: StationStart, session: Session
) -> None:
    """What follows a session's opening: its first billing point and its begin sample (rows
    for ``writes``), the log of a wrong clock and the event. ``session`` must be flushed
    before ``writes`` are sent: nothing orders the inserts.
    """
    request, station_id = start.request, start.station_id
    started_at, clock_wrong = trusted_time(request.station_time, request.received_at)
    writes.billed.append((session.id, started_at, session.energy_wh, None))
    if request.meter_start_wh is not None:
        begin = Sample(
            ENERGY_REGISTER,
            request.meter_start_wh,
            request.meter_start_wh,
            unit="Wh",
            context="Transaction.Begin",
        )
        writes.samples.extend(
            _sample_rows(
                session.id,
                station_id,
                request.evse_number,
                MeterValue(request.station_time, (begin,)),
                started_at,
                clock_wrong,
                request.received_at,
                ["station_clock"] if clock_wrong else [],
            )
        )
    if clock_wrong:
        log_station_event(
            uow,
            station_id,
            "clock",
            f"transaction {session.transaction_id} started with an unbelievable clock; "
            "receive time used",
            occurred_at=request.station_time,
            received_at=request.received_at,
        )
    uow.record(
        SessionStarted(
            occurred_at=request.received_at, session_id=session.id, status=session.status
        )
    )


def energy_reading(samples: tuple[Sample, ...]) -> Decimal | None:
    """The energy register of one reading: the total, else the sum of its phases."""
    registers = [
        s
        for s in samples
        if s.measurand == ENERGY_REGISTER and s.location != "Inlet" and s.signed_data is None
    ]
    totals = [s.value_si for s in registers if s.phase is None]
    if totals:
        return totals[0]
    phases = {s.phase: s.value_si for s in registers if s.phase in _PHASES}
    return sum(phases.values(), Decimal(0)) if phases else None


def _activate(reserved: Session, fresh: Session) -> Session:
    """Turn a RESERVATION session into the session ``fresh`` describes, keeping its id."""
    for attribute in Session.__table__.columns:
        if attribute.key not in ("id", "reservation_id"):
            setattr(reserved, attribute.key, getattr(fresh, attribute.key))
    return reserved


def _current_reading(samples: tuple[Sample, ...]) -> Decimal | None:
    """Current drawn, summed over phases (what OCPI current restrictions compare)."""
    currents = [
        s
        for s in samples
        if s.measurand == CURRENT_IMPORT and s.location != "Inlet" and s.signed_data is None
    ]
    phases = {s.phase: s.value_si for s in currents if s.phase in _PHASES}
    if phases:
        return sum(phases.values(), Decimal(0))
    totals = [s.value_si for s in currents if s.phase is None]
    return totals[0] if totals else None


class _Odometer(Protocol):
    """What billing a step needs: a ``Session``, or the grouped write's ``_Meter``."""

    id: str
    energy_wh: Decimal
    last_meter_wh: Decimal | None
    last_meter_at: datetime | None


def _advance(
    session: _Odometer, reading_wh: Decimal, at: datetime, max_power_w: Decimal
) -> tuple[bool, str | None]:
    """Bill the step from the last accepted reading to this one.

    Return whether the reading moved the session's timeline, and a flag if its step was
    refused.
    """
    if session.last_meter_wh is None or session.last_meter_at is None:
        session.last_meter_wh, session.last_meter_at = reading_wh, at
        return True, None
    if at < session.last_meter_at:
        return False, None  # an older reading arriving late: kept, but it moves nothing
    step = reading_wh - session.last_meter_wh
    hours = Decimal((at - session.last_meter_at).total_seconds()) / Decimal(3600)
    flag: str | None = None
    if step < 0:
        flag = "meter_backwards"
    elif step > max_power_w * POWER_MARGIN * hours + STEP_SLACK_WH:
        flag = "meter_jump"
    else:
        session.energy_wh += step
    # After a refused step the register itself is the new baseline: count from here on.
    session.last_meter_wh, session.last_meter_at = reading_wh, at
    return True, flag


async def _store_meter_values(
    uow: UnitOfWork,
    station_id: str,
    evse_number: int,
    meter_values: tuple[MeterValue, ...],
    received_at: datetime,
    session: Session | None,
    power_limit_w: Decimal,
    *,
    bill: bool = True,
) -> set[str]:
    """Store readings under ``session``; with ``bill``, count their energy steps on it.

    A step is believable up to ``power_limit_w`` (``max_power_w`` of the session's EVSE).
    """
    flags: set[str] = set()
    for meter_value in meter_values:
        at, clock_wrong = trusted_time(meter_value.station_time, received_at)
        if await _already_stored(uow, session, at, meter_value.samples):
            continue
        billed = session if bill else None
        sample_flags, moved = _bill_reading(billed, meter_value, at, clock_wrong, power_limit_w)
        if moved and session is not None:
            record_billed_reading(uow, session, at, _current_reading(meter_value.samples))
        uow.session.add_all(
            MeterSample(**dict(zip(_SAMPLE_COLUMNS, row, strict=True)))
            for row in _sample_rows(
                session.id if session is not None else None,
                station_id,
                evse_number,
                meter_value,
                at,
                clock_wrong,
                received_at,
                sample_flags,
            )
        )
        flags.update(sample_flags)
    if session is not None and bill:
        for flag in sorted(flags):
            _flag(session, flag)
    return flags


def _bill_reading(
    odometer: _Odometer | None,
    meter_value: MeterValue,
    at: datetime,
    clock_wrong: bool,
    power_limit_w: Decimal,
) -> tuple[list[str], bool]:
    """Bill one reading's energy step on ``odometer`` (None: nothing is billed).

    Return the flags its samples carry and whether it moved the billing timeline (then a
    billing point is due at ``at``).
    """
    flags = ["station_clock"] if clock_wrong else []
    reading = energy_reading(meter_value.samples)
    if reading is None or odometer is None:
        return flags, False
    moved, refused = _advance(odometer, reading, at, power_limit_w)
    if refused is not None:
        flags.append(refused)
    return flags, moved


_SAMPLE_COLUMNS = (
    "session_id",
    "station_id",
    "ocpp_evse_id",
    "sampled_at",
    "station_time",
    "received_at",
    "measurand",
    "phase",
    "location",
    "context",
    "unit",
    "value",
    "value_si",
    "signed_data",
    "flags",
)
"""The values of a ``meter_sample`` row as ``_sample_rows`` gives them, in this order."""


def _sample_rows(
    session_id: str | None,
    station_id: str,
    evse_number: int,
    meter_value: MeterValue,
    at: datetime,
    clock_wrong: bool,
    received_at: datetime,
    flags: list[str],
) -> list[tuple[Any, ...]]:
    """The ``meter_sample`` rows of one reading (taken ``at``, our trusted time)."""
    station_time = meter_value.station_time if clock_wrong else None
    # Only the billed register carries the billing verdict; every sample the clock's.
    return [
        (
            session_id,
            station_id,
            evse_number,
            at,
            station_time,
            received_at,
            sample.measurand[:48],
            sample.phase,
            sample.location,
            sample.context,
            sample.unit,
            sample.value,
            sample.value_si,
            sample.signed_data,
            (flags if sample.measurand == ENERGY_REGISTER or clock_wrong else None) or None,
        )
        for sample in meter_value.samples
    ]


async def _already_stored(
    uow: UnitOfWork, session: Session | None, at: datetime, samples: Sequence[Sample]
) -> bool:
    """Whether ``session`` already has every sample of this reading taken at ``at``: a
    replayed MeterValues (FIELD-NOTES 8). One new value at the same moment (a signed reading
    beside the start register) is not a replay.

    Only a reading not newer than the session's last one can be a replay, so readings arriving
    in order, the hot path, cost no query.
    """
    if not samples or session is None or session.last_meter_at is None:
        return False
    if at > session.last_meter_at:
        return False
    stored = await uow.session.execute(
        select(
            MeterSample.measurand,
            MeterSample.phase,
            MeterSample.context,
            MeterSample.value,
            MeterSample.signed_data,
        ).where(MeterSample.session_id == session.id, MeterSample.sampled_at == at)
    )
    seen = [tuple(row) for row in stored]
    return bool(seen) and all(
        (x.measurand[:48], x.phase, x.context, x.value, x.signed_data) in seen for x in samples
    )


async def session_of(uow: UnitOfWork, station_id: str, transaction_id: str) -> Session | None:
    """The session of a station's transaction id (ids are unique per station)."""
    return await uow.session.scalar(
        select(Session).where(
            Session.transaction_id == transaction_id, Session.station_id == station_id
        )
    )


async def evse_of(uow: UnitOfWork, session: Session | None) -> Evse | None:
    """The EVSE a session charges on, with its connectors (None if it has none)."""
    if session is None or session.evse_uid is None:
        return None
    return await uow.session.get(Evse, session.evse_uid, options=[selectinload(Evse.connectors)])


def _running_cost_due(session: Session, priced_through: datetime | None) -> bool:
    """Whether the newest reading calls for re-pricing the session's running cost.

    Re-pricing reads the whole billing timeline, so doing it for every reading made a station
    sampling each second cost a thousand statements a minute. The running cost (what eMSPs
    and 2.0.1 stations are shown) is refreshed with the first reading of each clock minute, as
    OCPI asks of charging periods ("enough for progress feedback"), and with the first reading
    after a tariff switch (a tariff-relevant change: its period must show). The final bill is
    always priced from every reading.
    """
    now = session.last_meter_at
    if _pricing_minute_began(now, priced_through):
        return True
    if now is None or priced_through is None or not session.tariff_switches:
        return False
    return any(priced_through < switch.at <= now for switch in tariff_switches_of(session))


def _pricing_minute_began(now: datetime | None, priced_through: datetime | None) -> bool:
    """Whether the newest reading (``now``) is the first of a clock minute."""
    if now is None:
        return False
    return priced_through is None or now.replace(second=0, microsecond=0) > priced_through


async def record_meter_values(uow: UnitOfWork, station_id: str, report: MeterReport) -> set[str]:
    """Store a station's readings and bill their believable energy steps; return the flags.

    The station is not read: it is connected, so it exists, and every row written names it
    (a foreign key), which is all a check would add. One statement less per reading.
    """
    session = None
    if report.transaction_id is not None:
        # No autoflush: inside a group commit it would write the earlier works' readings one
        # work at a time, where the commit writes them all at once. Nothing this lookup could
        # miss is pending: a station's session is opened by its own earlier, committed call.
        with uow.session.no_autoflush:
            session = await session_of(uow, station_id, report.transaction_id)
        if session is None:
            log_station_event(
                uow,
                station_id,
                "unknown_transaction",
                f"meter values for unknown transaction {report.transaction_id}: kept unbilled",
                received_at=report.received_at,
                details={"transaction_id": report.transaction_id},
            )
    ended = session is not None and session.end_date_time is not None
    priced_through = session.last_meter_at if session is not None else None
    flags = await _store_meter_values(
        uow,
        station_id,
        report.evse_number,
        report.meter_values,
        report.received_at,
        session,
        await session_power_w(uow, session),
        bill=not ended,  # readings after the stop are kept with their session, never billed
    )
    if session is not None and not ended:
        session.heard_at = report.received_at
        session.last_updated = report.received_at
        if _running_cost_due(session, priced_through):
            await refresh_running_cost(uow, session)
        uow.record(
            SessionUpdated(
                occurred_at=report.received_at, session_id=session.id, status=session.status
            )
        )
    return flags


StationMeterReport = tuple[str, MeterReport]
"""A meter report with the id of the station that sent it."""


@dataclass(slots=True)
class _Meter:
    """What the grouped write needs of a session, read with one SELECT for the batch.

    It has ``Session``'s names for what ``_advance`` and ``_running_cost_due`` use, so the
    same rules bill it.
    """

    id: str
    status: str
    ended: bool
    energy_wh: Decimal
    last_meter_wh: Decimal | None
    last_meter_at: datetime | None
    flags: list[str]
    tariff_switches: list[dict[str, Any]] | None
    power_w: Decimal
    priced_through: datetime | None
    """``last_meter_at`` as the transaction found it: ``_running_cost_due``'s reference."""
    heard_at: datetime | None = None
    """Receive time of the newest report written for it in this batch."""


@dataclass(slots=True)
class _MeterWrites:
    """Rows for the grouped write, sent with one executemany per table."""

    samples: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows of ``_SAMPLE_COLUMNS``."""
    billed: list[tuple[str, datetime, Decimal, Decimal | None]] = field(default_factory=list)
    """Rows of ``_BILLED_INSERT``'s names."""
    sessions: dict[str, _Meter] = field(default_factory=dict)
    """Sessions whose readings moved, written once each with their final state."""

    async def send(self, uow: UnitOfWork) -> None:
        connection = await uow.session.connection()
        # Deferred: they ride along with the batch's next statement or its commit.
        await _SAMPLE_INSERT.execute_many(connection, self.samples, deferred=True)
        await _BILLED_INSERT.execute_many(connection, self.billed, deferred=True)
        await _METER_SET.execute_many(
            connection,
            [
                (
                    meter.id,
                    meter.energy_wh,
                    meter.last_meter_wh,
                    meter.last_meter_at,
                    meter.flags,
                    meter.heard_at,
                )
                for meter in self.sessions.values()
            ],
            deferred=True,
        )
        self.samples.clear()
        self.billed.clear()
        self.sessions.clear()


_SESSION = Session.__table__
_EVSE = Evse.__table__
# Built once (composing them per batch cost more CPU than running them).
# The grouped write's statements run on the driver (cpms.driver_sql): through SQLAlchemy,
# processing every parameter of every row was a quarter of a MeterValues' CPU.
_SAMPLE_INSERT = DriverStatement(insert(MeterSample.__table__), _SAMPLE_COLUMNS)
_BILLED_INSERT = DriverStatement(
    insert(BilledReading.__table__), ("session_id", "at", "energy_wh", "current_a")
)
_METER_SET = DriverStatement(
    update(_SESSION)
    .where(_SESSION.c.id == bindparam("meter_session"))
    .values(
        energy_wh=bindparam("meter_energy_wh"),
        last_meter_wh=bindparam("meter_last_wh"),
        last_meter_at=bindparam("meter_last_at"),
        flags=bindparam("meter_flags"),
        heard_at=bindparam("meter_heard_at"),
        last_updated=bindparam("meter_heard_at"),
    ),
    (
        "meter_session",
        "meter_energy_wh",
        "meter_last_wh",
        "meter_last_at",
        "meter_flags",
        "meter_heard_at",
    ),
)


def _transaction_keys(size: int) -> tuple[Join, list[str]]:
    """``size`` (station, transaction id) pairs as a ``VALUES`` list joined to the session
    table, and the names of their parameters (station, transaction id, station, ...).

    Each pair is a lookup in the (station, transaction id) index. ``(station_id,
    transaction_id) IN (...)`` read the whole table on SQLite, a batch's cost growing with
    every session ever stored.
    """
    names = [(f"station_{i}", f"transaction_{i}") for i in range(size)]
    keys = (
        values(column("station_id", String), column("transaction_id", String), name="keys")
        .data([(bindparam(station), bindparam(transaction)) for station, transaction in names])
        .cte("transaction_keys")
    )
    joined = keys.join(
        _SESSION,
        (_SESSION.c.station_id == keys.c.station_id)
        & (_SESSION.c.transaction_id == keys.c.transaction_id),
    )
    return joined, [name for pair in names for name in pair]


def _key_values(keys: set[tuple[str, str]]) -> list[str | None]:
    """The parameters of ``_transaction_keys(padded_size(len(keys)))`` for ``keys``."""
    pairs: list[tuple[str | None, str | None]] = sorted(keys)
    return [value for pair in padded(pairs, fill=(None, None)) for value in pair]


@functools.cache
def _meters_of_keys(size: int) -> DriverStatement:
    """The sessions of ``size`` (station, transaction id) pairs (a ``padded_size``: a few
    statements serve every batch)."""
    joined, names = _transaction_keys(size)
    query = (
        select(
            _SESSION.c.id,
            _SESSION.c.station_id,
            _SESSION.c.transaction_id,
            _SESSION.c.status,
            _SESSION.c.end_date_time,
            _SESSION.c.energy_wh,
            _SESSION.c.last_meter_wh,
            _SESSION.c.last_meter_at,
            _SESSION.c.flags,
            _SESSION.c.tariff_switches,
            *_POWER_COLUMNS,
        )
        .select_from(joined.outerjoin(_CONNECTOR, _CONNECTOR.c.evse_uid == _SESSION.c.evse_uid))
        .order_by(_SESSION.c.id, _CONNECTOR.c.position)
    )
    return DriverStatement(query, names)


async def _meters_of(uow: UnitOfWork, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Meter]:
    """The sessions of these (station, transaction id) pairs, with their EVSE's power."""
    found = await _meters_of_keys(padded_size(len(keys))).fetch_all(
        await uow.session.connection(), _key_values(keys)
    )
    meters: dict[tuple[str, str], _Meter] = {}
    for (
        session_id,
        station_id,
        transaction_id,
        status,
        end_date_time,
        energy_wh,
        last_meter_wh,
        last_meter_at,
        flags,
        tariff_switches,
        *power,
    ) in found:
        key = (station_id, transaction_id)
        if key in meters:
            continue  # a further connector of the same EVSE: the first one counts
        max_electric_power, power_type, max_voltage, max_amperage = power
        meters[key] = _Meter(
            id=session_id,
            status=status,
            ended=end_date_time is not None,
            energy_wh=energy_wh,
            last_meter_wh=last_meter_wh,
            last_meter_at=last_meter_at,
            flags=list(flags or ()),
            tariff_switches=tariff_switches,
            power_w=FALLBACK_MAX_POWER_W
            if power_type is None
            else _connector_power_w(max_electric_power, power_type, max_voltage, max_amperage),
            priced_through=last_meter_at,
        )
    return meters


@functools.cache
def _stopping_query(size: int) -> tuple[Select[Any], list[str]]:
    """The sessions of ``size`` (station, transaction id) pairs (a ``padded_size``) as
    objects, with their EVSE's number and first connector's power (a row per connector, the
    first first), and the names of the query's parameters.
    """
    joined, names = _transaction_keys(size)
    query = (
        select(Session, _EVSE.c.ocpp_evse_id, *_POWER_COLUMNS)
        .select_from(
            joined.outerjoin(_EVSE, _EVSE.c.uid == _SESSION.c.evse_uid).outerjoin(
                _CONNECTOR, _CONNECTOR.c.evse_uid == _SESSION.c.evse_uid
            )
        )
        .order_by(_SESSION.c.id, _CONNECTOR.c.position)
    )
    return query, names


async def _sessions_stopping(
    uow: UnitOfWork, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], _Stopping]:
    """The sessions of these (station, transaction id) pairs, with what billing their last
    readings needs: ``evse_of``'s and ``max_power_w``'s answers, in the same SELECT.
    """
    query, names = _stopping_query(padded_size(len(keys)))
    rows = await uow.session.execute(query, dict(zip(names, _key_values(keys), strict=True)))
    found: dict[tuple[str, str], _Stopping] = {}
    for session, evse_number, max_electric_power, power_type, max_voltage, max_amperage in rows:
        key = (session.station_id, session.transaction_id)
        if key in found:
            continue  # a further connector of the same EVSE: the first one counts
        power_w = (
            FALLBACK_MAX_POWER_W
            if power_type is None
            else _connector_power_w(max_electric_power, power_type, max_voltage, max_amperage)
        )
        found[key] = _Stopping(session, evse_number or 0, power_w)
    return found


def _in_order(
    last: datetime | None, meter_values: tuple[MeterValue, ...], received_at: datetime
) -> bool:
    """Whether every reading is newer than the last one billed (at ``last``).

    Only such readings can be no replay (``_already_stored`` would ask nothing of them).
    """
    for meter_value in meter_values:
        at, _ = trusted_time(meter_value.station_time, received_at)
        if last is not None and at <= last:
            return False
        if energy_reading(meter_value.samples) is not None:
            last = at
    return True


def _grouped_write_fits(uow: UnitOfWork, meter: _Meter | None, report: MeterReport) -> bool:
    """Whether ``report`` can be written by the grouped way; else ``record_meter_values``.

    That one takes the rare cases: an unknown transaction (logged), a session already
    ended, a reading that may be a replay, a session with tariff switches, and a session
    this transaction holds as an object (whose state a Core UPDATE must not go behind).
    """
    if report.transaction_id is None:
        return True
    return (
        meter is not None
        and not meter.ended
        and not meter.tariff_switches
        and identity_key(Session, meter.id) not in uow.session.identity_map
        and _in_order(meter.last_meter_at, report.meter_values, report.received_at)
    )


def _add_report(
    uow: UnitOfWork,
    writes: _MeterWrites,
    station_id: str,
    report: MeterReport,
    meter: _Meter | None,
) -> set[str]:
    """``record_meter_values``' rules for a report ``_grouped_write_fits``, as rows to write."""
    flags = _add_readings(
        writes,
        station_id,
        report.evse_number,
        report.meter_values,
        report.received_at,
        meter,
        meter.power_w if meter is not None else FALLBACK_MAX_POWER_W,
    )
    if meter is not None:
        meter.flags.extend(sorted(flags - set(meter.flags)))
        meter.heard_at = report.received_at
        writes.sessions[meter.id] = meter
        uow.record(
            SessionUpdated(occurred_at=report.received_at, session_id=meter.id, status=meter.status)
        )
    return flags


def _add_readings(
    writes: _MeterWrites,
    station_id: str,
    evse_number: int,
    meter_values: tuple[MeterValue, ...],
    received_at: datetime,
    odometer: _Odometer | None,
    power_limit_w: Decimal,
) -> set[str]:
    """``_store_meter_values``' rules for readings known to be no replay (``_in_order``), as
    rows for ``writes``: bill them on ``odometer`` (None: kept unbilled); return the flags.
    """
    flags: set[str] = set()
    session_id = odometer.id if odometer is not None else None
    for meter_value in meter_values:
        at, clock_wrong = trusted_time(meter_value.station_time, received_at)
        sample_flags, moved = _bill_reading(odometer, meter_value, at, clock_wrong, power_limit_w)
        if moved and odometer is not None:
            writes.billed.append(
                (odometer.id, at, odometer.energy_wh, _current_reading(meter_value.samples))
            )
        writes.samples.extend(
            _sample_rows(
                session_id,
                station_id,
                evse_number,
                meter_value,
                at,
                clock_wrong,
                received_at,
                sample_flags,
            )
        )
        flags.update(sample_flags)
    return flags


async def record_meter_reports(
    uow: UnitOfWork, reports: Sequence[StationMeterReport]
) -> list[set[str]]:
    """``record_meter_values`` for many reports, with a few statements for all of them.

    Written for ``GroupCommitter.run_grouped``, like ``station_lifecycle.record_statuses``:
    the sessions of every report are read in one SELECT (with their EVSE's power), the
    samples and billing points inserted with one executemany each, and each session updated
    once. A session whose running cost is due is re-priced through the ORM after those
    statements. Reports ``_grouped_write_fits`` refuses go through ``record_meter_values``,
    in their place in the order.
    """
    # Changes earlier works in this transaction left pending must reach the database first
    # (a no-op when nothing is pending).
    await uow.session.flush()
    keys = {(s, r.transaction_id) for s, r in reports if r.transaction_id is not None}
    meters = await _meters_of(uow, keys) if keys else {}
    writes = _MeterWrites()
    due: dict[str, _Meter] = {}
    results: list[set[str]] = []
    for station_id, report in reports:
        tid = report.transaction_id
        meter = None if tid is None else meters.get((station_id, tid))
        if not _grouped_write_fits(uow, meter, report):
            await writes.send(uow)  # what it reads must include what came before it
            results.append(await record_meter_values(uow, station_id, report))
            continue
        results.append(_add_report(uow, writes, station_id, report, meter))
        if meter is not None and _pricing_minute_began(meter.last_meter_at, meter.priced_through):
            due[meter.id] = meter  # no tariff switches here: the minute alone decides
    await writes.send(uow)
    if due:
        sessions = await uow.session.scalars(select(Session).where(Session.id.in_(due)))
        await refresh_running_costs(uow, list(sessions))
    return results


async def stop_transaction(
    uow: UnitOfWork,
    station_id: str,
    request: StopRequest,
    *,
    authorization: Authorization | None,
) -> StopOutcome:
    """End a session, once; record a stop for an unknown transaction and change nothing else.

    ``authorization`` is the decision about the stop's token, made before this write.
    """
    session = await session_of(uow, station_id, request.transaction_id)
    if session is None:
        log_station_event(
            uow,
            station_id,
            "unknown_transaction",
            f"stop for unknown transaction {request.transaction_id}: answered, kept unbilled",
            occurred_at=request.station_time,
            received_at=request.received_at,
            details={
                "transaction_id": request.transaction_id,
                "meter_stop_wh": str(request.meter_stop_wh),
                "id_tag": request.uid,
                "reason": request.reason,
            },
        )
        await _store_meter_values(
            uow, station_id, 0, request.meter_values, request.received_at, None, max_power_w(None)
        )
        return StopOutcome(known=False, authorization=authorization)
    if session.end_date_time is not None:
        if _closed_by_us(session) and LATE_STOP not in session.flags:
            return await _late_stop(uow, station_id, session, request, authorization)
        return StopOutcome(
            known=True, replayed=True, authorization=authorization, session_id=session.id
        )

    flags = await _store_stop_readings(uow, station_id, session, request)
    _end_session(uow, session, request)
    await finish_billing(uow, session, now=request.received_at)
    return StopOutcome(
        known=True,
        authorization=authorization,
        session_id=session.id,
        flags=tuple(sorted(flags)),
    )


def _end_session(uow: UnitOfWork, session: Session, request: StopRequest) -> None:
    """End ``session`` as ``request`` says (its readings billed already)."""
    ended_at, clock_wrong = trusted_time(request.station_time, request.received_at)
    if clock_wrong:
        _flag(session, "station_clock")
    if ended_at < session.start_date_time:
        # A clock that moved backwards mid-session: never a negative duration.
        ended_at = max(session.start_date_time, min(request.received_at, ended_at))
        _flag(session, "station_clock")
    session.end_date_time = ended_at
    session.meter_stop_wh = request.meter_stop_wh
    session.stop_reason = (request.reason or "Local")[:32]
    if session.status != "INVALID":
        session.status = "COMPLETED"
    session.last_updated = request.received_at
    uow.record(
        SessionEnded(occurred_at=request.received_at, session_id=session.id, status=session.status)
    )


@dataclass(frozen=True, slots=True)
class StationStop:
    """A stop with the station that sent it and the decision about its token, made before
    its write."""

    station_id: str
    request: StopRequest
    authorization: Authorization | None


@dataclass(frozen=True, slots=True)
class _Stopping:
    """A session a stop names, with what billing its readings needs of its EVSE."""

    session: Session
    evse_number: int
    power_w: Decimal


async def stop_transactions(uow: UnitOfWork, stops: Sequence[StationStop]) -> list[StopOutcome]:
    """``stop_transaction`` for many stops, with a few statements for all of them.

    Written for ``GroupCommitter.run_grouped``, like ``start_transactions``: the sessions are
    read in one SELECT with their EVSE's number and power, the readings written with one
    executemany per table, the sessions priced together (``refresh_running_costs``) and
    their CDRs issued together (``issue_cdrs``). The rare cases go through
    ``stop_transaction`` after the others: an unknown transaction, a session already ended
    (a replay, or a late stop), readings that may be a replay, and every stop of a station
    after its first in the batch.
    """
    # Changes earlier works in this transaction left pending must reach the database first.
    await uow.session.flush()
    found = await _sessions_stopping(
        uow, {(stop.station_id, stop.request.transaction_id) for stop in stops}
    )
    results: dict[int, StopOutcome] = {}
    writes = _MeterWrites()
    ending: list[tuple[Session, datetime]] = []
    later: list[int] = []
    seen: set[str] = set()
    for index, stop in enumerate(stops):
        request = stop.request
        stopping = found.get((stop.station_id, request.transaction_id))
        if (
            stop.station_id in seen
            or stopping is None
            or stopping.session.end_date_time is not None
            or not _in_order(
                stopping.session.last_meter_at, _stop_readings(request), request.received_at
            )
        ):
            later.append(index)
        else:
            results[index] = _end_grouped(uow, writes, stop, stopping)
            ending.append((stopping.session, request.received_at))
        seen.add(stop.station_id)
    if ending:
        await writes.send(uow)
        # What pricing reads went by ``writes``; the sessions' changes wait for the commit,
        # to be written with one UPDATE each.
        with uow.session.no_autoflush:
            await finish_billings(uow, ending)
    for index in later:
        stop = stops[index]
        results[index] = await stop_transaction(
            uow, stop.station_id, stop.request, authorization=stop.authorization
        )
    return [results[index] for index in range(len(stops))]


def _end_grouped(
    uow: UnitOfWork, writes: _MeterWrites, stop: StationStop, stopping: _Stopping
) -> StopOutcome:
    """``stop_transaction``'s ending of a session, its readings as rows for ``writes`` and
    its billing left to ``finish_billings``.
    """
    session, request = stopping.session, stop.request
    session.heard_at = request.received_at
    flags = _add_readings(
        writes,
        stop.station_id,
        stopping.evse_number,
        _stop_readings(request),
        request.received_at,
        session,
        stopping.power_w,
    )
    for flag in sorted(flags):
        _flag(session, flag)
    _end_session(uow, session, request)
    return StopOutcome(
        known=True,
        authorization=stop.authorization,
        session_id=session.id,
        flags=tuple(sorted(flags)),
    )


async def _store_stop_readings(
    uow: UnitOfWork, station_id: str, session: Session, request: StopRequest
) -> set[str]:
    """Bill a stop's transaction data and its meterStop as the session's final reading."""
    session.heard_at = request.received_at
    evse = await evse_of(uow, session)
    evse_number = evse.ocpp_evse_id if evse is not None and evse.ocpp_evse_id else 0
    return await _store_meter_values(
        uow,
        station_id,
        evse_number,
        _stop_readings(request),
        request.received_at,
        session,
        max_power_w(evse),
    )


def _stop_readings(request: StopRequest) -> tuple[MeterValue, ...]:
    """A stop's transaction data, and its meterStop as the session's final reading."""
    if request.meter_stop_wh is None:
        return request.meter_values
    final = Sample(
        ENERGY_REGISTER,
        request.meter_stop_wh,
        request.meter_stop_wh,
        unit="Wh",
        context="Transaction.End",
    )
    return (*request.meter_values, MeterValue(request.station_time, (final,)))


LATE_STOP = "late_stop"
"""Flag of a session closed by rule or by hand whose station's own stop came later."""


def _closed_by_us(session: Session) -> bool:
    return "closed_by_rule" in session.flags or "closed_by_operator" in session.flags


async def finish_billing(
    uow: UnitOfWork, session: Session, *, now: datetime, correction: str | None = None
) -> None:
    """Price an ended session for good and issue its CDR (or correct the standing one).

    Never raises for a pricing problem: the station's stop must be answered whatever
    happens here. The session is flagged and the CDR sweep issues the CDR later.
    """
    if correction is None or session.cdr_id is None:
        await finish_billings(uow, [(session, now)])
        return
    bill = await refresh_running_cost(uow, session)
    if bill is None or session.status != "COMPLETED":
        return
    try:
        await credit_cdr(uow, session.cdr_id, reason=correction, now=now, reissue=True)
    except Exception:
        _cdr_failed(session)


async def finish_billings(uow: UnitOfWork, ended: Sequence[tuple[Session, datetime]]) -> None:
    """``finish_billing`` without a correction, for many sessions (each with the time to
    issue its CDR at): priced together, their CDRs issued together.
    """
    bills = await refresh_running_costs(uow, [session for session, _ in ended])
    await _issue_cdrs(
        uow,
        [
            FinalBill(session, bill, now)
            for session, now in ended
            if (bill := bills[session.id]) is not None
        ],
    )


async def _issue_cdrs(uow: UnitOfWork, finals: list[FinalBill]) -> None:
    """``issue_cdrs``; if it fails, each CDR alone, so only the session at fault is flagged."""
    if not finals:
        return
    try:
        await issue_cdrs(uow, finals)
    except Exception:
        if len(finals) == 1:
            _cdr_failed(finals[0].session)
            return
        for final in finals:
            await _issue_cdrs(uow, [final])


def _cdr_failed(session: Session) -> None:
    logging.getLogger("cpms.cdrs").exception("session %s: CDR not issued", session.id)
    _flag(session, "pricing_failed")


async def _late_stop(
    uow: UnitOfWork,
    station_id: str,
    session: Session,
    request: StopRequest,
    authorization: Authorization | None,
) -> StopOutcome:
    """The station's own stop for a session we closed: bill what it reports, correct the CDR."""
    flags = await _store_stop_readings(uow, station_id, session, request)
    ended_at, _ = trusted_time(request.station_time, request.received_at)
    assert session.end_date_time is not None
    session.end_date_time = max(session.end_date_time, ended_at, session.last_meter_at or ended_at)
    session.meter_stop_wh = request.meter_stop_wh
    session.stop_reason = (request.reason or "Local")[:32]
    _flag(session, LATE_STOP)
    session.last_updated = request.received_at
    log_station_event(
        uow,
        station_id,
        "late_stop",
        f"transaction {session.transaction_id} stopped by the station after it was closed; "
        "its CDR is credited and issued again",
        occurred_at=request.station_time,
        received_at=request.received_at,
        details={"session_id": session.id, "meter_stop_wh": str(request.meter_stop_wh)},
    )
    uow.record(
        SessionUpdated(
            occurred_at=request.received_at, session_id=session.id, status=session.status
        )
    )
    await finish_billing(
        uow,
        session,
        now=request.received_at,
        correction="the station's own stop arrived after the session was closed without it",
    )
    return StopOutcome(
        known=True, authorization=authorization, session_id=session.id, flags=tuple(sorted(flags))
    )
