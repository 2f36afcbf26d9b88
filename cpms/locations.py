"""Locations, EVSEs and connectors: import, change, retire, and assign tariffs.

Operators send OCPI 2.2.1 documents (``cpms.documents`` validates and maps them). Partial
changes are merged onto the object's current document and applied as a whole, so a change
is validated exactly like an import. Nothing here is ever deleted that a session may refer
to: a location is retired, an EVSE set to ``REMOVED``; only a connector can go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cpms.documents import (
    apply_connector,
    apply_evse,
    apply_location,
    connector_from_ocpi,
    connector_to_ocpi,
    evse_from_ocpi,
    evse_to_ocpi,
    item_of,
    location_from_ocpi,
    location_to_ocpi,
)
from cpms.errors import Conflict, DocumentError, InvalidRequest, NotFound
from cpms.events import ConnectorChanged, EvseChanged, LocationChanged
from cpms.model import ChargingStation, Connector, Evse, Location, Tariff, utcnow
from cpms.pages import Page, fetch_page
from cpms.unit_of_work import UnitOfWork

__all__ = [
    "DefaultLocation",
    "EvseWiring",
    "ImportResult",
    "add_connector",
    "add_evse",
    "assign_tariffs",
    "change_connector",
    "change_evse",
    "change_location",
    "ensure_default_location",
    "get_evse",
    "get_location",
    "import_locations",
    "list_locations",
    "remove_connector",
    "retire_evse",
    "retire_location",
]


@dataclass(frozen=True, slots=True)
class DefaultLocation:
    """The location stations admitted under the ``open`` policy are put in (from settings)."""

    id: str
    country_code: str
    party_id: str
    name: str
    address: str
    city: str
    postal_code: str
    country: str
    latitude: str
    longitude: str
    time_zone: str


@dataclass(frozen=True, slots=True)
class EvseWiring:
    """Which station serves an EVSE, under which OCPP number (1.6 connectorId, 2.0.1 evseId).

    ``None`` keeps what is set; ``unwire`` detaches the EVSE from its station.
    """

    station_id: str | None = None
    ocpp_evse_id: int | None = None
    unwire: bool = False


@dataclass(slots=True)
class ImportResult:
    """What an import created and what it replaced, by id."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def _with_children() -> Any:
    return selectinload(Location.evses).selectinload(Evse.connectors)


async def _load_location(uow: UnitOfWork, location_id: str) -> Location:
    location = await uow.session.scalar(
        select(Location).where(Location.id == location_id).options(_with_children())
    )
    if location is None:
        raise NotFound("location", location_id)
    return location


def _find_evse(location: Location, evse_uid: str) -> Evse:
    for evse in location.evses:
        if evse.uid == evse_uid:
            return evse
    raise NotFound("evse", f"{location.id}/{evse_uid}")


def _find_connector(evse: Evse, connector_id: str) -> Connector:
    for connector in evse.connectors:
        if connector.id == connector_id:
            return connector
    raise NotFound("connector", f"{evse.uid}/{connector_id}")


def _merge(current: dict[str, Any], changes: Mapping[str, Any], *, fixed: Sequence[str]) -> dict:
    for key in fixed:
        if key in changes and changes[key] != current.get(key):
            raise DocumentError(key, f"cannot be changed here ({key} is fixed by the URL)")
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def ensure_default_location(uow: UnitOfWork, default: DefaultLocation) -> Location:
    """Return the default location, creating it from settings if it does not exist."""
    location = await uow.session.get(Location, default.id)
    if location is None:
        now = utcnow()
        location = Location(
            id=default.id, country_code=default.country_code, party_id=default.party_id,
            publish=False, name=default.name, address=default.address, city=default.city,
            postal_code=default.postal_code, country=default.country,
            latitude=default.latitude, longitude=default.longitude,
            time_zone=default.time_zone, last_updated=now, created_at=now,
        )  # fmt: skip
        uow.session.add(location)
        uow.record(LocationChanged(occurred_at=now, location_id=location.id))
    return location


