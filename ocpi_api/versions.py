"""OCPI versions: the list of versions we speak and the 2.2.1 version details.

Both answer with any token of a known partner, token A included (CHECKLIST 1.2). Module
endpoints appear in the details as their modules land (none yet: see the README).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocpi_api.auth import ocpi_auth_middleware
from ocpi_api.context import CONTEXT
from ocpi_api.envelope import ocpi_response

__all__ = ["ENDPOINTS", "create_ocpi_app"]

VERSION = "2.2.1"

#: (module identifier, our interface role, path under /ocpi/2.2.1) of the modules we serve.
ENDPOINTS: list[tuple[str, str, str]] = []


def _base(request: web.Request) -> str:
    return request.config_dict[CONTEXT].base_url() + "/ocpi"


async def get_versions(request: web.Request) -> web.Response:
    """List the OCPI versions this server speaks."""
    return ocpi_response(request, [{"version": VERSION, "url": f"{_base(request)}/{VERSION}"}])


async def get_version_details(request: web.Request) -> web.Response:
    """Describe the 2.2.1 endpoints this server serves."""
    base = f"{_base(request)}/{VERSION}"
    endpoints: list[dict[str, Any]] = [
        {"identifier": module, "role": role, "url": f"{base}/{path}"}
        for module, role, path in ENDPOINTS
    ]
    return ocpi_response(request, {"version": VERSION, "endpoints": endpoints})


def create_ocpi_app() -> web.Application:
    """Build the ``/ocpi`` sub-application."""
    app = web.Application(middlewares=[ocpi_auth_middleware])
    for path, handler in (("/versions", get_versions), (f"/{VERSION}", get_version_details)):
        app.router.add_get(path, handler)
        app.router.add_get(path + "/", handler)
    return app
