"""What stations report about themselves: boot, heartbeat, status, going offline, their log.

Protocol-neutral: the gateway turns OCPP BootNotification, Heartbeat and StatusNotification
(1.6 or 2.0.1) into the reports below and calls these functions. Each function is a piece of
work for ``GroupCommitter``: it takes an entered unit of work and does not commit, so a storm
of reports costs a few transactions, not one each.

Statuses arrive already in OCPI's EVSE vocabulary (AVAILABLE, CHARGING, ...): the OCPP to
OCPI mapping is the gateway's, written down once in ``ocpp_gateway.status_mapping``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from cpms.driver_sql import DriverStatement, padded, padded_size
from cpms.errors import NotFound
from cpms.events import (
    EvseChanged,
    EvseStatusChanged,
    StationChanged,
    StationConnectionChanged,
)
from cpms.model import ChargingStation, Connector, Evse, Location, StationEvent, utcnow
from cpms.pages import Page, fetch_page
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "BootDecision",
    "BootReport",
    "BootStatus",
    "ConnectionClosed",
    "ConnectionOpened",
    "StationBoot",
    "StationStatus",
    "StatusReport",
    "approve_station",
    "evse_for",
    "known_evses",
    "list_station_events",
    "load_station",
    "load_stations",
    "log_station_event",
    "record_boot",
    "record_boots",
    "record_offline",
    "record_offlines",
    "record_online",
    "record_onlines",
    "record_status",
    "record_statuses",
    "trusted_time",
]

log = logging.getLogger("cpms.stations")

EARLIEST_BELIEVABLE = datetime(2000, 1, 1, tzinfo=UTC)
"""Station timestamps before this are an unset clock (1970 after a power cut)."""
LATEST_AHEAD = timedelta(hours=1)
"""How far ahead of our clock a station's timestamp may be before we call it wrong."""


def trusted_time(station_time: datetime | None, received_at: datetime) -> tuple[datetime, bool]:
    """Return the time to believe for a station's timestamp, and whether it was replaced.

    A missing timestamp, one before 2000 or one more than an hour ahead of ``received_at``
    is replaced by ``received_at`` (FIELD-NOTES 11); the caller flags it.
    """
    if station_time is None:
        return received_at, False
    if station_time < EARLIEST_BELIEVABLE or station_time > received_at + LATEST_AHEAD:
        return received_at, True
    return station_time, False


class BootStatus(enum.StrEnum):
    """The answer to a boot: OCPP's RegistrationStatus."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


@dataclass(frozen=True, slots=True)
class BootReport:
    """What a booting station says about itself."""

    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    meter_type: str | None = None
    meter_serial_number: str | None = None
    reason: str | None = None
    """Why it booted (OCPP 2.0.1 BootReason); 1.6 does not say."""


@dataclass(frozen=True, slots=True)
class BootDecision:
    """Our answer to a boot."""

    status: BootStatus
    interval: int
    """Seconds: the heartbeat interval when accepted, the retry interval otherwise."""
    current_time: datetime


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A status change of a station (``evse_number`` 0) or one of its EVSEs."""

    evse_number: int
    status: str
    """OCPI EVSE status: AVAILABLE, BLOCKED, CHARGING, INOPERATIVE, OUTOFORDER, RESERVED, ..."""
    received_at: datetime
    station_time: datetime | None = None
    connector_number: int | None = None
    error_code: str | None = None
    """The station's fault code; None when it reports no error."""
    details: dict[str, Any] = field(default_factory=dict)
    """What else the station said (info, vendor ids, its own status word)."""


async def load_station(uow: UnitOfWork, station_id: str) -> ChargingStation:
    """Return a station inside an entered unit of work, or raise ``NotFound``."""
    station = await uow.session.get(ChargingStation, station_id)
    if station is None:
        raise NotFound("station", station_id)
    return station