async def import_locations(uow: UnitOfWork, documents: Sequence[Mapping[str, Any]]) -> ImportResult:
    """Create or replace locations from OCPI documents, all or none."""
    now = utcnow()
    result = ImportResult()
    async with uow:
        for index, document in enumerate(documents):
            with item_of(index, len(documents)):
                location_id = document.get("id")
                stored = (
                    await uow.session.get(Location, location_id)
                    if isinstance(location_id, str)
                    else None
                )
                if stored is None:
                    location = location_from_ocpi(dict(document), now=now)
                    await _check_evse_uids_free(uow, location)
                    uow.session.add(location)
                    result.created.append(location.id)
                else:
                    existing = await _load_location(uow, stored.id)
                    apply_location(existing, dict(document), now=now)
                    await _check_evse_uids_free(uow, existing)
                    result.updated.append(existing.id)
            uow.record(LocationChanged(occurred_at=now, location_id=str(document["id"])))
        await uow.commit()
    return result


async def _check_evse_uids_free(uow: UnitOfWork, location: Location) -> None:
    # EVSE uids are unique across the platform and never reused (FIELD-NOTES 16).
    uids = [evse.uid for evse in location.evses]
    if len(set(uids)) != len(uids):
        raise DocumentError("evses", "two EVSEs share one uid")
    with uow.session.no_autoflush:
        taken = await uow.session.scalars(
            select(Evse.uid).where(Evse.uid.in_(uids), Evse.location_id != location.id)
        )
        clash = taken.first()
    if clash is not None:
        raise Conflict(f"EVSE uid {clash!r} belongs to another location (uids are never reused)")


async def list_locations(
    uow: UnitOfWork, *, offset: int = 0, limit: int | None = None
) -> Page[Location]:
    """List locations (with EVSEs and connectors) in the order they were created."""
    query = select(Location).options(_with_children()).order_by(Location.created_at, Location.id)
    async with uow:
        return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def get_location(uow: UnitOfWork, location_id: str) -> Location:
    """Return a location with its EVSEs and connectors."""
    async with uow:
        return await _load_location(uow, location_id)


async def change_location(
    uow: UnitOfWork, location_id: str, changes: Mapping[str, Any], *, replace: bool = False
) -> Location:
    """Replace a location with a full document, or merge some of its fields (not ``evses``)."""
    now = utcnow()
    async with uow:
        location = await _load_location(uow, location_id)
        if replace:
            document = dict(changes)
        else:
            if "evses" in changes:
                raise DocumentError("evses", "change EVSEs through their own resource")
            document = _merge(location_to_ocpi(location), changes, fixed=("id",))
        apply_location(location, document, now=now)
        await _check_evse_uids_free(uow, location)
        uow.record(LocationChanged(occurred_at=now, location_id=location_id, fields=tuple(changes)))
        await uow.commit()
        return location


async def retire_location(uow: UnitOfWork, location_id: str) -> Location:
    """Retire a location: unpublish it and remove its EVSEs. It must have no active stations."""
    now = utcnow()
    async with uow:
        location = await _load_location(uow, location_id)
        active = await uow.session.scalar(
            select(ChargingStation.id).where(
                ChargingStation.location_id == location_id, ChargingStation.retired_at.is_(None)
            )
        )
        if active is not None:
            raise Conflict(f"station {active!r} is still at this location: move or retire it")
        if location.retired_at is None:
            location.retired_at = now
            location.publish = False
            for evse in location.evses:
                evse.status = "REMOVED"
                evse.last_updated = now
            location.touch(now)
            uow.record(LocationChanged(occurred_at=now, location_id=location_id))
        await uow.commit()
        return location


async def _wire(uow: UnitOfWork, evse: Evse, wiring: EvseWiring | None) -> None:
    if wiring is None:
        return
    if wiring.unwire:
        evse.station_id = evse.ocpp_evse_id = None
        return
    if wiring.station_id is None and wiring.ocpp_evse_id is None:
        return  # nothing asked of the wiring
    station_id = wiring.station_id or evse.station_id
    number = wiring.ocpp_evse_id if wiring.ocpp_evse_id is not None else evse.ocpp_evse_id
    if station_id is None:
        raise InvalidRequest("station_id is required to give an EVSE an ocpp_evse_id")
    station = await uow.get(ChargingStation, station_id, kind="station")
    if station.location_id != evse.location_id:
        raise InvalidRequest(
            f"station {station.id!r} is at location {station.location_id!r}, "
            f"not {evse.location_id!r}"
        )
    if number is None or number < 1:
        raise InvalidRequest("ocpp_evse_id (1 or more) is required with station_id")
    with uow.session.no_autoflush:
        taken = await uow.session.scalar(
            select(Evse.uid).where(
                Evse.station_id == station.id, Evse.ocpp_evse_id == number, Evse.uid != evse.uid
            )
        )
    if taken is not None:
        raise Conflict(f"station {station.id!r} EVSE {number} is EVSE {taken!r} already")
    evse.station_id, evse.ocpp_evse_id = station.id, number


