"""JSON views of core objects for operators: the operator API and the CLI show the same.

Pure functions, object in, dict out. Locations, EVSEs, connectors, tariffs and tokens are
their OCPI 2.2.1 documents; an EVSE adds the station that serves it. Stations and their log
entries are ours (OCPI has no such objects).
"""

from __future__ import annotations

from typing import Any

from cpms.documents import (
    connector_to_ocpi,
    evse_to_ocpi,
    format_datetime,
    location_to_ocpi,
    tariff_to_ocpi,
)
from cpms.model import ChargingStation, Connector, Evse, Location, StationEvent, Tariff, Token
from cpms.pages import Page
from cpms.tokens import token_to_ocpi

__all__ = [
    "connector_view",
    "evse_view",
    "location_view",
    "page_view",
    "station_event_view",
    "station_view",
    "tariff_view",
    "token_view",
]


def evse_view(evse: Evse) -> dict[str, Any]:
    """Return an EVSE as OCPI plus the station that serves it."""
    view = evse_to_ocpi(evse)
    if evse.station_id is not None:
        view["station_id"] = evse.station_id
        view["ocpp_evse_id"] = evse.ocpp_evse_id
    return view


def location_view(location: Location) -> dict[str, Any]:
    """Return a location as OCPI, its EVSEs with their stations, and whether it is retired."""
    view = location_to_ocpi(location)
    view["evses"] = [evse_view(evse) for evse in location.evses]
    return view


def tariff_view(tariff: Tariff) -> dict[str, Any]:
    """Return a tariff as OCPI."""
    return tariff_to_ocpi(tariff)


def _time(value: Any) -> str | None:
    return None if value is None else format_datetime(value)


def station_view(station: ChargingStation) -> dict[str, Any]:
    """Return a station's settings, boot data and connection state (never its password)."""
    return {
        "id": station.id,
        "location_id": station.location_id,
        "has_password": station.password_hash is not None,
        "lenient": station.lenient,
        "approved": station.approved,
        "registered_by": station.registered_by,
        "retired": station.retired,
        "ocpp_version": station.ocpp_version,
        "vendor": station.vendor,
        "model": station.model,
        "serial_number": station.serial_number,
        "firmware_version": station.firmware_version,
        "boot_status": station.boot_status,
        "online": station.online,
        "connected_at": _time(station.connected_at),
        "last_seen_at": _time(station.last_seen_at),
        "created_at": _time(station.created_at),
        "retired_at": _time(station.retired_at),
    }


def station_event_view(event: StationEvent) -> dict[str, Any]:
    """Return one entry of a station's log.

    ``occurred_at`` is the station's own time (None when it gave none; its clock may lie),
    ``received_at`` ours.
    """
    return {
        "id": event.id,
        "kind": event.kind,
        "summary": event.summary,
        "occurred_at": _time(event.occurred_at),
        "received_at": _time(event.received_at),
        "details": event.details,
    }


def page_view(page: Page[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a page of rendered items with the paging figures."""
    return {"items": items, "total": page.total, "offset": page.offset, "limit": page.limit}


def connector_view(connector: Connector) -> dict[str, Any]:
    """Return a connector as OCPI."""
    return connector_to_ocpi(connector)


def token_view(token: Token) -> dict[str, Any]:
    """Return a token as OCPI."""
    return token_to_ocpi(token)