def _clip(value: str | None, length: int) -> str | None:
    # Leniency may let over-long values through (FIELD-NOTES 12); the column keeps what fits.
    return value[:length] if value is not None else None


async def load_stations(uow: UnitOfWork, station_ids: set[str]) -> dict[str, ChargingStation]:
    """The stations of these ids that exist, by id, read with one SELECT."""
    found = await uow.session.scalars(
        select(ChargingStation).where(ChargingStation.id.in_(sorted(station_ids)))
    )
    return {station.id: station for station in found}


def _one_of(stations: dict[str, ChargingStation], station_id: str) -> ChargingStation:
    station = stations.get(station_id)
    if station is None:
        raise NotFound("station", station_id)
    return station


@dataclass(frozen=True, slots=True)
class StationBoot:
    """A boot report with the station that sent it, as ``record_boots`` takes them."""

    station_id: str
    report: BootReport
    received_at: datetime
    heartbeat_interval: int


async def record_boot(
    uow: UnitOfWork,
    station_id: str,
    report: BootReport,
    *,
    received_at: datetime,
    heartbeat_interval: int,
) -> BootDecision:
    """Keep what the station says about itself and decide Accepted, Pending or Rejected.

    Retired stations are Rejected; stations awaiting approval (admission policy ``pending``)
    are Pending and told to retry after the heartbeat interval.
    """
    boot = StationBoot(station_id, report, received_at, heartbeat_interval)
    return (await record_boots(uow, (boot,)))[0]


async def record_boots(uow: UnitOfWork, boots: Sequence[StationBoot]) -> list[BootDecision]:
    """``record_boot`` for many stations, their rows read with one SELECT.

    For ``GroupCommitter.run_grouped``: every station of a reconnect storm boots within
    seconds. Raises ``NotFound`` for a station that does not exist (the committer then
    writes each boot alone, so only its caller gets the error).
    """
    stations = await load_stations(uow, {boot.station_id for boot in boots})
    return [_boot(uow, _one_of(stations, boot.station_id), boot) for boot in boots]


def _boot(uow: UnitOfWork, station: ChargingStation, boot: StationBoot) -> BootDecision:
    report, received_at = boot.report, boot.received_at
    station.vendor = _clip(report.vendor, 50)
    station.model = _clip(report.model, 50)
    station.serial_number = _clip(report.serial_number, 50)
    station.firmware_version = _clip(report.firmware_version, 50)
    station.iccid = _clip(report.iccid, 20)
    station.imsi = _clip(report.imsi, 20)
    station.meter_type = _clip(report.meter_type, 25)
    station.meter_serial_number = _clip(report.meter_serial_number, 25)
    if station.retired:
        status = BootStatus.REJECTED
    elif not station.approved:
        status = BootStatus.PENDING
    else:
        status = BootStatus.ACCEPTED
    station.boot_status = status.value
    station.last_boot_at = received_at
    station.last_seen_at = received_at
    station.updated_at = received_at
    uow.record(StationChanged(occurred_at=received_at, station_id=station.id, fields=("boot",)))
    return BootDecision(status, boot.heartbeat_interval, received_at)


_EVSE_ID_PART = re.compile(r"[^A-Z0-9]")

# What an EVSE the station reported before anyone described it is assumed to have. It is
# published (OCPI wants a connector) and an operator corrects it through the API or CLI.
_ASSUMED_CONNECTOR: dict[str, Any] = {
    "standard": "IEC_62196_T2",
    "format": "SOCKET",
    "power_type": "AC_3_PHASE",
    "max_voltage": 230,
    "max_amperage": 32,
    "max_electric_power": 22080,
}


async def _new_evse_uid(uow: UnitOfWork, station_id: str, number: int) -> str:
    candidate = f"{station_id}-{number}"
    if len(candidate) > 36:
        candidate = hashlib.sha256(candidate.encode()).hexdigest()[:32]
    uid, suffix = candidate, 1
    while await uow.session.get(Evse, uid) is not None:  # uids are never reused
        suffix += 1
        uid = f"{candidate[: 36 - len(str(suffix)) - 1]}~{suffix}"
    return uid


