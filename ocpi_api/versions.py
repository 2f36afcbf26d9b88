"""OCPI versions: the list of versions we speak, the 2.2.1 version details, the modules.

Versions and details answer with any token of a known partner, token A included
(CHECKLIST 1.2). ``create_ocpi_app`` mounts every module of ``ocpi_api.modules.MODULES``
under ``/ocpi/2.2.1`` behind the transport middlewares.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocpi_api.auth import ocpi_auth_middleware
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import ocpi_response
from ocpi_api.modules import MODULES
from ocpi_api.transport import (
    add_route,
    ocpi_errors_middleware,
    routing_headers_middleware,
    token_a_middleware,
)

__all__ = ["VERSION", "create_ocpi_app", "endpoints", "version_details_url", "versions_url"]

VERSION = "2.2.1"


def versions_url(base_url: str) -> str:
    """Our versions endpoint, given the server's public base URL."""
    return f"{base_url}/ocpi/versions"


def version_details_url(base_url: str) -> str:
    """Our 2.2.1 version details endpoint."""
    return f"{base_url}/ocpi/{VERSION}"


def endpoints(base_url: str) -> list[dict[str, Any]]:
    """The 2.2.1 endpoints we serve, as OCPI ``Endpoint`` objects."""
    base = version_details_url(base_url)
    return [
        {"identifier": module, "role": role, "url": f"{base}/{path}"}
        for served in MODULES
        for module, role, path in served.ENDPOINTS
    ]


async def get_versions(request: web.Request) -> web.Response:
    """List the OCPI versions this server speaks."""
    base = request.config_dict[CONTEXT].base_url()
    return ocpi_response(request, [{"version": VERSION, "url": version_details_url(base)}])


async def get_version_details(request: web.Request) -> web.Response:
    """Describe the 2.2.1 endpoints this server serves."""
    base = request.config_dict[CONTEXT].base_url()
    return ocpi_response(request, {"version": VERSION, "endpoints": endpoints(base)})


def create_ocpi_app() -> web.Application:
    """Build the ``/ocpi`` sub-application."""
    app = web.Application(
        middlewares=[
            routing_headers_middleware,
            ocpi_errors_middleware,
            ocpi_auth_middleware,
            token_a_middleware,
        ]
    )
    add_route(app, "GET", "/versions", get_versions)
    add_route(app, "GET", f"/{VERSION}", get_version_details)
    for module in MODULES:
        module.add_routes(app)
    return app
