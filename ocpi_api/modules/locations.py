"""OCPI 2.2.1 Locations, Sender interface: the locations a partner may see (CHECKLIST 2.1).

``GET /2.2.1/locations`` lists them, paginated (``ocpi_api.pagination``);
``GET /2.2.1/locations/{location_id}[/{evse_uid}[/{connector_id}]]`` returns one Location,
EVSE or Connector. What a partner may see is decided by ``cpms.publication``: a location it
may not see is answered like one that does not exist, HTTP 404 with OCPI 2003 (unknown
location); an unknown EVSE or connector of a visible location is HTTP 404 with OCPI 2000.
Ids compare case-insensitively (OCPI CiString).
"""

from __future__ import annotations

from aiohttp import web

from cpms.documents import connector_to_ocpi, evse_to_ocpi, location_to_ocpi
from cpms.errors import NotFound
from cpms.model import Location
from cpms.publication import find_connector, find_evse, visible_location, visible_locations
from cpms.unit_of_work import UnitOfWork
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.pagination import paginated, window_of
from ocpi_api.transport import OcpiError, add_route

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("locations", "SENDER", "locations")]

_BASE = "/2.2.1/locations"


async def list_locations(request: web.Request) -> web.Response:
    """List the locations the caller may see, one page."""
    window = window_of(request)
    async with request.config_dict[CONTEXT].uow() as uow:
        page = await visible_locations(uow, request[CALLER].partner_id, window)
        return paginated(request, page, [location_to_ocpi(location) for location in page.items])


async def _location(uow: UnitOfWork, request: web.Request) -> Location:
    location_id = request.match_info["location_id"]
    try:
        return await visible_location(uow, request[CALLER].partner_id, location_id)
    except NotFound:
        raise OcpiError(
            OcpiStatus.UNKNOWN_LOCATION, f"unknown location {location_id!r}", http_status=404
        ) from None


def _not_found(error: NotFound) -> OcpiError:
    return OcpiError(
        OcpiStatus.CLIENT_ERROR, f"unknown {error.kind} {error.key!r}", http_status=404
    )


async def get_location(request: web.Request) -> web.Response:
    """Return one Location with its EVSEs and connectors."""
    async with request.config_dict[CONTEXT].uow() as uow:
        return ocpi_response(request, location_to_ocpi(await _location(uow, request)))


async def get_evse(request: web.Request) -> web.Response:
    """Return one EVSE of a location, with its connectors."""
    async with request.config_dict[CONTEXT].uow() as uow:
        location = await _location(uow, request)
        try:
            evse = find_evse(location, request.match_info["evse_uid"])
        except NotFound as error:
            raise _not_found(error) from None
        return ocpi_response(request, evse_to_ocpi(evse))


async def get_connector(request: web.Request) -> web.Response:
    """Return one connector of an EVSE of a location."""
    async with request.config_dict[CONTEXT].uow() as uow:
        location = await _location(uow, request)
        try:
            evse = find_evse(location, request.match_info["evse_uid"])
            connector = find_connector(evse, request.match_info["connector_id"])
        except NotFound as error:
            raise _not_found(error) from None
        return ocpi_response(request, connector_to_ocpi(connector))


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    add_route(app, "GET", _BASE, list_locations)
    add_route(app, "GET", f"{_BASE}/{{location_id}}", get_location)
    add_route(app, "GET", f"{_BASE}/{{location_id}}/{{evse_uid}}", get_evse)
    add_route(app, "GET", f"{_BASE}/{{location_id}}/{{evse_uid}}/{{connector_id}}", get_connector)
