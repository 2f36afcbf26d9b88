"""Charging stations: create, list, change and retire them, and admit them when they connect.

Owns the station records and the admission decision (see ``cpms.admission``). Knows no OCPP:
the gateway calls ``admit_station`` during the websocket handshake and ``mark_connected`` /
``mark_disconnected`` around the connection.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from cpms.admission import Admission, AdmissionPolicy, Verdict
from cpms.errors import Conflict, InvalidRequest
from cpms.events import StationChanged, StationRegistered
from cpms.group_commit import Work
from cpms.locations import DefaultLocation, ensure_default_location
from cpms.model import ChargingStation, Evse, Location, utcnow
from cpms.pages import Page, fetch_page
from cpms.passwords import hash_password, verify_password
from cpms.station_lifecycle import load_stations, record_offline, record_online
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "StationChanges",
    "StationReader",
    "admit_station",
    "create_station",
    "find_stations",
    "get_station",
    "list_stations",
    "mark_connected",
    "mark_disconnected",
    "retire_station",
    "update_station",
    "valid_station_id",
]

# OCPP 2.0.1 identity: string(48) of URL-safe characters, no ':' (it splits Basic auth).
_STATION_ID = re.compile(r"[A-Za-z0-9._~*@+\-]{1,48}")
# OCPP 2.0.1 BasicAuthPassword is 16 to 40 characters; 1.6 stations are often laxer.
_PASSWORD_LENGTHS = range(8, 41)


def valid_station_id(station_id: str) -> bool:
    """Tell whether ``station_id`` can be a station identity in ``/ocpp/{id}``."""
    return _STATION_ID.fullmatch(station_id) is not None


def _check_password(password: str) -> None:
    if len(password) not in _PASSWORD_LENGTHS or not password.isprintable():
        raise InvalidRequest("password must be 8 to 40 printable characters")


@dataclass(frozen=True, slots=True)
class StationChanges:
    """What an operator may change on a station; ``None`` leaves a value alone."""

    location_id: str | None = None
    password: str | None = None
    clear_password: bool = False
    lenient: bool | None = None


async def create_station(
    uow: UnitOfWork,
    station_id: str,
    *,
    location_id: str,
    password: str | None = None,
    lenient: bool = False,
) -> ChargingStation:
    """Create a station under a location; its password is stored hashed."""
    if not valid_station_id(station_id):
        raise InvalidRequest(
            f"station id {station_id!r} must be 1 to 48 of A-Z a-z 0-9 . _ ~ * @ + -"
        )
    if password is not None:
        _check_password(password)
    now = utcnow()
    async with uow:
        if await uow.session.get(ChargingStation, station_id) is not None:
            raise Conflict(f"station {station_id!r} exists already")
        await uow.get(Location, location_id, kind="location")
        station = ChargingStation(
            id=station_id,
            location_id=location_id,
            password_hash=hash_password(password) if password else None,
            lenient=lenient,
            registered_by="operator",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(station)
        uow.record(
            StationRegistered(
                occurred_at=now, station_id=station_id, location_id=location_id,
                registered_by="operator",
            )
        )  # fmt: skip
        await uow.commit()
        return station


async def list_stations(
    uow: UnitOfWork, *, offset: int = 0, limit: int | None = None, location_id: str | None = None
) -> Page[ChargingStation]:
    """List stations by id, optionally of one location."""
    query = select(ChargingStation).order_by(ChargingStation.id)
    if location_id is not None:
        query = query.where(ChargingStation.location_id == location_id)
    async with uow:
        return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def get_station(uow: UnitOfWork, station_id: str) -> ChargingStation:
    """Return one station, or raise ``NotFound``."""
    async with uow:
        return await uow.get(ChargingStation, station_id, kind="station")


async def update_station(
    uow: UnitOfWork, station_id: str, changes: StationChanges
) -> ChargingStation:
    """Change a station's location, password or leniency."""
    if changes.password is not None:
        _check_password(changes.password)
    now = utcnow()
    async with uow:
        station = await uow.get(ChargingStation, station_id, kind="station")
        changed: list[str] = []
        if changes.location_id is not None and changes.location_id != station.location_id:
            await uow.get(Location, changes.location_id, kind="location")
            wired = await uow.session.scalar(
                select(Evse.uid).where(Evse.station_id == station_id, Evse.status != "REMOVED")
            )
            if wired is not None:
                raise Conflict(
                    f"EVSE {wired!r} of station {station_id!r} is at its current location: "
                    "retire or unwire its EVSEs before moving it"
                )
            station.location_id = changes.location_id
            changed.append("location_id")
        if changes.password is not None:
            station.password_hash = hash_password(changes.password)
            changed.append("password")
        elif changes.clear_password:
            station.password_hash = None
            changed.append("password")
        if changes.lenient is not None and changes.lenient != station.lenient:
            station.lenient = changes.lenient
            changed.append("lenient")
        if changed:
            station.updated_at = now
            uow.record(
                StationChanged(occurred_at=now, station_id=station_id, fields=tuple(changed))
            )
        await uow.commit()
        return station


