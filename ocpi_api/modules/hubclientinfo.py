"""OCPI 2.2.1 HubClientInfo, receiver interface: a hub tells us of its clients (CHECKLIST 9).

``{hubclientinfo}/{country_code}/{party_id}`` answers GET (the ClientInfo the calling hub
gave us of that party; HTTP 404 when it gave none) and PUT (a new ClientInfo, HTTP 201, or an
updated one, 200). No POST, PATCH or DELETE (405). A configuration module: no routing
headers (CHECKLIST 1.10). The URL's country code and party id are the *client's*, and the
body must name the same party, else OCPI 2001, as for any body that is not a valid
ClientInfo; nothing is stored then.

Only a registered partner with the role HUB may call it: a hub reports its clients, nobody
else does (CHECKLIST 1.3), and what it says decides whether we send to those parties. Other
partners get HTTP 404; token A gets HTTP 401 before it gets here
(``ocpi_api.transport.token_a_middleware``: it opens versions and credentials only).

A ClientInfo that says CONNECTED wakes the pusher: what waited for that party (pushes held
while the hub said OFFLINE, SUSPENDED or PLANNED, ``ocpi_api.push``) goes out now.

``ocpi_api.hub_client_pull`` reads the hub's own list the other way round. Storing and
checking are ``cpms.hub_clients``'s; this module adapts HTTP.
"""

from __future__ import annotations

from aiohttp import web

from cpms import hub_clients
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.transport import OcpiError, add_route, read_json

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("hubclientinfo", "RECEIVER", "hubclientinfo")]

_PATH = "/2.2.1/hubclientinfo/{country_code}/{party_id}"


def _hub(request: web.Request) -> int:
    """The calling hub's partner id; refuse anyone who is not a registered hub."""
    caller = request[CALLER]
    # Token A never gets here: token_a_middleware answers it 401 (CHECKLIST 1.3).
    if not any(role == "HUB" for role, _, _ in caller.roles):
        raise OcpiError(
            OcpiStatus.CLIENT_ERROR,
            "hubclientinfo is for hubs: none of your credentials roles is HUB",
            http_status=404,
        )
    return caller.partner_id


async def get_client_info(request: web.Request) -> web.Response:
    """Return the ClientInfo the calling hub gave us of one party."""
    partner_id = _hub(request)
    uow = request.config_dict[CONTEXT].uow
    client = await hub_clients.get_client_info(
        uow(),
        partner_id,
        country_code=request.match_info["country_code"],
        party_id=request.match_info["party_id"],
    )  # NotFound: HTTP 404, OCPI 2000 (ocpi_errors_middleware)
    return ocpi_response(request, hub_clients.client_info_to_ocpi(client))


async def put_client_info(request: web.Request) -> web.Response:
    """Store a new or updated ClientInfo of the calling hub."""
    partner_id = _hub(request)
    document = await read_json(request)
    uow = request.config_dict[CONTEXT].uow
    client, stored = await hub_clients.put_client_info(
        uow(),
        partner_id,
        document,
        country_code=request.match_info["country_code"],
        party_id=request.match_info["party_id"],
    )  # InvalidRequest: OCPI 2001
    if stored is not hub_clients.Stored.KEPT and client.status == "CONNECTED":
        # put_client_info made the party's held pushes due: send them now, not at the poll.
        request.config_dict[CONTEXT].wake_pusher()
    return ocpi_response(request, http_status=201 if stored is hub_clients.Stored.CREATED else 200)


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    add_route(app, "GET", _PATH, get_client_info)
    add_route(app, "PUT", _PATH, put_client_info)
