"""Closing sessions no station will ever stop (FIELD-NOTES 6), by rule or by the operator.

A station replaced, reset or wiped never sends the StopTransaction of its open session. A
session with no news from its station for ``stuck_session_after`` is closed by rule:

- it ends at its **last trusted reading** (``Session.last_meter_at``: the newest meter
  value billing accepted), not at the time we gave up, so nobody pays for silence;
- it is COMPLETED, flagged ``closed_by_rule`` (or ``closed_by_operator``), its stop reason
  says so, the station log records it, and its CDR's remark says how it ended;
- if the station's own stop turns up later, ``charging`` bills what it reports and corrects
  the CDR with a credit CDR and a new one.

``sweep`` is what the server runs periodically: close stuck sessions, then issue any CDR a
pricing failure left unissued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from cpms.cdrs import issue_missing_cdrs
from cpms.charging import finish_billing
from cpms.errors import Conflict, NotFound
from cpms.events import SessionEnded
from cpms.model import Session
from cpms.station_lifecycle import log_station_event
from cpms.unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = ["OPEN_STATUSES", "SweepReport", "close_session", "close_stuck_sessions", "sweep"]

log = logging.getLogger("cpms.sessions")

OPEN_STATUSES = ("ACTIVE", "PENDING", "RESERVATION")
"""Statuses of a session that has not ended."""


async def close_session(
    uow: UnitOfWork, session_id: str, *, now: datetime, by_rule: bool, note: str | None = None
) -> Session:
    """Close an open session at its last trusted reading and issue its CDR.

    Raise ``NotFound`` for an unknown id and ``Conflict`` for a session that has ended.
    """
    session = await uow.session.get(Session, session_id)
    if session is None:
        raise NotFound("session", session_id)
    if session.end_date_time is not None or session.status not in OPEN_STATUSES:
        raise Conflict(f"session {session_id} has ended already ({session.status})")
    ended_at = max(session.start_date_time, session.last_meter_at or session.start_date_time)
    flag = "closed_by_rule" if by_rule else "closed_by_operator"
    session.flags = [*session.flags, flag]
    session.end_date_time = ended_at
    session.stop_reason = "ClosedByRule" if by_rule else "ClosedByOperator"
    # A session that never got past PENDING was never authorized to charge: not billed.
    session.status = "INVALID" if session.status == "PENDING" else "COMPLETED"
    session.last_updated = now
    silent_for = now - (session.heard_at or session.last_updated)
    summary = (
        f"session {session.id} (transaction {session.transaction_id}) closed "
        + ("by rule" if by_rule else "by the operator")
        + f" after {_duration(silent_for)} without news; ends at its last trusted reading"
    )
    log_station_event(
        uow,
        session.station_id,
        "session_closed",
        summary[:255],
        received_at=now,
        details={
            "session_id": session.id,
            "ended_at": ended_at.isoformat(),
            "energy_wh": str(session.energy_wh),
            "note": note,
        },
    )
    uow.record(SessionEnded(occurred_at=now, session_id=session.id, status=session.status))
    await finish_billing(uow, session, now=now)
    log.warning("%s", summary)
    return session


def _duration(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{delta.total_seconds():.0f} s"


async def close_stuck_sessions(
    uow_factory: UnitOfWorkFactory, *, now: datetime, after: timedelta, limit: int = 100
) -> list[str]:
    """Close every open session without news for ``after``; return their ids.

    Each session is closed in its own transaction, so one that fails (or that another node
    closed first) does not hold up the others.
    """
    async with uow_factory() as uow:
        heard = func.coalesce(Session.heard_at, Session.last_updated)
        ids = list(
            await uow.session.scalars(
                select(Session.id)
                .where(Session.status.in_(OPEN_STATUSES), Session.end_date_time.is_(None))
                .where(heard < now - after)
                .order_by(heard)
                .limit(limit)
            )
        )
    closed = []
    for session_id in ids:
        try:
            async with uow_factory() as uow:
                await close_session(uow, session_id, now=now, by_rule=True)
                await uow.commit()
        except Conflict:
            continue  # it ended meanwhile: its station spoke, or another node closed it
        except Exception:
            log.exception("session %s: closing by rule failed", session_id)
            continue
        closed.append(session_id)
    return closed


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did."""

    closed: list[str] = field(default_factory=list)
    cdrs_issued: list[str] = field(default_factory=list)


async def sweep(
    uow_factory: UnitOfWorkFactory, *, now: datetime, stuck_after: timedelta | None
) -> SweepReport:
    """Close stuck sessions (unless ``stuck_after`` is ``None``), then issue missing CDRs."""
    closed = (
        await close_stuck_sessions(uow_factory, now=now, after=stuck_after)
        if stuck_after is not None
        else []
    )
    async with uow_factory() as uow:
        issued = await issue_missing_cdrs(uow, now=now)
        await uow.commit()
    return SweepReport(closed, issued)