async def add_evse(
    uow: UnitOfWork, location_id: str, document: Mapping[str, Any], wiring: EvseWiring | None
) -> Evse:
    """Add an EVSE (OCPI EVSE document) to a location, optionally wired to a station."""
    now = utcnow()
    async with uow:
        location = await _load_location(uow, location_id)
        evse = evse_from_ocpi(dict(document), now=now)
        if await uow.session.get(Evse, evse.uid) is not None:
            raise Conflict(f"EVSE uid {evse.uid!r} exists already (uids are never reused)")
        evse.position = len(location.evses)
        location.evses.append(evse)
        await _wire(uow, evse, wiring)
        evse.touch(now)
        uow.record(EvseChanged(occurred_at=now, location_id=location_id, evse_uid=evse.uid))
        await uow.commit()
        return evse


async def get_evse(uow: UnitOfWork, location_id: str, evse_uid: str) -> Evse:
    """Return one EVSE of a location, with its connectors."""
    async with uow:
        location = await _load_location(uow, location_id)
        return _find_evse(location, evse_uid)


async def change_evse(
    uow: UnitOfWork,
    location_id: str,
    evse_uid: str,
    changes: Mapping[str, Any],
    wiring: EvseWiring | None = None,
    *,
    replace: bool = False,
) -> Evse:
    """Replace an EVSE with a full document, or merge some of its fields; rewire it."""
    now = utcnow()
    async with uow:
        # Hold the location: EVSE.touch() reaches it, and the session keeps only weak refs.
        location = await _load_location(uow, location_id)
        evse = _find_evse(location, evse_uid)
        if replace:
            document = dict(changes)
        else:
            if "connectors" in changes:
                raise DocumentError("connectors", "change connectors through their own resource")
            document = _merge(evse_to_ocpi(evse), changes, fixed=("uid",))
        if document.get("uid") != evse_uid:
            raise DocumentError("uid", f"must be {evse_uid!r}, the EVSE in the URL")
        apply_evse(evse, document, now=now)
        await _wire(uow, evse, wiring)
        if evse.last_updated == now:
            location.touch(now)
        uow.record(
            EvseChanged(
                occurred_at=now, location_id=location_id, evse_uid=evse_uid, fields=tuple(changes)
            )
        )
        await uow.commit()
        return evse


async def retire_evse(uow: UnitOfWork, location_id: str, evse_uid: str) -> Evse:
    """Remove an EVSE the OCPI way: status ``REMOVED``, kept forever, uid never reused."""
    now = utcnow()
    async with uow:
        # Hold the location: EVSE.touch() reaches it, and the session keeps only weak refs.
        location = await _load_location(uow, location_id)
        evse = _find_evse(location, evse_uid)
        if evse.status != "REMOVED":
            evse.status = "REMOVED"
            evse.touch(now)
            uow.record(
                EvseChanged(
                    occurred_at=now, location_id=location_id, evse_uid=evse_uid, fields=("status",)
                )
            )
        await uow.commit()
        return evse


async def add_connector(
    uow: UnitOfWork, location_id: str, evse_uid: str, document: Mapping[str, Any]
) -> Connector:
    """Add a connector (OCPI Connector document) to an EVSE."""
    now = utcnow()
    async with uow:
        # Hold the location: EVSE.touch() reaches it, and the session keeps only weak refs.
        location = await _load_location(uow, location_id)
        evse = _find_evse(location, evse_uid)
        connector = connector_from_ocpi(dict(document), now=now)
        if any(c.id == connector.id for c in evse.connectors):
            raise Conflict(f"EVSE {evse_uid!r} has a connector {connector.id!r} already")
        await _check_tariffs(uow, connector.tariff_ids or [])
        connector.position = max((c.position for c in evse.connectors), default=-1) + 1
        evse.connectors.append(connector)
        connector.touch(now)
        uow.record(
            ConnectorChanged(
                occurred_at=now, location_id=location_id, evse_uid=evse_uid,
                connector_id=connector.id,
            )
        )  # fmt: skip
        await uow.commit()
        return connector