_WITH_SITE = (joinedload(Evse.location), joinedload(Evse.connectors))
"""How a start reads an EVSE: with its location and connectors, in one round trip."""


async def _known_evse(uow: UnitOfWork, station_id: str, number: int) -> Evse | None:
    query = (
        select(Evse)
        .where(Evse.station_id == station_id, Evse.ocpp_evse_id == number)
        .options(*_WITH_SITE)
    )
    # One round trip (every StartTransaction asks), not one per relationship; and no
    # autoflush: inside a group commit that would flush every earlier work's changes one
    # work at a time, where the commit flushes them all at once (batched statements).
    # Only an EVSE this very transaction added could be missed, so "none" is asked again
    # the flushing way before anyone adds one.
    with uow.session.no_autoflush:
        found = (await uow.session.scalars(query)).unique().one_or_none()
    if found is None:
        found = (await uow.session.scalars(query)).unique().one_or_none()
    return found


async def evse_for(uow: UnitOfWork, station: ChargingStation, number: int, *, at: datetime) -> Evse:
    """Return the EVSE a station calls ``number``, adding it to the station's location if new.

    A station may report EVSEs nobody has described yet (the common case with open admission);
    they appear at once with an assumed connector, and the log says so.
    """
    evse = await _known_evse(uow, station.id, number)
    if evse is not None:
        return evse
    location = await uow.session.get(Location, station.location_id)
    if location is None:  # the foreign key makes this impossible; say so if it happens
        raise NotFound("location", station.location_id)
    # Counted, not loaded: under open admission thousands of stations share the default
    # location, and loading its EVSEs for each new one made a fleet's first day quadratic.
    # (The count flushes EVSEs this transaction added before, so each gets its own place.)
    position = await uow.session.scalar(
        select(func.count()).select_from(Evse).where(Evse.location_id == location.id)
    )
    uid = await _new_evse_uid(uow, station.id, number)
    readable = _EVSE_ID_PART.sub("", station.id.upper())[:30] or "S"
    evse = Evse(
        uid=uid,
        evse_id=f"{location.country_code}*{location.party_id}*E{readable}*{number}",
        station_id=station.id,
        ocpp_evse_id=number,
        status="UNKNOWN",
        position=position or 0,
        capabilities=["REMOTE_START_STOP_CAPABLE", "RFID_READER"],
        last_updated=at,
    )
    evse.connectors.append(
        Connector(id="1", position=0, ocpp_connector_id=1, last_updated=at, **_ASSUMED_CONNECTOR)
    )
    evse.location = location  # joins location.evses without loading them
    uow.session.add(evse)
    evse.touch(at)
    uow.record(EvseChanged(occurred_at=at, location_id=location.id, evse_uid=uid))
    log_station_event(
        uow,
        station.id,
        "evse_added",
        f"EVSE {number} reported before it was described: added as {uid} with an assumed "
        "Type 2 socket; correct it through the operator API",
        received_at=at,
        details={"evse_uid": uid, "ocpp_evse_id": number},
    )
    return evse


async def known_evses(uow: UnitOfWork, station_ids: set[str]) -> dict[tuple[str, int], Evse]:
    """The EVSEs of these stations by (station, OCPP number), as ``evse_for`` finds them.

    A number two EVSEs share is left out: ``evse_for`` refuses it.
    """
    query = select(Evse).where(Evse.station_id.in_(station_ids)).options(*_WITH_SITE)
    found: dict[tuple[str, int], Evse] = {}
    shared: set[tuple[str, int]] = set()
    for evse in (await uow.session.scalars(query)).unique():
        if evse.station_id is None or evse.ocpp_evse_id is None:
            continue
        number = (evse.station_id, evse.ocpp_evse_id)
        if number in found:
            shared.add(number)
        found[number] = evse
    return {number: evse for number, evse in found.items() if number not in shared}


