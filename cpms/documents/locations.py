"""Map OCPI 2.2.1 Location, EVSE and Connector documents onto the ORM model and back.

Reading (``*_from_ocpi``) builds new objects; replacing (``apply_*``) gives an existing
object PUT semantics: every OCPI field takes the document's value, an omitted optional field
becomes ``None``. Both validate the whole document first (``cpms.documents.schema``), so a
bad document changes nothing. OCPI-only nested values (opening times, images, energy mix,
business details, directions...) are stored as the JSON given, on the model column of the
same name; ``coordinates`` maps to ``latitude``/``longitude``. Our own columns (the OCPP
wiring of EVSEs and connectors, ``created_at``, ``retired_at``) are never touched.

``last_updated``: an imported or replaced object is a change in our system, which partners
pulling with ``date_from`` must see, so every object created or replaced gets
``last_updated = now``; the document's value is validated as a DateTime and then dropped.

EVSEs are never deleted (OCPI): one missing from a replacing Location document is kept and
set to ``REMOVED``. A connector missing from a replacing EVSE document is dropped from the
EVSE. Ids compare case-insensitively, as OCPI CiStrings do.

Rendering (``*_to_ocpi``) does no I/O: the caller has loaded ``location.evses`` and
``evse.connectors``. Optional fields that are ``None`` are left out; stored lists, empty ones
included, are written as stored.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from cpms.documents.datetimes import format_datetime
from cpms.documents.schema import validate
from cpms.errors import DocumentError
from cpms.model import Connector, Evse, Location

__all__ = [
    "REMOVED",
    "apply_connector",
    "apply_evse",
    "apply_location",
    "connector_from_ocpi",
    "connector_to_ocpi",
    "evse_from_ocpi",
    "evse_to_ocpi",
    "location_from_ocpi",
    "location_to_ocpi",
]

#: The EVSE status that stands for "deleted": OCPI never deletes EVSEs.
REMOVED = "REMOVED"

_Positioned = TypeVar("_Positioned", Evse, Connector)

# OCPI fields copied one to one, in the spec's order. Nested values (dicts, lists) are
# deep-copied both ways so the model and a document never share mutable state.
_LOCATION_HEAD = ("country_code", "party_id", "id", "publish", "publish_allowed_to", "name")
_LOCATION_ADDRESS = ("address", "city", "postal_code", "state", "country")
_LOCATION_SITE = ("related_locations", "parking_type")
_LOCATION_TAIL = (
    "directions",
    "operator",
    "suboperator",
    "owner",
    "facilities",
    "time_zone",
    "opening_times",
    "charging_when_closed",
    "images",
    "energy_mix",
)
_EVSE_HEAD = ("uid", "evse_id", "status", "status_schedule", "capabilities")
_EVSE_FLOOR = ("floor_level",)
_EVSE_TAIL = ("physical_reference", "directions", "parking_restrictions", "images")
_CONNECTOR_FIELDS = (
    "id",
    "standard",
    "format",
    "power_type",
    "max_voltage",
    "max_amperage",
    "max_electric_power",
    "tariff_ids",
    "terms_and_conditions",
)
_CONNECTOR_INTEGERS = ("max_voltage", "max_amperage", "max_electric_power")


# --------------------------------------------------------------------------- reading


def location_from_ocpi(doc: dict[str, Any], *, now: datetime) -> Location:
    """Build a new Location, with its EVSEs and connectors, from an OCPI Location document.

    EVSEs and connectors get ``position`` by list order; every object gets
    ``last_updated = now``. Raise ``DocumentError`` if ``doc`` does not validate.
    """
    validate("location", doc)
    now = _utc(now)
    location = Location(id=doc["id"], created_at=now)
    _copy_location(location, doc)
    location.evses = [
        _new_evse(evse_doc, position, now)
        for position, evse_doc in enumerate(doc.get("evses") or [])
    ]
    location.last_updated = now
    return location


def evse_from_ocpi(doc: dict[str, Any], *, now: datetime) -> Evse:
    """Build a new EVSE, with its connectors, from an OCPI EVSE document.

    The caller adds it to a location (setting ``position``) and bumps that location's
    ``last_updated``. Raise ``DocumentError`` if ``doc`` does not validate.
    """
    validate("evse", doc)
    return _new_evse(doc, 0, _utc(now))


def connector_from_ocpi(doc: dict[str, Any], *, now: datetime) -> Connector:
    """Build a new Connector from an OCPI Connector document.

    The caller adds it to an EVSE (setting ``position``) and bumps the EVSE's and the
    location's ``last_updated``. Raise ``DocumentError`` if ``doc`` does not validate.
    """
    validate("connector", doc)
    return _new_connector(doc, 0, _utc(now))


# --------------------------------------------------------------------------- replacing


def apply_location(location: Location, doc: dict[str, Any], *, now: datetime) -> None:
    """Replace ``location``'s OCPI fields, EVSEs and connectors from a full OCPI document.

    EVSEs are matched by uid: matched ones are replaced, new ones appended, and ones the
    document leaves out are kept, moved after the others and set to ``REMOVED`` (bumped only
    if they were not ``REMOVED`` already). ``location.evses`` and each EVSE's
    ``connectors`` must be loaded. Raise ``DocumentError`` if ``doc`` does not validate or
    its ``id`` is not ``location.id``; nothing is changed then.
    """
    validate("location", doc)
    now = _utc(now)
    _check_identity("id", location.id, doc["id"], "location")
    before = _unstamped(location_to_ocpi(location))
    _copy_location(location, doc)
    current = _by_position(location.evses)
    unmatched = {evse.uid.lower(): evse for evse in current}
    evses: list[Evse] = []
    for position, evse_doc in enumerate(doc.get("evses") or []):
        evse = unmatched.pop(evse_doc["uid"].lower(), None)
        if evse is None:
            evse = _new_evse(evse_doc, position, now)
        else:
            _replace_evse(evse, evse_doc, now)
            evse.position = position
        evses.append(evse)
    for evse in current:
        if evse.uid.lower() not in unmatched:
            continue
        evse.position = len(evses)
        if evse.status != REMOVED:
            evse.status = REMOVED
            evse.last_updated = now
        evses.append(evse)
    location.evses = evses
    if _unstamped(location_to_ocpi(location)) != before:
        location.last_updated = now


def apply_evse(evse: Evse, doc: dict[str, Any], *, now: datetime) -> None:
    """Replace ``evse``'s OCPI fields and connectors from a full OCPI EVSE document.

    Connectors are matched by id: matched ones are replaced, new ones added, ones the
    document leaves out are removed from the EVSE. ``evse.connectors`` must be loaded. The
    caller bumps the location's ``last_updated`` (``evse.location.touch(now)``). Raise
    ``DocumentError`` if ``doc`` does not validate or its ``uid`` is not ``evse.uid``.
    """
    validate("evse", doc)
    now = _utc(now)
    _check_identity("uid", evse.uid, doc["uid"], "EVSE")
    _replace_evse(evse, doc, now)


def apply_connector(connector: Connector, doc: dict[str, Any], *, now: datetime) -> None:
    """Replace ``connector``'s OCPI fields from a full OCPI Connector document.

    The caller bumps the EVSE's and location's ``last_updated`` (``connector.evse.touch(now)``).
    Raise ``DocumentError`` if ``doc`` does not validate or its ``id`` is not ``connector.id``.
    """
    validate("connector", doc)
    now = _utc(now)
    _check_identity("id", connector.id, doc["id"], "connector")
    _replace_connector(connector, doc, now)


# --------------------------------------------------------------------------- rendering


def location_to_ocpi(location: Location) -> dict[str, Any]:
    """Render ``location`` with its EVSEs and connectors as an OCPI Location document."""
    out: dict[str, Any] = {}
    _render(out, location, _LOCATION_HEAD + _LOCATION_ADDRESS)
    out["coordinates"] = {"latitude": location.latitude, "longitude": location.longitude}
    _render(out, location, _LOCATION_SITE)
    out["evses"] = [evse_to_ocpi(evse) for evse in _by_position(location.evses)]
    _render(out, location, _LOCATION_TAIL)
    out["last_updated"] = format_datetime(location.last_updated)
    return out


def evse_to_ocpi(evse: Evse) -> dict[str, Any]:
    """Render ``evse`` with its connectors as an OCPI EVSE document."""
    out: dict[str, Any] = {}
    _render(out, evse, _EVSE_HEAD)
    out["connectors"] = [connector_to_ocpi(c) for c in _by_position(evse.connectors)]
    _render(out, evse, _EVSE_FLOOR)
    if evse.latitude is not None and evse.longitude is not None:
        out["coordinates"] = {"latitude": evse.latitude, "longitude": evse.longitude}
    _render(out, evse, _EVSE_TAIL)
    out["last_updated"] = format_datetime(evse.last_updated)
    return out


def connector_to_ocpi(connector: Connector) -> dict[str, Any]:
    """Render ``connector`` as an OCPI Connector document."""
    out: dict[str, Any] = {}
    _render(out, connector, _CONNECTOR_FIELDS)
    out["last_updated"] = format_datetime(connector.last_updated)
    return out


# --------------------------------------------------------------------------- internals


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: 'now' must be an aware UTC datetime")
    return now.astimezone(UTC)


def _check_identity(field: str, stored: str, given: str, what: str) -> None:
    if stored.lower() != given.lower():
        raise DocumentError(field, f"{given!r} is not the {what} being replaced ({stored!r})")


def _by_position(items: Iterable[_Positioned]) -> list[_Positioned]:
    return sorted(items, key=lambda item: item.position or 0)


def _render(out: dict[str, Any], source: object, fields: Iterable[str]) -> None:
    for field in fields:
        value = getattr(source, field)
        if value is not None:
            out[field] = copy.deepcopy(value)


def _copy_location(location: Location, doc: dict[str, Any]) -> None:
    for field in _LOCATION_HEAD + _LOCATION_ADDRESS + _LOCATION_SITE + _LOCATION_TAIL:
        if field != "id":
            setattr(location, field, copy.deepcopy(doc.get(field)))
    location.latitude = doc["coordinates"]["latitude"]
    location.longitude = doc["coordinates"]["longitude"]


def _unstamped(document: Any) -> Any:
    """Return ``document`` without its ``last_updated`` fields, to tell real changes."""
    if isinstance(document, dict):
        return {k: _unstamped(v) for k, v in document.items() if k != "last_updated"}
    if isinstance(document, list):
        return [_unstamped(item) for item in document]
    return document


def _new_evse(doc: dict[str, Any], position: int, now: datetime) -> Evse:
    evse = Evse(uid=doc["uid"], position=position, connectors=[])
    _replace_evse(evse, doc, now, new=True)
    return evse


def _replace_evse(evse: Evse, doc: dict[str, Any], now: datetime, *, new: bool = False) -> None:
    """Replace an EVSE's fields; bump ``last_updated`` only if it is new or changed."""
    before = None if new else _unstamped(evse_to_ocpi(evse))
    for field in _EVSE_HEAD + _EVSE_FLOOR + _EVSE_TAIL:
        if field != "uid":
            setattr(evse, field, copy.deepcopy(doc.get(field)))
    coordinates = doc.get("coordinates")
    evse.latitude = coordinates["latitude"] if coordinates else None
    evse.longitude = coordinates["longitude"] if coordinates else None
    unmatched = {connector.id.lower(): connector for connector in evse.connectors}
    connectors: list[Connector] = []
    for position, connector_doc in enumerate(doc["connectors"]):
        connector = unmatched.pop(connector_doc["id"].lower(), None)
        if connector is None:
            connector = _new_connector(connector_doc, position, now)
        else:
            _replace_connector(connector, connector_doc, now)
            connector.position = position
        connectors.append(connector)
    evse.connectors = connectors
    if new or _unstamped(evse_to_ocpi(evse)) != before:
        evse.last_updated = now


def _new_connector(doc: dict[str, Any], position: int, now: datetime) -> Connector:
    connector = Connector(id=doc["id"], position=position)
    _replace_connector(connector, doc, now, new=True)
    return connector


def _replace_connector(
    connector: Connector, doc: dict[str, Any], now: datetime, *, new: bool = False
) -> None:
    """Replace a connector's fields; bump ``last_updated`` only if it is new or changed."""
    before = None if new else _unstamped(connector_to_ocpi(connector))
    for field in _CONNECTOR_FIELDS:
        if field == "id":
            continue
        value = copy.deepcopy(doc.get(field))
        # JSON Schema counts 230.0 as an integer; the integer columns want an int.
        if field in _CONNECTOR_INTEGERS and value is not None:
            value = int(value)
        setattr(connector, field, value)
    if new or _unstamped(connector_to_ocpi(connector)) != before:
        connector.last_updated = now
