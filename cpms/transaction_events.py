"""Transactions told as numbered events (OCPP 2.0.1 TransactionEvent), into the same sessions.

A 2.0.1 station names its own transaction and reports it as a series: Started, Updated...,
Ended, each with a ``seqNo``. The gateway turns each into a ``TransactionEventReport``; this
module applies it to the session through the same services 1.6 uses (``cpms.charging``), so
billing, CDRs, reservations and pushes are one code path for both versions.

The rules real stations make necessary (FIELD-NOTES 8 to 11):

- **Replays.** Each (station, transaction, seqNo) is applied once and kept in
  ``transaction_event``; the same event again is answered the same and changes nothing.
- **Any event may come first.** The first event heard of a transaction opens its session,
  whatever its type (a Started lost, or queued behind an Updated offline). A session opened
  before anyone presented a token (cable plugged in first) is PENDING until an event names one.
- **Order.** An ended session stays ended: a late Updated (lower seqNo) is stored, unbilled,
  and never resurrects it. A reading older than the newest moves nothing (``charging``). A
  Started heard after later events of its transaction brings the start reading they lacked: the
  session's start moves back to it and the energy from it to the first reading is billed.
- **Offline.** Events the station queued offline are applied alike, by their own timestamps;
  the session is flagged ``offline`` so an operator knows its timeline was replayed.

Like ``charging``, every function is work for ``GroupCommitter``: it takes an entered unit of
work and does not commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update

from cpms.authorization import Authorization, Operator
from cpms.charging import (
    POWER_MARGIN,
    STEP_SLACK_WH,
    MeterReport,
    MeterValue,
    StartRequest,
    StopRequest,
    energy_reading,
    evse_of,
    finish_billing,
    max_power_w,
    record_meter_values,
    session_of,
    start_transaction,
    stop_transaction,
)
from cpms.events import SessionStarted, SessionUpdated
from cpms.model import BilledReading, Session, TransactionEvent
from cpms.station_lifecycle import log_station_event, trusted_time
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "DEFAULT_EVSE",
    "TransactionEventOutcome",
    "TransactionEventReport",
    "record_transaction_event",
]

DEFAULT_EVSE = 1
"""The EVSE of a transaction whose events never name one (2.0.1 requires it once; some omit it)."""
_OFFLINE = "offline"
_LATE_START = "late_start"


@dataclass(frozen=True, slots=True)
class TransactionEventReport:
    """One TransactionEvent, in the core's words (readings already SI-normalised)."""

    event_type: str
    """Started, Updated or Ended."""
    transaction_id: str
    seq_no: int
    trigger_reason: str
    received_at: datetime
    station_time: datetime | None
    evse_number: int | None = None
    connector_number: int | None = None
    uid: str | None = None
    """The token presented with this event, if any."""
    charging_state: str | None = None
    stopped_reason: str | None = None
    offline: bool = False
    reservation_id: int | None = None
    meter_values: tuple[MeterValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionEventOutcome:
    """What an event did to its session, and what the station should be told."""

    session_id: str
    authorization: Authorization | None
    """The decision about the event's token (None when it carried none)."""
    replayed: bool = False
    ended: bool = False
    """Whether the session is over (by this event or before it)."""
    total_cost: Decimal | None = None
    """The session's cost including VAT so far (final once ended), when a tariff applies."""


async def record_transaction_event(
    uow: UnitOfWork,
    station_id: str,
    report: TransactionEventReport,
    *,
    authorization: Authorization | None,
    operator: Operator,
) -> TransactionEventOutcome:
    """Apply one TransactionEvent to its session; see the module docstring for the rules.

    ``authorization`` is the decision about the event's idToken (None when it carries none),
    made before this write, as for ``charging.start_transaction``.
    """
    session = await session_of(uow, station_id, report.transaction_id)
    if session is not None and await _seen(uow, station_id, report):
        return _outcome(session, authorization, replayed=True)

    if session is None:
        started = await start_transaction(
            uow,
            station_id,
            StartRequest(
                evse_number=report.evse_number or DEFAULT_EVSE,
                uid=report.uid,
                meter_start_wh=None,  # the event's own readings set the baseline below
                received_at=report.received_at,
                station_time=_start_time(report),
                connector_number=report.connector_number,
                reservation_id=report.reservation_id,
                transaction_id=report.transaction_id,
            ),
            authorization=authorization,
            operator=operator,
        )
        session = await uow.session.get(Session, started.session_id)
        assert session is not None  # flushed by start_transaction
    elif authorization is not None and session.status == "PENDING":
        _identify(uow, session, authorization, report.received_at)

    if report.offline and _OFFLINE not in session.flags:
        session.flags = [*session.flags, _OFFLINE]
    if report.event_type == "Started" and session.meter_start_wh is not None:
        await _late_start(uow, station_id, session, report)

    stopped = None
    if report.event_type == "Ended":
        # Also for a session already ended: one we closed by rule takes the station's own
        # end as a late stop (``charging``); a second Ended changes nothing.
        stopped = await stop_transaction(
            uow,
            station_id,
            StopRequest(
                transaction_id=report.transaction_id,
                received_at=report.received_at,
                station_time=report.station_time,
                reason=report.stopped_reason,
                meter_values=report.meter_values,
            ),
            authorization=None,  # the event's token is answered with the event, not the stop
        )
        session.meter_stop_wh = session.last_meter_wh
    if stopped is None or stopped.replayed:
        await record_meter_values(
            uow,
            station_id,
            MeterReport(
                evse_number=report.evse_number or await _evse_number(uow, session),
                received_at=report.received_at,
                meter_values=report.meter_values,
                transaction_id=report.transaction_id,
            ),
        )
    if session.meter_start_wh is None and (begin := _begin_reading(report)) is not None:
        session.meter_start_wh = begin[0]  # the first register heard is the start

    uow.session.add(
        TransactionEvent(
            station_id=station_id,
            transaction_id=report.transaction_id,
            seq_no=report.seq_no,
            session_id=session.id,
            event_type=report.event_type,
            trigger_reason=report.trigger_reason[:32],
            charging_state=report.charging_state,
            stopped_reason=report.stopped_reason,
            offline=report.offline,
            id_token=report.uid[:36] if report.uid is not None else None,
            occurred_at=report.station_time or report.received_at,
            received_at=report.received_at,
        )
    )
    return _outcome(session, authorization)


def _outcome(
    session: Session, authorization: Authorization | None, *, replayed: bool = False
) -> TransactionEventOutcome:
    return TransactionEventOutcome(
        session_id=session.id,
        authorization=authorization,
        replayed=replayed,
        ended=session.end_date_time is not None,
        total_cost=session.total_cost_incl_vat,
    )


async def _seen(uow: UnitOfWork, station_id: str, report: TransactionEventReport) -> bool:
    found = await uow.session.scalar(
        select(TransactionEvent.id).where(
            TransactionEvent.station_id == station_id,
            TransactionEvent.transaction_id == report.transaction_id,
            TransactionEvent.seq_no == report.seq_no,
        )
    )
    return found is not None


def _start_time(report: TransactionEventReport) -> datetime | None:
    """When the transaction began, as far as this event tells: its earliest timestamp."""
    moments = [m.station_time for m in report.meter_values if m.station_time is not None]
    if report.station_time is not None:
        moments.append(report.station_time)
    return min(moments, default=None)


async def _evse_number(uow: UnitOfWork, session: Session) -> int:
    evse = await evse_of(uow, session)
    return evse.ocpp_evse_id if evse is not None and evse.ocpp_evse_id else DEFAULT_EVSE


def _identify(
    uow: UnitOfWork, session: Session, authorization: Authorization, at: datetime
) -> None:
    """Give a PENDING session the token presented for it: from now on it is someone's."""
    session.cdr_token = authorization.cdr_token
    session.auth_method = authorization.auth_method
    session.authorization_reference = authorization.authorization_reference
    session.partner_id = authorization.partner_id
    session.status = "ACTIVE" if authorization.allowed else "INVALID"
    session.last_updated = at
    # For its eMSP the session starts existing now, so it is announced as started.
    uow.record(SessionStarted(occurred_at=at, session_id=session.id, status=session.status))


def _begin_reading(report: TransactionEventReport) -> tuple[Decimal, datetime | None] | None:
    """The earliest energy register reading of the event, with its station time."""
    readings = [
        (m.station_time, reading)
        for m in report.meter_values
        if (reading := energy_reading(m.samples)) is not None
    ]
    if not readings:
        return None
    at, reading = min(readings, key=lambda r: (r[0] is not None, r[0]))
    return reading, at


async def _late_start(
    uow: UnitOfWork, station_id: str, session: Session, report: TransactionEventReport
) -> None:
    """A Started heard after later events: bill from its start reading, start the session then.

    The session's baseline was the first reading heard (``meter_start_wh``); the energy from
    the true start reading to it is added to every point of the billing timeline, so periods
    and totals both count it, unless the step is unbelievable (then it is flagged, as any).
    """
    begin = _begin_reading(report)
    if begin is None:
        return
    reading, station_time = begin
    at, _ = trusted_time(station_time, report.received_at)
    assert session.meter_start_wh is not None
    if at >= session.start_date_time:
        return
    step = session.meter_start_wh - reading
    evse = await evse_of(uow, session)
    hours = Decimal((session.start_date_time - at).total_seconds()) / Decimal(3600)
    if step < 0 or step > max_power_w(evse) * POWER_MARGIN * hours + STEP_SLACK_WH:
        log_station_event(
            uow,
            station_id,
            "meter",
            f"transaction {session.transaction_id}: late start reading {reading} Wh not billed",
            occurred_at=station_time,
            received_at=report.received_at,
            details={"session_id": session.id, "baseline_wh": str(session.meter_start_wh)},
        )
        return
    await uow.session.execute(
        update(BilledReading)
        .where(BilledReading.session_id == session.id)
        .values(energy_wh=BilledReading.energy_wh + step)
    )
    uow.session.add(BilledReading(session_id=session.id, at=at, energy_wh=Decimal(0)))
    session.energy_wh += step
    session.meter_start_wh = reading
    session.start_date_time = at
    if _LATE_START not in session.flags:
        session.flags = [*session.flags, _LATE_START]
    uow.record(
        SessionUpdated(occurred_at=report.received_at, session_id=session.id, status=session.status)
    )
    if session.end_date_time is not None:
        await finish_billing(
            uow,
            session,
            now=report.received_at,
            correction="the transaction's start reading arrived after its end",
        )
