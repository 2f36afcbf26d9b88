"""OCPI 2.2.1 Sessions, Sender interface (CHECKLIST 3.1).

- ``GET /2.2.1/sessions?date_from=...``: the sessions of the caller's tokens, paginated
  (``ocpi_api.pagination``); ``date_from`` is required here (HTTP 400, OCPI 2001 without it).
- ``PUT /2.2.1/sessions/{session_id}/charging_preferences``: the driver's ChargingPreferences
  for one of the caller's sessions; ``data`` is the ChargingPreferencesResponse decided by
  ``cpms.publication.set_charging_preferences``. An unknown session (or another partner's)
  is HTTP 404 with OCPI 2001, as is an EVSE without ``CHARGING_PREFERENCES_CAPABLE`` (the
  spec's own rule); a body that is not JSON is HTTP 400, a JSON body that is not valid
  ChargingPreferences is OCPI 2001 in an HTTP 200 (CHECKLIST 1.7).
"""

from __future__ import annotations

from aiohttp import web

from cpms.documents import session_to_ocpi
from cpms.errors import NotFound
from cpms.model import utcnow
from cpms.publication import NoChargingPreferences, partner_sessions, set_charging_preferences
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response
from ocpi_api.pagination import paginated, window_of
from ocpi_api.transport import OcpiError, add_route, read_json

__all__ = ["ENDPOINTS", "add_routes"]

#: (module identifier, our interface role, path under /ocpi/2.2.1) this module serves.
ENDPOINTS: list[tuple[str, str, str]] = [("sessions", "SENDER", "sessions")]


async def list_sessions(request: web.Request) -> web.Response:
    """List the caller's sessions changed since ``date_from``, one page."""
    window = window_of(request, date_from_required=True)
    async with request.config_dict[CONTEXT].uow() as uow:
        page = await partner_sessions(uow, request[CALLER].partner_id, window)
        data = [session_to_ocpi(session, session.charging_periods) for session in page.items]
        return paginated(request, page, data)


async def put_charging_preferences(request: web.Request) -> web.Response:
    """Take the driver's charging preferences for one of the caller's sessions."""
    document = await read_json(request)
    session_id = request.match_info["session_id"]
    async with request.config_dict[CONTEXT].uow() as uow:
        try:
            answer = await set_charging_preferences(
                uow, request[CALLER].partner_id, session_id, document, now=utcnow()
            )
        except NotFound:
            raise OcpiError(
                OcpiStatus.INVALID_PARAMETERS, f"unknown session {session_id!r}", http_status=404
            ) from None
        except NoChargingPreferences as error:
            raise OcpiError(OcpiStatus.INVALID_PARAMETERS, str(error), http_status=404) from None
        await uow.commit()
    return ocpi_response(request, answer)


def add_routes(app: web.Application) -> None:
    """Add this module's routes to the /ocpi/2.2.1 application."""
    add_route(app, "GET", "/2.2.1/sessions", list_sessions)
    add_route(
        app, "PUT", "/2.2.1/sessions/{session_id}/charging_preferences", put_charging_preferences
    )