StationStatus = tuple[str, StatusReport]
"""A status report with the id of the station that sent it."""


async def record_status(uow: UnitOfWork, station_id: str, report: StatusReport) -> None:
    """Apply a status report to the station (EVSE 0) or to one EVSE; see ``record_statuses``."""
    await record_statuses(uow, ((station_id, report),))


async def record_statuses(uow: UnitOfWork, reports: Sequence[StationStatus]) -> list[None]:
    """Apply status reports, in their order, with a few statements for all of them.

    The hot path of a CPMS, written for ``GroupCommitter.run_grouped``: the EVSEs of every
    reporting station are read in one SELECT, the changes written in one executemany UPDATE
    and their locations touched in another, whatever the number of reports. Only an EVSE
    nobody knows yet goes through the ORM (``evse_for`` adds it). A station's own status
    (EVSE 0) and faults go to its log. The station's ``last_seen_at`` is not this write's
    business: ``cpms.liveness`` keeps it.
    """
    session = uow.session
    # Changes earlier works in this transaction left pending must reach the database first,
    # or the commit's flush would write them over these (a no-op when nothing is pending).
    await session.flush()
    connection = await session.connection()
    stations = sorted({station_id for station_id, report in reports if report.evse_number != 0})
    known: dict[tuple[str, int], list[str]] = {}
    if stations:
        for uid, location_id, station_id, number, status in await _evses_of(
            len(stations)
        ).fetch_all(connection, padded(stations)):
            known[(station_id, number)] = [uid, location_id, status]
    changes: dict[str, tuple[str, str, datetime]] = {}  # uid: (uid, new status, at)
    touches: dict[str, datetime] = {}
    unknown: list[StationStatus] = []
    for station_id, report in reports:
        _log_report(uow, station_id, report)
        if report.evse_number == 0:
            continue
        evse = known.get((station_id, report.evse_number))
        if evse is None:
            unknown.append((station_id, report))
            continue
        uid, location_id, status = evse
        if status in (report.status, "REMOVED"):
            continue
        at = report.received_at
        evse[2] = report.status
        latest = changes.get(uid)
        changes[uid] = (uid, report.status, max(at, latest[2]) if latest else at)
        touches[location_id] = max(at, touches.get(location_id, at))
        uow.record(
            EvseStatusChanged(
                occurred_at=at, location_id=location_id, evse_uid=uid, status=report.status
            )
        )
    if changes:
        await _STATUS_SET.execute_many(connection, list(changes.values()), deferred=True)
        await _LOCATION_TOUCH.execute_many(connection, list(touches.items()), deferred=True)
        for uid, status, at in changes.values():
            _refresh_loaded(session, Evse, uid, at, status)
        for key, at in touches.items():
            _refresh_loaded(session, Location, key, at)
    for station_id, report in unknown:
        await _record_new_evse_status(uow, station_id, report)
    return [None] * len(reports)


def _log_report(uow: UnitOfWork, station_id: str, report: StatusReport) -> None:
    """Keep in the station's log what a status report says beyond an EVSE's status."""
    if report.error_code is not None:
        log_station_event(
            uow,
            station_id,
            "fault",
            f"EVSE {report.evse_number}: {report.error_code} ({report.status})",
            occurred_at=report.station_time,
            received_at=report.received_at,
            details={"error_code": report.error_code, **report.details},
        )
    if report.evse_number == 0:
        # The station itself: kept in the log; its EVSEs report their own status.
        log_station_event(
            uow,
            station_id,
            "station_status",
            f"station reports {report.status}",
            occurred_at=report.station_time,
            received_at=report.received_at,
            details={"status": report.status, **report.details},
        )


async def _record_new_evse_status(uow: UnitOfWork, station_id: str, report: StatusReport) -> None:
    # Not known when the batch began: added now, or by an earlier report of this same batch
    # (``evse_for`` finds that one).
    station = await load_station(uow, station_id)
    evse = await evse_for(uow, station, report.evse_number, at=report.received_at)
    if evse.status not in (report.status, "REMOVED"):
        _set_status(uow, evse, report.status, report.received_at)


