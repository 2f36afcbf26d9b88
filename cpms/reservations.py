"""Reservations as sessions: the OCPI RESERVATION status, and what a reservation costs.

OCPI 2.2.1: a reservation the station accepted becomes a Session with status RESERVATION.
When the same reservation starts charging, that session becomes ACTIVE (``charging``
turns it over, keeping its id) and the reserved time is priced before the charging, with
the tariff's ``reservation: RESERVATION`` elements. A reservation that ends unused is
COMPLETED with a reservation-only CDR: ``RESERVATION_EXPIRES`` elements when it expired,
``RESERVATION`` elements when it was cancelled.

Who makes reservations (the operator's ReserveNow command, OCPI's ReserveNow through
``cpms.remote_control``) is not this module's business; they call these functions once the
station has accepted. A partner's reservation is found by the partner's own id
(``live_reservation``), which is never sent to a station. ``expire_reservations`` ends the
reservations whose time ran out unused (a 1.6 station drops them silently).

A reservation the CPO side ends, ``end_reported_reservation`` with ``expired=False`` (the
2.0.1 station reports it Removed, or accepted the operator's CancelReservation:
``cpms.commands``, both OCPP versions), is told to the eMSP that made it: CommandResult
CANCELED_RESERVATION POSTed to its ReserveNow's ``response_url`` (OCPI 2.2.1 13.1,
"Reservation canceled by the CPO"; CHECKLIST 7.4), queued behind that ReserveNow's own
result. Not when the eMSP cancels it itself (CANCEL_RESERVATION ends it through
``end_reservation``, and a cancellation of it still pending keeps the station's report
quiet), and not on expiry: the eMSP set ``expiry_date`` and knows it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from cpms.charging import finish_billing
from cpms.documents import format_datetime
from cpms.errors import Conflict, NotFound
from cpms.events import SessionEnded, SessionStarted
from cpms.model import ChargingStation, Evse, Location, OcpiCommand, Reservation, Session
from cpms.pages import Page, fetch_page
from cpms.push_queue import queue_callback
from cpms.session_pricing import (
    DEFAULT_CURRENCY,
    cdr_location_of,
    record_billed_reading,
    seal_session,
)
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "EXPIRED",
    "LIVE",
    "end_reported_reservation",
    "end_reservation",
    "expire_reservations",
    "list_reservations",
    "live_reservation",
    "open_reservation_session",
    "reservation_view",
    "tell_cancelled",
]

EXPIRED = "reservation_expired"
"""Flag of a reservation session that ended unused because its time ran out."""
LIVE = ("REQUESTED", "ACCEPTED")
"""Statuses of a reservation that still holds (or may soon hold) an EVSE."""


async def live_reservation(
    uow: UnitOfWork, partner_id: int, external_id: str, *, location_id: str | None = None
) -> Reservation | None:
    """Return a partner's live reservation with the partner's own id (newest first).

    Ids are OCPI CiStrings, compared case-insensitively; ``location_id`` narrows the search
    (OCPI: the same id at the same location replaces a reservation).
    """
    query = (
        select(Reservation)
        .where(
            Reservation.partner_id == partner_id,
            func.lower(Reservation.external_id) == external_id.lower(),
            Reservation.status.in_(LIVE),
        )
        .order_by(Reservation.created_at.desc(), Reservation.id.desc())
        .limit(1)
    )
    if location_id is not None:
        query = query.where(Reservation.location_id == location_id)
    return await uow.session.scalar(query)


async def list_reservations(
    uow: UnitOfWork,
    *,
    station_id: str | None = None,
    active: bool | None = None,
    now: datetime,
    offset: int = 0,
    limit: int | None = None,
) -> Page[Reservation]:
    """Reservations oldest first (by id, so pages stay put), one page.

    ``active=True`` keeps those that still hold an EVSE: live (``LIVE``) and not yet past
    their expiry at ``now`` (the sweep ending them runs only every so often);
    ``active=False`` keeps the others.
    """
    query = select(Reservation).order_by(Reservation.id)
    if station_id is not None:
        query = query.where(Reservation.station_id == station_id)
    holding = Reservation.status.in_(LIVE) & (Reservation.expiry_date >= now)
    if active is True:
        query = query.where(holding)
    elif active is False:
        query = query.where(~holding)
    return await fetch_page(uow.session, query, offset=offset, limit=limit)


_TOKEN_FIELDS = ("country_code", "party_id", "uid", "type", "contract_id")
"""What identifies a reservation's token; the rest of the eMSP's Token is not ours to show."""


def reservation_view(reservation: Reservation, now: datetime) -> dict[str, Any]:
    """Return a reservation as the operator sees it; ``id`` is what CancelReservation takes."""
    token = reservation.token
    return {
        "id": reservation.id,
        "station_id": reservation.station_id,
        "location_id": reservation.location_id,
        "evse_uid": reservation.evse_uid,
        "connector_id": reservation.connector_id,
        "token": {name: token[name] for name in _TOKEN_FIELDS if name in token},
        "expiry_date": format_datetime(reservation.expiry_date),
        "status": reservation.status,
        "active": reservation.status in LIVE and reservation.expiry_date >= now,
        "from_emsp": reservation.partner_id is not None,
        "partner_id": reservation.partner_id,
        "emsp_reservation_id": reservation.external_id,
        "created_at": format_datetime(reservation.created_at),
    }


async def expire_reservations(uow: UnitOfWork, *, now: datetime) -> int:
    """End every live reservation whose expiry passed unused; returns how many (no commit).

    An accepted one gets its session COMPLETED with a reservation-only CDR
    (``end_reservation(expired=True)``); one the station never accepted is just EXPIRED.
    """
    expired = list(
        await uow.session.scalars(
            select(Reservation.id).where(
                Reservation.status.in_(LIVE), Reservation.expiry_date < now
            )
        )
    )
    for reservation_id in expired:
        await end_reservation(uow, reservation_id, now=now, expired=True)
    return len(expired)


async def open_reservation_session(
    uow: UnitOfWork, reservation_id: int, *, now: datetime, country_code: str, party_id: str
) -> Session:
    """Open the RESERVATION session of an accepted reservation (once; again returns it)."""
    reservation = await uow.session.get(Reservation, reservation_id)
    if reservation is None:
        raise NotFound("reservation", reservation_id)
    existing = await uow.session.scalar(
        select(Session).where(Session.reservation_id == reservation_id)
    )
    if existing is not None:
        return existing
    if reservation.station_id is None:
        raise Conflict(f"reservation {reservation_id} is for no station yet")
    station = await uow.session.get(ChargingStation, reservation.station_id)
    location = await uow.session.get(Location, reservation.location_id)
    evse = (
        await uow.session.get(Evse, reservation.evse_uid, options=[selectinload(Evse.connectors)])
        if reservation.evse_uid
        else None
    )
    if station is None or location is None:
        raise NotFound("station", reservation.station_id)
    reservation.status = "ACCEPTED"
    session = Session(
        id=str(uuid.uuid4()),
        country_code=country_code,
        party_id=party_id,
        station_id=station.id,
        location_id=location.id,
        evse_uid=reservation.evse_uid,
        connector_id=reservation.connector_id,
        status="RESERVATION",
        start_date_time=reservation.created_at,
        cdr_token=reservation.token,
        auth_method="COMMAND",
        authorization_reference=reservation.authorization_reference,
        currency=DEFAULT_CURRENCY,
        partner_id=reservation.partner_id,
        reservation_id=reservation.id,
        flags=[],
        energy_wh=Decimal(0),
        heard_at=now,
        last_updated=now,
    )
    if evse is not None:
        connector = next(
            (c for c in evse.connectors if c.id == reservation.connector_id),
            evse.connectors[0] if evse.connectors else None,
        )
        await seal_session(uow, session, location, evse, connector)
    else:  # "any EVSE of the location": no connector, so no tariff to choose from
        session.tariffs, session.time_zone = [], location.time_zone
        session.cdr_location = cdr_location_of(location, None, None)
    uow.session.add(session)
    uow.record(SessionStarted(occurred_at=now, session_id=session.id, status=session.status))
    return session


async def end_reservation(
    uow: UnitOfWork, reservation_id: int, *, now: datetime, expired: bool
) -> Session | None:
    """End a reservation nobody charged on: its session COMPLETED, its cost on a CDR.

    Returns ``None`` if the reservation had no session or its session is charging.
    """
    reservation = await uow.session.get(Reservation, reservation_id)
    if reservation is None:
        raise NotFound("reservation", reservation_id)
    reservation.status = "EXPIRED" if expired else "CANCELLED"
    session = await uow.session.scalar(
        select(Session).where(
            Session.reservation_id == reservation_id, Session.status == "RESERVATION"
        )
    )
    if session is None:
        return None
    ended_at = max(session.start_date_time, min(now, reservation.expiry_date) if expired else now)
    session.end_date_time = ended_at
    session.status = "COMPLETED"
    session.stop_reason = "ReservationExpired" if expired else "ReservationCancelled"
    if expired:
        session.flags = [*session.flags, EXPIRED]
    session.last_updated = now
    record_billed_reading(uow, session, ended_at)
    uow.record(SessionEnded(occurred_at=now, session_id=session.id, status=session.status))
    await finish_billing(uow, session, now=now)
    return session


async def end_reported_reservation(
    uow: UnitOfWork,
    station_id: str,
    reservation_id: int,
    *,
    now: datetime,
    expired: bool,
    why: str = "the charging station removed the reservation",
) -> Reservation | None:
    """End a live reservation of ``station_id`` that the station says it no longer holds.

    For OCPP 2.0.1 ReservationStatusUpdate: Expired ends it as expired, Removed (the station
    dropped it, say because the EVSE became unavailable) as cancelled, both through
    ``end_reservation``; and for a CancelReservation of the operator the station accepted
    (``expired=False``). A cancelled reservation of an eMSP is told to it as
    CANCELED_RESERVATION (``tell_cancelled``, ``why`` its message). Returns the reservation
    ended; ``None``, and nothing changes, when the id names no live reservation of this
    station (unknown, another station's, or ended already, e.g. by ``expire_reservations``).
    No commit.
    """
    if not 0 < reservation_id < 2**63:  # a station's number that cannot be one of our ids
        return None
    reservation = await uow.session.get(Reservation, reservation_id)
    if reservation is None or reservation.station_id != station_id:
        return None
    if reservation.status not in LIVE:
        return None
    held = reservation.status == "ACCEPTED"  # the eMSP was told it holds
    await end_reservation(uow, reservation_id, now=now, expired=expired)
    if held and not expired:
        await tell_cancelled(uow, reservation, why)
    return reservation


async def tell_cancelled(uow: UnitOfWork, reservation: Reservation, why: str) -> bool:
    """Queue CANCELED_RESERVATION for the eMSP that made ``reservation``; whether queued.

    Nothing for a reservation of no eMSP (or without a ``response_url``), nor while that
    eMSP's own CANCEL_RESERVATION of it is on its way to the station: the eMSP ended it,
    and hears of it as that command's result. The result goes to the ``response_url`` of
    the ReserveNow, in order behind that ReserveNow's own result (the same push object).
    No commit.
    """
    if reservation.partner_id is None or not reservation.response_url:
        return False
    commands = select(OcpiCommand).where(
        OcpiCommand.partner_id == reservation.partner_id,
        OcpiCommand.station_id == reservation.station_id,
    )
    external_id = (reservation.external_id or "").lower()
    cancelling = await uow.session.scalars(
        commands.where(OcpiCommand.command == "CANCEL_RESERVATION", OcpiCommand.state == "PENDING")
    )
    if any(str(c.request.get("reservation_id", "")).lower() == external_id for c in cancelling):
        return False
    reserve = await uow.session.scalar(
        commands.where(
            OcpiCommand.command == "RESERVE_NOW",
            OcpiCommand.response_url == reservation.response_url,
        )
        .order_by(OcpiCommand.created_at.desc())
        .limit(1)
    )
    queue_callback(
        uow,
        partner_id=reservation.partner_id,
        url=reservation.response_url,
        body={
            "result": "CANCELED_RESERVATION",
            "message": [{"language": "en", "text": why[:512]}],
        },
        object_key=f"command:{reserve.id}" if reserve else f"reservation:{reservation.id}",
    )
    return True