async def change_connector(
    uow: UnitOfWork,
    location_id: str,
    evse_uid: str,
    connector_id: str,
    changes: Mapping[str, Any],
    *,
    replace: bool = False,
) -> Connector:
    """Replace a connector with a full document, or merge some of its fields."""
    now = utcnow()
    async with uow:
        # Hold the location: EVSE.touch() reaches it, and the session keeps only weak refs.
        location = await _load_location(uow, location_id)
        evse = _find_evse(location, evse_uid)
        connector = _find_connector(evse, connector_id)
        current = connector_to_ocpi(connector)
        document = dict(changes) if replace else _merge(current, changes, fixed=("id",))
        if document.get("id") != connector_id:
            raise DocumentError("id", f"must be {connector_id!r}, the connector in the URL")
        if document.get("tariff_ids") != current.get("tariff_ids"):
            await _check_tariffs(uow, document.get("tariff_ids") or [])
        apply_connector(connector, document, now=now)
        if connector.last_updated == now:
            evse.touch(now)
        uow.record(
            ConnectorChanged(
                occurred_at=now, location_id=location_id, evse_uid=evse_uid,
                connector_id=connector_id, fields=tuple(changes),
            )
        )  # fmt: skip
        await uow.commit()
        return connector


async def remove_connector(
    uow: UnitOfWork, location_id: str, evse_uid: str, connector_id: str
) -> None:
    """Remove a connector from an EVSE; an EVSE keeps at least one (OCPI: ``connectors`` +)."""
    now = utcnow()
    async with uow:
        # Hold the location: EVSE.touch() reaches it, and the session keeps only weak refs.
        location = await _load_location(uow, location_id)
        evse = _find_evse(location, evse_uid)
        connector = _find_connector(evse, connector_id)
        if len(evse.connectors) == 1:
            raise Conflict("an EVSE keeps at least one connector: retire the EVSE instead")
        evse.connectors.remove(connector)
        evse.touch(now)
        uow.record(
            ConnectorChanged(
                occurred_at=now, location_id=location_id, evse_uid=evse_uid,
                connector_id=connector_id, removed=True,
            )
        )  # fmt: skip
        await uow.commit()


async def _check_tariffs(uow: UnitOfWork, tariff_ids: Sequence[str]) -> None:
    """Check assigned tariffs exist, are not retired, and overlap in time per type at most once.

    OCPI 2.2.1: at most one tariff per ``Tariff.type`` may be active at any moment on a
    connector; several of one type are fine only with non-overlapping validity windows.
    """
    if len(set(tariff_ids)) != len(tariff_ids):
        raise InvalidRequest("tariff_ids lists one tariff twice")
    tariffs: list[Tariff] = []
    for tariff_id in tariff_ids:
        tariff = await uow.get(Tariff, tariff_id, kind="tariff")
        if tariff.retired_at is not None:
            raise InvalidRequest(f"tariff {tariff_id!r} is retired")
        tariffs.append(tariff)
    for i, first in enumerate(tariffs):
        for second in tariffs[i + 1 :]:
            if first.type == second.type and _overlap(first, second):
                raise InvalidRequest(
                    f"tariffs {first.id!r} and {second.id!r} are both of type "
                    f"{first.type or '(any)'} and valid at the same time"
                )


def _overlap(first: Tariff, second: Tariff) -> bool:
    always_from, always_until = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    first_from = first.start_date_time or always_from
    second_from = second.start_date_time or always_from
    first_until = first.end_date_time or always_until
    second_until = second.end_date_time or always_until
    return first_from < second_until and second_from < first_until


async def assign_tariffs(
    uow: UnitOfWork, location_id: str, evse_uid: str, connector_id: str, tariff_ids: Sequence[str]
) -> Connector:
    """Set the tariffs of a connector (in order), checking each exists and may apply."""
    return await change_connector(
        uow, location_id, evse_uid, connector_id, {"tariff_ids": list(tariff_ids)}
    )