_EVSE = Evse.__table__
_LOCATION = Location.__table__


def _later(column: Any) -> Any:
    """``column`` moved forward to ``:at``, never back (as ``Evse.touch`` does in Python)."""
    at = bindparam("at", type_=column.type)
    return case((or_(column.is_(None), column < at), at), else_=column)


# Built once and run on the driver (cpms.driver_sql): composing these per report cost more
# CPU than running them, and running them through SQLAlchemy five times more than the driver.
_STATUS_SET = DriverStatement(
    update(_EVSE)
    .where(_EVSE.c.uid == bindparam("evse_uid"), _EVSE.c.status != "REMOVED")
    .values(status=bindparam("new_status"), last_updated=_later(_EVSE.c.last_updated)),
    ("evse_uid", "new_status", "at"),
)
_LOCATION_TOUCH = DriverStatement(
    update(_LOCATION)
    .where(_LOCATION.c.id == bindparam("location"))
    .values(last_updated=_later(_LOCATION.c.last_updated)),
    ("location", "at"),
)


@functools.cache
def _evses_of(stations: int) -> DriverStatement:
    """The EVSEs of up to ``stations`` stations (rounded up to a power of two: few variants)."""
    size = padded_size(stations)
    names = tuple(f"station_{i}" for i in range(size))
    query = select(
        _EVSE.c.uid, _EVSE.c.location_id, _EVSE.c.station_id, _EVSE.c.ocpp_evse_id, _EVSE.c.status
    ).where(_EVSE.c.station_id.in_([bindparam(name) for name in names]))
    return DriverStatement(query, names)


def _refresh_loaded(
    session: AsyncSession, model: type[Evse | Location], key: str, at: datetime, status: str = ""
) -> None:
    """Make an object this transaction already loaded show what a Core UPDATE wrote to it."""
    loaded = session.identity_map.get(identity_key(model, key))
    if loaded is None:
        return
    if status:
        set_committed_value(loaded, "status", status)
    if loaded.last_updated is None or at > loaded.last_updated:
        set_committed_value(loaded, "last_updated", at)


def _set_status(uow: UnitOfWork, evse: Evse, status: str, at: datetime) -> None:
    location = evse.location  # held: touch() walks up to it, the session keeps weak refs
    evse.status = status
    evse.touch(at)
    uow.record(
        EvseStatusChanged(occurred_at=at, location_id=location.id, evse_uid=evse.uid, status=status)
    )


_NOBODY_VOUCHES = ("UNKNOWN", "REMOVED")
"""EVSE statuses a station going offline leaves as they are."""


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A station's connection opened on ``node`` (``record_onlines``)."""

    station_id: str
    ocpp_version: str
    node: str
    at: datetime | None = None
    """When; None: now."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """A station's connection on ``node`` closed or fell silent (``record_offlines``)."""

    station_id: str
    node: str
    reason: str
    at: datetime | None = None
    """When; None: now."""


async def record_online(
    uow: UnitOfWork, station_id: str, *, ocpp_version: str, node: str, at: datetime | None = None
) -> ChargingStation:
    """Note that a station's connection is open on ``node``; return the station."""
    return (await record_onlines(uow, (ConnectionOpened(station_id, ocpp_version, node, at),)))[0]


async def record_onlines(
    uow: UnitOfWork, opened: Sequence[ConnectionOpened]
) -> list[ChargingStation]:
    """``record_online`` for many connections, the stations read with one SELECT.

    For ``GroupCommitter.run_grouped``: a reconnect storm opens thousands within seconds.
    Raises ``NotFound`` for a station that does not exist.
    """
    stations = await load_stations(uow, {item.station_id for item in opened})
    result: list[ChargingStation] = []
    for item in opened:
        at = item.at or utcnow()
        station = _one_of(stations, item.station_id)
        station.online = True
        station.ocpp_version = item.ocpp_version
        station.connected_node = item.node
        station.connected_at = at
        station.last_seen_at = at
        uow.record(StationConnectionChanged(occurred_at=at, station_id=station.id, online=True))
        result.append(station)
    return result