async def retire_station(uow: UnitOfWork, station_id: str) -> ChargingStation:
    """Retire a station: it may no longer connect and its EVSEs become REMOVED."""
    now = utcnow()
    async with uow:
        station = await uow.get(ChargingStation, station_id, kind="station")
        if station.retired_at is None:
            station.retired_at = now
            station.updated_at = now
            evses = await uow.session.scalars(
                select(Evse)
                .where(Evse.station_id == station_id, Evse.status != "REMOVED")
                .options(selectinload(Evse.location))
            )
            for evse in evses:
                evse.status = "REMOVED"
                evse.touch(now)
            uow.record(StationChanged(occurred_at=now, station_id=station_id, retired=True))
        await uow.commit()
        return station


_ADMISSION_ATTEMPTS = 3

StationReader = Callable[[str], Awaitable[ChargingStation | None]]
"""Reads one station by id, None if there is none (``admit_station``'s ``read``)."""


async def find_stations(
    uow: UnitOfWork, station_ids: Sequence[str]
) -> list[ChargingStation | None]:
    """The stations of these ids, None where there is none, read with one SELECT.

    A ``GroupWork`` for ``cpms.group_commit.GroupReader`` (admission during a handshake).
    """
    found = await load_stations(uow, set(station_ids))
    return [found.get(station_id) for station_id in station_ids]


async def admit_station(
    uow: UnitOfWork,
    station_id: str,
    password: str | None,
    *,
    policy: AdmissionPolicy,
    default_location: DefaultLocation,
    write: Callable[[Work[Admission]], Awaitable[Admission]] | None = None,
    read: StationReader | None = None,
) -> Admission:
    """Decide whether a connecting station may open its OCPP connection.

    A known station is decided by a read: by ``read`` (the node passes its group reader's
    ``run_grouped`` of ``find_stations``, so a reconnect storm's handshakes read their
    stations together); None: in a unit of work of its own. A station registered on its
    first connection is written by ``write`` (the node passes its group committer's
    ``run``: on SQLite a write of its own would wait for the write lock behind the group
    commits of every connected station, and under a storm of first connections time out);
    None: in a transaction of its own.
    """
    for attempt in range(1, _ADMISSION_ATTEMPTS + 1):
        try:
            return await _admit_once(
                uow, station_id, password, policy, default_location, write, read
            )
        except IntegrityError:
            # First connections of new stations raced (a reconnect storm under open admission,
            # several nodes) to create the default location or this very station; the
            # winner's rows are committed, so the next attempt finds them.
            if attempt == _ADMISSION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _admit_once(
    uow: UnitOfWork,
    station_id: str,
    password: str | None,
    policy: AdmissionPolicy,
    default_location: DefaultLocation,
    write: Callable[[Work[Admission]], Awaitable[Admission]] | None,
    read: StationReader | None,
) -> Admission:
    if read is not None:
        station = await read(station_id)
    else:
        async with uow:
            station = await uow.session.get(ChargingStation, station_id)
    if station is not None:
        return _admission_of(station, password)
    if policy is AdmissionPolicy.KNOWN or not valid_station_id(station_id):
        return Admission(Verdict.UNKNOWN_STATION, station_id, "unknown station id")
    registration = partial(
        _register,
        station_id=station_id,
        password=password,
        approved=policy is AdmissionPolicy.OPEN,
        default_location=default_location,
    )
    if write is not None:
        return await write(registration)
    async with uow:
        admission = await registration(uow)
        await uow.commit()
        return admission


def _admission_of(station: ChargingStation, password: str | None) -> Admission:
    """The verdict on a station we know."""
    if station.retired:
        return Admission(Verdict.UNKNOWN_STATION, station.id, "station is retired")
    if station.password_hash is None:
        return Admission(Verdict.ACCEPTED, station.id)
    if password is not None and verify_password(password, station.password_hash):
        return Admission(Verdict.ACCEPTED, station.id)
    return Admission(Verdict.BAD_CREDENTIALS, station.id, "wrong or missing password")


async def _register(
    uow: UnitOfWork,
    *,
    station_id: str,
    password: str | None,
    approved: bool,
    default_location: DefaultLocation,
) -> Admission:
    """Register a station on its first connection (work: the caller commits)."""
    station = await uow.session.get(ChargingStation, station_id)
    if station is not None:
        # Registered since the read: another connection of this id, written before this one.
        return _admission_of(station, password)
    now = utcnow()
    location = await ensure_default_location(uow, default_location)
    uow.session.add(
        ChargingStation(
            id=station_id, location_id=location.id, registered_by="admission",
            approved=approved, created_at=now, updated_at=now,
        )
    )  # fmt: skip
    uow.record(
        StationRegistered(
            occurred_at=now, station_id=station_id, location_id=location.id,
            registered_by="admission",
        )
    )  # fmt: skip
    return Admission(Verdict.ACCEPTED, station_id, "registered on connect", registered=True)


async def mark_connected(
    uow: UnitOfWork, station_id: str, *, ocpp_version: str, node: str
) -> ChargingStation:
    """Record that a station's connection is open on ``node``; return the station."""
    async with uow:
        station = await record_online(uow, station_id, ocpp_version=ocpp_version, node=node)
        await uow.commit()
        return station


async def mark_disconnected(
    uow: UnitOfWork, station_id: str, *, node: str, reason: str = "connection closed"
) -> None:
    """Record that a station's connection on ``node`` closed; its EVSEs become UNKNOWN.

    Does nothing if the station has meanwhile connected again (on this or another node):
    a replaced connection must not mark a live station offline.
    """
    async with uow:
        if await record_offline(uow, station_id, node=node, reason=reason):
            await uow.commit()
