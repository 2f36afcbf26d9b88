"""OCPI transport rules for every request we serve (CHECKLIST 1.5 to 1.10).

- ``OcpiError``: raised by handlers, rendered as the envelope with the right HTTP and OCPI
  status; every other failure (unknown route 404, wrong method 405, invalid JSON 400, core
  errors, bugs) is rendered in the envelope too, by ``ocpi_errors_middleware``.
- ``routing_headers_middleware``: on functional modules the ``OCPI-from-*``/``OCPI-to-*``
  routing headers are set on every answer, errors included (from us, to the caller);
  ``token_a_middleware``: token A opens versions and credentials only, everything else
  (hubclientinfo included, though it is a configuration module too) is 401.
- ``read_json``, ``add_route`` (path with and without a trailing slash), ``caller_party``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from cpms.errors import Conflict, DocumentError, InvalidRequest, NotFound
from cpms.partners import TokenKind
from ocpi_api.auth import CALLER
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import OcpiStatus, ocpi_response

__all__ = [
    "CONFIGURATION_MODULES",
    "TOKEN_A_MODULES",
    "OcpiError",
    "add_route",
    "caller_party",
    "ocpi_errors_middleware",
    "read_json",
    "routing_headers_middleware",
    "token_a_middleware",
]

log = logging.getLogger("ocpi_api")

#: Configuration modules: they carry no routing headers (CHECKLIST 1.10).
CONFIGURATION_MODULES = frozenset({"versions", "credentials", "hubclientinfo"})
#: The only modules token A opens (CHECKLIST 1.3: "a valid token A presented on any module
#: other than versions/credentials -> HTTP 401"). Not every configuration module: a hub's
#: hubclientinfo decides whom we send to, so it needs a registered hub.
TOKEN_A_MODULES = frozenset({"versions", "credentials"})


class OcpiError(Exception):
    """A request we answer with an OCPI error status (and maybe an HTTP error status)."""

    def __init__(
        self,
        status_code: OcpiStatus,
        message: str,
        *,
        http_status: int = 200,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status
        self.data = data


async def read_json(request: web.Request) -> Any:
    """Return the request's JSON body, or raise ``OcpiError`` (HTTP 400, OCPI 2001)."""
    text = await request.text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise OcpiError(
            OcpiStatus.INVALID_PARAMETERS,
            f"the body is not valid JSON: {error}",
            http_status=400,
        ) from None


def add_route(
    app: web.Application,
    method: str,
    path: str,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> None:
    """Route ``path`` and ``path/`` to ``handler``: peers send both (CHECKLIST 1.1)."""
    app.router.add_route(method, path.rstrip("/") or "/", handler)
    app.router.add_route(method, path.rstrip("/") + "/", handler)


def caller_party(request: web.Request) -> tuple[str, str] | None:
    """The caller's ``(country_code, party_id)`` from its ``OCPI-from-*`` headers, if sent."""
    country = request.headers.get("OCPI-from-country-code")
    party = request.headers.get("OCPI-from-party-id")
    return (country, party) if country and party else None


def _module_of(request: web.Request) -> str:
    # /ocpi/versions, /ocpi/2.2.1, /ocpi/2.2.1/<module>/...
    parts = [part for part in request.path.split("/") if part]
    if len(parts) < 3:
        return "versions"
    return parts[2].lower()


@web.middleware
async def routing_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set ``OCPI-from-*`` (us) and ``OCPI-to-*`` (the caller) on every functional answer.

    Outermost, so error answers carry them too (CHECKLIST 1.10: every response).
    """
    response = await handler(request)
    if _module_of(request) not in CONFIGURATION_MODULES:
        settings = request.config_dict[CONTEXT].settings
        response.headers["OCPI-from-country-code"] = settings.country_code
        response.headers["OCPI-from-party-id"] = settings.party_id
        party = caller_party(request)
        if party is not None:
            response.headers["OCPI-to-country-code"] = party[0]
            response.headers["OCPI-to-party-id"] = party[1]
    return response


@web.middleware
async def token_a_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse token A outside versions and credentials (HTTP 401, CHECKLIST 1.3)."""
    caller = request.get(CALLER)
    if (
        _module_of(request) not in TOKEN_A_MODULES
        and caller is not None
        and caller.token_kind is TokenKind.REGISTRATION
    ):
        raise OcpiError(
            OcpiStatus.CLIENT_ERROR,
            "token A only opens versions and credentials; register first",
            http_status=401,
        )
    return await handler(request)


@web.middleware
async def ocpi_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure in the OCPI envelope; see the module docstring."""
    try:
        return await handler(request)
    except OcpiError as error:
        return ocpi_response(
            request,
            error.data,
            status_code=error.status_code,
            message=error.message,
            http_status=error.http_status,
        )
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        code = OcpiStatus.CLIENT_ERROR if http_error.status < 500 else OcpiStatus.SERVER_ERROR
        return ocpi_response(
            request, status_code=code, message=http_error.reason, http_status=http_error.status
        )
    except DocumentError as error:
        return ocpi_response(request, status_code=OcpiStatus.INVALID_PARAMETERS, message=str(error))
    except InvalidRequest as error:
        return ocpi_response(request, status_code=OcpiStatus.INVALID_PARAMETERS, message=str(error))
    except NotFound as error:
        return ocpi_response(
            request, status_code=OcpiStatus.CLIENT_ERROR, message=str(error), http_status=404
        )
    except Conflict as error:
        return ocpi_response(request, status_code=OcpiStatus.CLIENT_ERROR, message=str(error))
    except Exception:
        log.exception("internal error on OCPI %s %s", request.method, request.path)
        return ocpi_response(
            request,
            status_code=OcpiStatus.SERVER_ERROR,
            message="internal error; nothing was changed",
            http_status=500,
        )
