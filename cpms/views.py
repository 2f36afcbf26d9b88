"""JSON views of core objects for operators: the operator API and the CLI show the same.

Pure functions, object in, dict out. Locations, EVSEs, connectors, tariffs and tokens are
their OCPI 2.2.1 documents; an EVSE adds the station that serves it. Stations and their log
entries are ours (OCPI has no such objects). A session is its OCPI Session fields plus what
only we know (station, OCPP transaction, flags, stop reason, standing CDR); a CDR is its
issued OCPI document, with the explanation of its amounts when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from cpms.documents import (
    connector_to_ocpi,
    evse_to_ocpi,
    format_datetime,
    location_to_ocpi,
    session_to_ocpi,
    tariff_to_ocpi,
)
from cpms.documents.sessions import SESSION_FIELDS
from cpms.model import (
    Cdr,
    ChargingPeriod,
    ChargingStation,
    Connector,
    Evse,
    Location,
    Session,
    StationEvent,
    Tariff,
    Token,
)
from cpms.pages import Page
from cpms.tokens import token_to_ocpi

__all__ = [
    "cdr_view",
    "connector_view",
    "evse_view",
    "location_view",
    "page_view",
    "session_view",
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


def _amount(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def session_view(session: Session, periods: Iterable[ChargingPeriod]) -> dict[str, Any]:
    """Return a session: its OCPI Session fields, then what only we know of it.

    ``total_cost`` is ``None`` while no tariff prices the session; ``cdr_id`` names the CDR
    standing for it (``None`` before it ends, and for a session that is not billed).
    """
    ocpi = session_to_ocpi(session, periods)
    # The operator sees every field, null where unknown (OCPI leaves those out).
    view = {key: ocpi.get(key) for key in SESSION_FIELDS}
    view["evse_uid"], view["connector_id"] = session.evse_uid, session.connector_id
    if view["total_cost"] is not None:
        view["total_cost"].setdefault("incl_vat", None)
    return view | {
        "station_id": session.station_id,
        "transaction_id": session.transaction_id,
        "tariff_id": session.tariff_id,
        "stop_reason": session.stop_reason,
        "flags": list(session.flags or ()),
        "cdr_id": session.cdr_id,
    }


def cdr_view(cdr: Cdr, *, explain: bool) -> dict[str, Any]:
    """Return a CDR as issued (OCPI), with ``explanation`` (one line per amount) if asked."""
    view = dict(cdr.document)
    if explain:
        view["explanation"] = list(cdr.explanation or ())
    return view