async def record_offline(
    uow: UnitOfWork, station_id: str, *, node: str, reason: str, at: datetime | None = None
) -> bool:
    """Take a station offline (its connection on ``node`` closed or fell silent).

    Its EVSEs become UNKNOWN, as OCPI wants for an EVSE nobody can vouch for (FIELD-NOTES 1).
    Does nothing, and returns False, if the station has meanwhile connected again elsewhere.
    """
    return (await record_offlines(uow, (ConnectionClosed(station_id, node, reason, at),)))[0]


async def record_offlines(uow: UnitOfWork, closed: Sequence[ConnectionClosed]) -> list[bool]:
    """``record_offline`` for many connections: the stations and their EVSEs read once.

    For ``GroupCommitter.run_grouped``: a network outage closes every connection at once.
    A station that does not exist, or that connected again elsewhere, is left alone (False).
    """
    station_ids = {item.station_id for item in closed}
    stations = await load_stations(uow, station_ids)
    evses = await uow.session.scalars(
        select(Evse)
        .where(
            Evse.station_id.in_(sorted(station_ids)),
            Evse.status.not_in(_NOBODY_VOUCHES),
        )
        .options(selectinload(Evse.location))
    )
    evses_of: dict[str, list[Evse]] = {}
    for evse in evses:
        evses_of.setdefault(evse.station_id or "", []).append(evse)
    result: list[bool] = []
    for item in closed:
        station = stations.get(item.station_id)
        if station is None or station.connected_node != item.node:
            result.append(False)
            continue
        at = item.at or utcnow()
        station.online = False
        station.connected_node = None
        # Read once for the batch: a second closing of this station finds it no longer
        # connected here (above), so no EVSE is set twice.
        for evse in evses_of.get(station.id, ()):
            _set_status(uow, evse, "UNKNOWN", at)
        uow.record(
            StationConnectionChanged(
                occurred_at=at, station_id=station.id, online=False, reason=item.reason
            )
        )
        log_station_event(uow, station.id, "offline", f"offline: {item.reason}", received_at=at)
        result.append(True)
    return result


_STATION_LOG_INSERT = DriverStatement(
    insert(StationEvent.__table__),
    ("station_id", "kind", "summary", "occurred_at", "received_at", "details"),
)


def log_station_event(
    uow: UnitOfWork,
    station_id: str,
    kind: str,
    summary: str,
    *,
    received_at: datetime,
    occurred_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an entry to the station's log (written when ``uow`` commits, with the others)."""
    uow.insert_at_commit(
        _STATION_LOG_INSERT,
        (station_id, kind, summary[:255], occurred_at, received_at, details),
    )


async def list_station_events(
    uow: UnitOfWork,
    station_id: str,
    *,
    kind: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> Page[StationEvent]:
    """Return a station's log, newest first, optionally of one kind."""
    query = select(StationEvent).where(StationEvent.station_id == station_id)
    if kind is not None:
        query = query.where(StationEvent.kind == kind)
    query = query.order_by(StationEvent.id.desc())
    async with uow:
        await uow.get(ChargingStation, station_id, kind="station")
        return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def approve_station(uow: UnitOfWork, station_id: str) -> ChargingStation:
    """Let a station waiting in Pending be Accepted at its next boot."""
    now = utcnow()
    async with uow:
        station = await uow.get(ChargingStation, station_id, kind="station")
        if not station.approved:
            station.approved = True
            station.updated_at = now
            uow.record(StationChanged(occurred_at=now, station_id=station_id, fields=("approved",)))
        await uow.commit()
        return station
