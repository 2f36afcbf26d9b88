"""Charging sessions as the operator sees them: list and read them, close a stuck one by hand.

Queries, plus ``close_by_operator``, which is ``session_closing.close_session`` for a person
(flag ``closed_by_operator``) returning the session as stored afterwards. A session is loaded
with its charging periods in one extra query per page (``selectinload``), never one per
session. Every function takes an entered unit of work and never commits; the operator's
adapters commit inside ``lost_race_is_conflict``, because two people (or a person and the
sweep) may act on one session or CDR at once and the database's unique keys decide who was
first.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from cpms.errors import Conflict, InvalidRequest, NotFound
from cpms.model import Session
from cpms.pages import Page, fetch_page
from cpms.session_closing import close_session
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "SESSION_STATUSES",
    "SessionFilter",
    "close_by_operator",
    "get_session",
    "list_sessions",
    "lost_race_is_conflict",
]

SESSION_STATUSES = ("ACTIVE", "COMPLETED", "INVALID", "PENDING", "RESERVATION")
"""OCPI 2.2.1 SessionStatus values."""
_FLAG = re.compile(r"[a-z][a-z0-9_]{0,47}")


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """What ``list_sessions`` selects; every field narrows the list.

    ``date_from`` (inclusive) and ``date_to`` (exclusive) bound ``last_updated``, as OCPI's
    own Sessions module does; ``flag`` keeps sessions carrying that flag
    (``closed_by_rule``, ``meter_jump``, ...).
    """

    status: str | None = None
    station_id: str | None = None
    location_id: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    flag: str | None = None

    def check(self) -> None:
        """Raise ``InvalidRequest`` naming the field whose value cannot select anything."""
        if self.status is not None and self.status not in SESSION_STATUSES:
            raise InvalidRequest(
                f"status must be one of {', '.join(SESSION_STATUSES)}, not {self.status!r}"
            )
        if self.flag is not None and not _FLAG.fullmatch(self.flag):
            raise InvalidRequest(
                f"flag must be a flag name like closed_by_rule (a-z, 0-9, _), not {self.flag!r}"
            )


def _with_periods() -> Any:
    return selectinload(Session.charging_periods)


async def list_sessions(
    uow: UnitOfWork,
    where: SessionFilter = SessionFilter(),
    *,
    offset: int = 0,
    limit: int | None = None,
) -> Page[Session]:
    """Sessions oldest first (start, then id), with their charging periods, one page.

    Ordered by start rather than ``last_updated``: a running session is updated by every
    reading, and pages must not shift under an operator paging through them.
    """
    where.check()
    query = select(Session).options(_with_periods()).order_by(Session.start_date_time, Session.id)
    if where.status is not None:
        query = query.where(Session.status == where.status)
    if where.station_id is not None:
        query = query.where(Session.station_id == where.station_id)
    if where.location_id is not None:
        query = query.where(Session.location_id == where.location_id)
    if where.date_from is not None:
        query = query.where(Session.last_updated >= where.date_from)
    if where.date_to is not None:
        query = query.where(Session.last_updated < where.date_to)
    if where.flag is not None:
        # Flags are a JSON list of names; its text holds each one in quotes on both engines.
        text = cast(Session.flags, String)
        query = query.where(text.contains(f'"{where.flag}"', autoescape=True))
    return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def get_session(uow: UnitOfWork, session_id: str) -> Session:
    """The session ``session_id`` with its charging periods as stored; raise ``NotFound``."""
    session = await uow.session.scalar(
        select(Session)
        .where(Session.id == session_id)
        .options(_with_periods())
        # Billing rewrites the periods with plain statements: reload whatever is held.
        .execution_options(populate_existing=True)
    )
    if session is None:
        raise NotFound("session", session_id)
    return session


async def close_by_operator(
    uow: UnitOfWork, session_id: str, *, now: datetime, note: str | None = None
) -> Session:
    """Close an open session by hand, issue its CDR, and return it with its new periods.

    Raise ``NotFound`` for an unknown id and ``Conflict`` for a session that has ended. The
    caller commits.
    """
    await close_session(uow, session_id, now=now, by_rule=False, note=note)
    return await get_session(uow, session_id)


@asynccontextmanager
async def lost_race_is_conflict(conflict: str) -> AsyncIterator[None]:
    """Raise ``Conflict(conflict)`` for a unique key another transaction took first.

    A CDR's key (``credit/<id>``, ``<session>/<n>``) is unique, so of two credits of one CDR,
    or two closes of one session, racing past their checks, the second fails at its flush or
    commit: nothing of it is stored, and the caller is told it lost, not that something broke.
    Put it around the work and the commit; the unit of work rolls back as it always does.
    """
    try:
        yield
    except IntegrityError:
        raise Conflict(conflict) from None
